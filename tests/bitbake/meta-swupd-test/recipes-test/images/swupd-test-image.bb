SUMMARY = "An image published as a swupd update stream, whose rootfs the test provides"
DESCRIPTION = "OE-core cannot build packages offline (no sources, no pseudo-native, no package \
manager), so do_rootfs installs a tree and its package data from SWUPD_TEST_ROOTFS instead of \
packages. Everything after that is OE-core's and meta-swupd's: ROOTFS_POSTPROCESS_COMMAND with \
swupd_rootfs_config, do_image, do_image_complete and do_swupd_update, under pseudo."
LICENSE = "MIT"

inherit core-image swupd-image

IMAGE_FSTYPES = "tar"
SWUPD_BUNDLES = "apps"
BUNDLE_CONTENTS[apps] = "app-tools"
SWUPD_FILE_BLACKLIST = "/etc/hello.conf"
SWUPD_VERSION_URL = "file://${DEPLOY_DIR_SWUPD}/www"

# A directory with rootfs/ (the tree a package manager would have installed) and
# pkgdata/runtime/<package> (OE's runtime package data of the packages in it).
SWUPD_TEST_ROOTFS ??= ""
# path:uid:gid of files the rootfs step gives another owner than root, as packages would.
SWUPD_TEST_OWNERS ??= ""

# These read what a package manager installed, and none ran.
ROOTFS_POSTPROCESS_COMMAND:remove = "write_package_manifest license_create_manifest"

fakeroot python do_rootfs () {
    import shutil
    import subprocess
    from oe.utils import execute_pre_post_process

    provided = d.getVar("SWUPD_TEST_ROOTFS")
    if not provided or not os.path.isdir(os.path.join(provided, "rootfs")):
        bb.fatal("SWUPD_TEST_ROOTFS = '%s' holds no rootfs/" % provided)
    rootfs = d.getVar("IMAGE_ROOTFS")
    bb.utils.mkdirhier(rootfs)
    # Copied under pseudo, the files are the build user's on disk and root's in pseudo's
    # database, as a package manager's are; owners come from the database alone.
    subprocess.run(["cp", "-a", "--no-preserve=ownership", os.path.join(provided, "rootfs") + "/.", rootfs], check=True)
    for top, dirs, files in os.walk(rootfs):
        for name in dirs + files:
            os.lchown(os.path.join(top, name), 0, 0)
    os.lchown(rootfs, 0, 0)
    for entry in (d.getVar("SWUPD_TEST_OWNERS") or "").split():
        path, uid, gid = entry.rsplit(":", 2)
        os.lchown(rootfs + path, int(uid), int(gid))
    runtime = os.path.join(d.getVar("PKGDATA_DIR"), "runtime")
    bb.utils.mkdirhier(runtime)
    for name in os.listdir(os.path.join(provided, "pkgdata", "runtime")):
        shutil.copyfile(os.path.join(provided, "pkgdata", "runtime", name), os.path.join(runtime, name))
    # What OE-core's rootfs code runs once the packages are in place.
    execute_pre_post_process(d, d.getVar("ROOTFS_POSTPROCESS_COMMAND"))
}
do_rootfs[vardeps] += "SWUPD_TEST_ROOTFS SWUPD_TEST_OWNERS"
