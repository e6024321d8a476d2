# meta-intel's machines boot from the EFI system partition with systemd-boot (EFI_PROVIDER): a
# post-update hook puts the kernel each update brings there (docs/boards.md).
# nooelint: oelint.vars.specific - intel-x86-common is the override of every meta-intel machine
RRECOMMENDS:${PN}:append:intel-x86-common = " ${@'swupd-boot-efi' if d.getVar('EFI_PROVIDER') == 'systemd-boot' else ''}"
