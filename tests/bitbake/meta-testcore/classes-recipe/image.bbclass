# image.bbclass of meta-testcore: OE-core's image recipe interface, with a plain copy where OE
# runs a package manager.
#
#   do_rootfs          installs PACKAGE_INSTALL (= IMAGE_INSTALL) and their runtime dependencies
#                      (package archives of testpkg.bbclass) into IMAGE_ROOTFS, writes os-release
#                      like OE's os-release recipe, writes IMAGE_MANIFEST, then runs the
#                      functions named in ROOTFS_POSTPROCESS_COMMAND ("func1; func2;") with
#                      bb.build.exec_func in its own datastore, as OE's execute_pre_post_process
#   do_image           runs IMAGE_PREPROCESS_COMMAND, then writes ${IMAGE_NAME}.tar of the rootfs
#                      to DEPLOY_DIR_IMAGE
#   do_image_complete  links ${IMAGE_LINK_NAME}.tar and .manifest to this build's files and runs
#                      IMAGE_POSTPROCESS_COMMAND
#   do_build           after do_image_complete
# Fakeroot: Debian's fakeroot keeps faked ownership for one bitbake run only (OE's pseudo keeps
# a database). So that a later run's [fakeroot] tasks of the image (do_image, or a layer's task
# reading the rootfs) see the rootfs as do_rootfs left it, do_rootfs records the owners of
# IMAGE_ROOTFS and those tasks restore them first. When BitBake runs as root this changes nothing.
#
# Names follow OE-core since scarthgap: IMAGE_NAME = ${IMAGE_LINK_NAME}${IMAGE_VERSION_SUFFIX},
# IMAGE_LINK_NAME = ${IMAGE_BASENAME}${IMAGE_MACHINE_SUFFIX}${IMAGE_NAME_SUFFIX}, so the image is
# e.g. test-image-qemux86-64.rootfs-20250101120000.tar, linked as test-image-qemux86-64.rootfs.tar.

LICENSE ?= "MIT"
PACKAGES = ""
EXCLUDE_FROM_WORLD = "1"

IMAGE_INSTALL ?= ""
IMAGE_FEATURES ?= ""
PACKAGE_INSTALL ?= "${IMAGE_INSTALL}"
IMAGE_ROOTFS = "${WORKDIR}/rootfs"
IMAGE_BASENAME ?= "${PN}"
IMAGE_MACHINE_SUFFIX ??= "-${MACHINE}"
IMAGE_NAME_SUFFIX ??= ".rootfs"
IMAGE_LINK_NAME ?= "${IMAGE_BASENAME}${IMAGE_MACHINE_SUFFIX}${IMAGE_NAME_SUFFIX}"
IMAGE_VERSION_SUFFIX ?= "-${DATETIME}"
IMAGE_VERSION_SUFFIX[vardepsexclude] += "DATETIME"
IMAGE_NAME ?= "${IMAGE_LINK_NAME}${IMAGE_VERSION_SUFFIX}"
IMAGE_MANIFEST = "${DEPLOY_DIR_IMAGE}/${IMAGE_NAME}.manifest"

ROOTFS_POSTPROCESS_COMMAND ?= ""
IMAGE_PREPROCESS_COMMAND ?= ""
IMAGE_POSTPROCESS_COMMAND ?= ""

# os-release, as OE-core's os-release recipe writes it (/usr/lib/os-release, and
# /etc/os-release a relative link to it).
OS_RELEASE_FIELDS ?= "ID NAME VERSION VERSION_ID PRETTY_NAME"
OS_RELEASE_UNQUOTED_FIELDS ?= "ID VERSION_ID"
ID = "${DISTRO}"
NAME = "${DISTRO_NAME}"
VERSION = "${DISTRO_VERSION}${@' (%s)' % d.getVar('DISTRO_CODENAME') if d.getVar('DISTRO_CODENAME') else ''}"
VERSION_ID = "${DISTRO_VERSION}"
PRETTY_NAME = "${DISTRO_NAME} ${VERSION}"

