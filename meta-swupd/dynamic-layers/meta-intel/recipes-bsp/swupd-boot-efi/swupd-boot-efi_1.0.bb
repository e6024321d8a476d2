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

# The hook is the project's own, beside this layer (no fetch), installed by client/install.
SWUPD_SOURCE_DIR ??= "${SWUPD_LAYERDIR}/.."
SRC_URI = ""
S = "${SWUPD_SOURCE_DIR}/client"
do_install[file-checksums] += "${S}/boot/50-boot-efi:True ${S}/install:True"

# Where the device mounts its EFI system partition. Not /boot: updates write /boot on the root
# file system, with owners, modes and links that FAT cannot hold.
SWUPD_EFI_DIR ?= "/efi"

# The initramfs under /boot that boots with the kernel, for kernels that need one (empty: the
# entry keeps the initrd lines of the entry it is made from, such as a microcode archive).
SWUPD_BOOT_INITRD ?= ""

# The hook names the machine's kernel image type.
PACKAGE_ARCH = "${MACHINE_ARCH}"
COMPATIBLE_HOST = "(i.86|x86_64).*-linux"

do_install() {
    # The client looks in /usr/lib/swupd/post-update.d, also where libdir is /usr/lib64.
    sh ${S}/install boot-efi --hookdir ${nonarch_libdir}/swupd/post-update.d --efi-dir ${SWUPD_EFI_DIR} \
        --kernel ${KERNEL_IMAGETYPE} --initrd "${SWUPD_BOOT_INITRD}" ${D}
}

FILES:${PN} += "${nonarch_libdir}/swupd/post-update.d/50-boot-efi"
# The kernel in /boot of the root file system, where updates bring new ones.
RDEPENDS:${PN} = "kernel-image"
