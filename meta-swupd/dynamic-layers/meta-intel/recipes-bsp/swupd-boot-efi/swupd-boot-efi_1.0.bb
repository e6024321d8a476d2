# nooelint: oelint.var.bbclassextend - the hook runs on the target only
SUMMARY = "swupd post-update hook: boot the kernel an update brings, via systemd-boot"
DESCRIPTION = "After each update, copies the kernel under /boot onto the EFI system partition and \
               makes a systemd-boot entry for it the default, keeping the previous one in the menu."
HOMEPAGE = "https://github.com/meta-swupd/meta-swupd"
BUGTRACKER = "https://github.com/meta-swupd/meta-swupd/issues"
SECTION = "base"
CVE_PRODUCT = ""
LICENSE = "MIT"
# nooelint: oelint.var.licenseremotefile - the hook is the project's own, under MIT
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

SRC_URI = "file://50-boot-efi"
S = "${UNPACKDIR}"

# Where the device mounts its EFI system partition. Not /boot: updates write /boot on the root
# file system, with owners, modes and links that FAT cannot hold.
SWUPD_EFI_DIR ?= "/efi"

# The hook names the machine's kernel image type.
PACKAGE_ARCH = "${MACHINE_ARCH}"
COMPATIBLE_HOST = "(i.86|x86_64).*-linux"

do_install() {
    # The client looks in /usr/lib/swupd/post-update.d, also where libdir is /usr/lib64.
    install -d ${D}${nonarch_libdir}/swupd/post-update.d
    sed -e 's,@EFI_DIR@,${SWUPD_EFI_DIR},g' -e 's,@KERNEL_IMAGETYPE@,${KERNEL_IMAGETYPE},g' \
        ${S}/50-boot-efi > ${D}${nonarch_libdir}/swupd/post-update.d/50-boot-efi
    chmod 0755 ${D}${nonarch_libdir}/swupd/post-update.d/50-boot-efi
}

FILES:${PN} += "${nonarch_libdir}/swupd/post-update.d/50-boot-efi"
# The kernel in /boot of the root file system, where updates bring new ones.
RDEPENDS:${PN} = "kernel-image"