def execute_pre_post_process(d, cmds):
    """Runs each function named in cmds ("func1; func2;"), as OE-core's oe.utils does."""
    if not cmds:
        return
    for cmd in cmds.replace(";", " ").split():
        bb.note("Executing %s ..." % cmd)
        bb.build.exec_func(cmd, d)

def image_package_closure(d, packages):
    """The packages with their runtime dependencies (RDEPENDS in package data), in order."""
    import re
    runtime = os.path.join(d.getVar("PKGDATA_DIR"), "runtime")
    result = []
    todo = list(packages)
    while todo:
        pkg = todo.pop(0)
        if pkg in result:
            continue
        path = os.path.join(runtime, pkg)
        if not os.path.exists(path):
            bb.fatal("Package %s is not built: no package data %s (is it in IMAGE_INSTALL or RDEPENDS "
                     "of a recipe that inherits testpkg?)" % (pkg, path))
        result.append(pkg)
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(": ")
                if key == "RDEPENDS:%s" % pkg:
                    # Drop version constraints: "foo (>= 1.0)".
                    todo += re.sub(r"\([^)]*\)", "", value).split()
    return result

def image_write_os_release(d, rootfs):
    import re
    unquoted = (d.getVar("OS_RELEASE_UNQUOTED_FIELDS") or "").split()
    lines = []
    for field in (d.getVar("OS_RELEASE_FIELDS") or "").split():
        value = d.getVar(field)
        if not value:
            continue
        if field in unquoted:
            value = re.sub(r"[^a-z0-9\-_.]", "_", value.lower())
            lines.append("%s=%s" % (field, value))
        else:
            lines.append('%s="%s"' % (field, value))
    libdir = os.path.join(rootfs, d.getVar("nonarch_libdir").lstrip("/"))
    etc = os.path.join(rootfs, d.getVar("sysconfdir").lstrip("/"))
    bb.utils.mkdirhier(libdir)
    bb.utils.mkdirhier(etc)
    path = os.path.join(libdir, "os-release")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(path, 0o644)
    link = os.path.join(etc, "os-release")
    bb.utils.remove(link)
    os.symlink(os.path.relpath(path, etc), link)

python do_rootfs () {
    import subprocess
    rootfs = d.getVar("IMAGE_ROOTFS")
    trees = d.getVar("PKGTREE_DIR")
    packages = image_package_closure(d, (d.getVar("PACKAGE_INSTALL") or "").split())
    manifest = []
    for pkg in packages:
        bb.note("Installing %s" % pkg)
        subprocess.run(["tar", "--numeric-owner", "--same-owner", "--same-permissions", "--xattrs",
                        "-xf", os.path.join(trees, pkg + ".tar"), "-C", rootfs], check=True)
        info = {}
        with open(os.path.join(d.getVar("PKGDATA_DIR"), "runtime", pkg)) as f:
            for line in f:
                key, _, value = line.rstrip("\n").partition(": ")
                info[key] = value
        manifest.append("%s %s %s" % (pkg, info.get("PACKAGE_ARCH:" + pkg, ""), info.get("PKGV:" + pkg, "")))
    image_write_os_release(d, rootfs)
    bb.utils.mkdirhier(os.path.dirname(d.getVar("IMAGE_MANIFEST")))
    with open(d.getVar("IMAGE_MANIFEST"), "w") as f:
        f.write("".join(line + "\n" for line in sorted(manifest)))
    execute_pre_post_process(d, d.getVar("ROOTFS_POSTPROCESS_COMMAND"))
}
do_rootfs[doc] = "Installs the image's packages into IMAGE_ROOTFS and post-processes it"
do_rootfs[fakeroot] = "1"
do_rootfs[cleandirs] = "${IMAGE_ROOTFS}"
do_rootfs[postfuncs] += "image_save_owners"
do_rootfs[vardeps] += "ROOTFS_POSTPROCESS_COMMAND PACKAGE_INSTALL IMAGE_NAME ${OS_RELEASE_FIELDS}"
addtask rootfs before do_build

