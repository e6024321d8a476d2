# testpkg.bbclass: small packages for tests, one package (${PN}) per recipe.
#
# The recipe's do_install puts files into ${D} (under fakeroot, so ownership may be set).
# do_package then makes them the package ${PN}, the way OE-core's packaging looks from outside:
#   - ${PKGTREE_DIR}/${PN}.tar: the package archive (owners, modes, links and xattrs as set
#     under fakeroot), which image.bbclass unpacks into a rootfs as a package manager would;
#   - ${PKGTREE_DIR}/${PN}/: the same files as a tree, to look at (owners as the archive only
#     when BitBake runs as root: fakeroot's ownership lasts one bitbake run, the archive's stays);
#   - ${PKGDATA_DIR}/runtime/${PN}: the package data in OE's format, among it
#     "FILES_INFO:<pkg>: <JSON object: path -> size>" for every file (not directory) of the
#     package, and RDEPENDS:<pkg>; plus ${PKGDATA_DIR}/${PN} (PACKAGES) and runtime-reverse/.
# Runtime dependencies (RDEPENDS:${PN}) are built first and installed along into images.
#
# The tasks are exported (EXPORT_FUNCTIONS): a recipe that defines do_install itself, or a
# bbappend that adds "inherit testpkg" to an existing recipe, keeps its own do_install.

PACKAGES = "${PN}"
LICENSE ??= "MIT"
SUMMARY ??= "${PN} (a test package)"
RDEPENDS:${PN} ??= ""

testpkg_do_install () {
    :
}
do_install[doc] = "Installs the package's files into ${D}"
do_install[dirs] = "${B}"
do_install[cleandirs] = "${D}"
addtask install before do_build

python () {
    # do_install runs under fakeroot. Set here, after parsing: a recipe that (re)defines
    # do_install without the "fakeroot" keyword clears the flag.
    d.setVarFlag("do_install", "fakeroot", "1")
}

python testpkg_do_package () {
    import json
    import subprocess

    pkg = d.getVar("PN")
    if (d.getVar("PACKAGES") or "").split() != [pkg]:
        bb.fatal("testpkg.bbclass makes one package per recipe: PACKAGES must be \"${PN}\"")
    image = d.getVar("D")
    tree = os.path.join(d.getVar("PKGTREE_DIR"), pkg)
    bb.utils.remove(tree, recurse=True)
    bb.utils.mkdirhier(tree)
    subprocess.run(["cp", "-a", "--no-target-directory", image, tree], check=True)
    subprocess.run(["tar", "--numeric-owner", "--xattrs", "--sort=name", "-cf", tree + ".tar", "-C", image, "."],
                   check=True)

    files = {}
    total = 0
    inodes = set()
    for root, _dirs, names in os.walk(image):
        for name in names:
            path = os.path.join(root, name)
            st = os.lstat(path)
            files["/" + os.path.relpath(path, image)] = st.st_size
            if st.st_ino not in inodes:
                inodes.add(st.st_ino)
                total += st.st_size

    def encode(value):
        # OE writes package data values with Python's unicode_escape encoding.
        return value.encode("unicode_escape").decode("latin1")

    pkgdata = d.getVar("PKGDATA_DIR")
    lines = [
        "PN: %s" % d.getVar("PN"),
        "PV: %s" % d.getVar("PV"),
        "PR: %s" % d.getVar("PR"),
        "PKGV:%s: %s" % (pkg, d.getVar("PKGV")),
        "PKGR:%s: %s" % (pkg, d.getVar("PKGR")),
        "PKG:%s: %s" % (pkg, pkg),
        "PACKAGE_ARCH:%s: %s" % (pkg, d.getVar("PACKAGE_ARCH")),
        "LICENSE:%s: %s" % (pkg, d.getVar("LICENSE")),
        "SUMMARY:%s: %s" % (pkg, encode(d.getVar("SUMMARY") or "")),
        "RDEPENDS:%s: %s" % (pkg, " ".join((d.getVar("RDEPENDS:" + pkg) or "").split())),
        "FILES_INFO:%s: %s" % (pkg, encode(json.dumps(files, sort_keys=True))),
        "PKGSIZE:%s: %d" % (pkg, total),
    ]
    runtime = os.path.join(pkgdata, "runtime")
    bb.utils.mkdirhier(runtime)
    with open(os.path.join(runtime, pkg), "w") as f:
        f.write("\n".join(lines) + "\n")
    reverse = os.path.join(pkgdata, "runtime-reverse", pkg)
    bb.utils.mkdirhier(os.path.dirname(reverse))
    bb.utils.remove(reverse)
    os.symlink(os.path.join("..", "runtime", pkg), reverse)
    with open(os.path.join(pkgdata, d.getVar("PN")), "w") as f:
        f.write("PACKAGES: %s\n" % pkg)
}
do_package[doc] = "Makes the installed files the package ${PN}: its tree and its package data"
do_package[fakeroot] = "1"
do_package[rdeptask] = "do_package"
do_package[vardeps] += "RDEPENDS:${PN} PKGV PKGR PACKAGE_ARCH LICENSE SUMMARY"
addtask package after do_install before do_build

EXPORT_FUNCTIONS do_install do_package