IMAGE_OWNERS = "${WORKDIR}/rootfs.owners"

python image_save_owners () {
    import json
    rootfs = d.getVar("IMAGE_ROOTFS")
    with open(d.getVar("IMAGE_OWNERS"), "w") as f:
        for root, dirs, names in os.walk(rootfs):
            for name in dirs + names:
                path = os.path.join(root, name)
                st = os.lstat(path)
                f.write("%d %d %s\n" % (st.st_uid, st.st_gid, json.dumps(os.path.relpath(path, rootfs))))
}

python image_restore_owners () {
    import json
    rootfs = d.getVar("IMAGE_ROOTFS")
    owners = d.getVar("IMAGE_OWNERS")
    if not os.path.exists(owners):
        return
    with open(owners) as f:
        for line in f:
            uid, gid, rel = line.rstrip("\n").split(" ", 2)
            path = os.path.join(rootfs, json.loads(rel))
            if os.path.lexists(path):
                os.lchown(path, int(uid), int(gid))
}

python do_image () {
    import subprocess
    execute_pre_post_process(d, d.getVar("IMAGE_PREPROCESS_COMMAND"))
    deploy = d.getVar("DEPLOY_DIR_IMAGE")
    tarball = os.path.join(deploy, d.getVar("IMAGE_NAME") + ".tar")
    subprocess.run(["tar", "--sort=name", "--numeric-owner", "--xattrs", "-cf", tarball,
                    "-C", d.getVar("IMAGE_ROOTFS"), "."], check=True)
    bb.note("Wrote %s" % tarball)
}
do_image[doc] = "Writes the rootfs as a tar archive to DEPLOY_DIR_IMAGE"
do_image[fakeroot] = "1"
do_image[dirs] = "${DEPLOY_DIR_IMAGE}"
do_image[vardeps] += "IMAGE_PREPROCESS_COMMAND"
addtask image after do_rootfs before do_build

python do_image_complete () {
    deploy = d.getVar("DEPLOY_DIR_IMAGE")
    name = d.getVar("IMAGE_NAME")
    link_name = d.getVar("IMAGE_LINK_NAME")
    for suffix in (".tar", ".manifest"):
        if os.path.exists(os.path.join(deploy, name + suffix)):
            link = os.path.join(deploy, link_name + suffix)
            bb.utils.remove(link)
            os.symlink(name + suffix, link)
    execute_pre_post_process(d, d.getVar("IMAGE_POSTPROCESS_COMMAND"))
}
do_image_complete[doc] = "Finishes the image: links its files under IMAGE_LINK_NAME"
do_image_complete[dirs] = "${DEPLOY_DIR_IMAGE}"
do_image_complete[vardeps] += "IMAGE_POSTPROCESS_COMMAND"
addtask image_complete after do_image before do_build

python () {
    # Every package to install (and, through their do_package[rdeptask], their runtime
    # dependencies) is packaged before do_rootfs; a package is named like its recipe.
    deps = ["%s:do_package" % pkg for pkg in (d.getVar("PACKAGE_INSTALL") or "").split()]
    d.appendVarFlag("do_rootfs", "depends", " " + " ".join(deps))
    # As in OE-core: these variables are shell code naming functions, so that BitBake's
    # signatures follow the functions they name (a change in one reruns the task).
    for var in ("ROOTFS_POSTPROCESS_COMMAND", "IMAGE_PREPROCESS_COMMAND", "IMAGE_POSTPROCESS_COMMAND"):
        if d.getVar(var, False):
            d.setVarFlag(var, "func", "1")
    # The image's other [fakeroot] tasks (see the top) see do_rootfs's owners.
    for task in d.getVar("__BBTASKS", False) or []:
        if task != "do_rootfs" and d.getVarFlag(task, "fakeroot"):
            d.prependVarFlag(task, "prefuncs", "image_restore_owners ")
}
