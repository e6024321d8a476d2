SUMMARY = "Stand-in for OE-core's python3-native: nativepython3 and the native sysroot's site-packages"
DESCRIPTION = "OE-core's python3-native cannot be built offline. This installs what a native \
tool sees of it: ${bindir}/nativepython3 (and ${bindir}/python3-native/python3, the PYTHON of \
python3native.bbclass), an interpreter whose sys.path is the native sysroot's \
site-packages (${PYTHON_SITEPACKAGES_DIR}) and not the host's, with the Python packages there \
that meta-python's native recipes would install (from SWUPD_TEST_PYTHON_SITE). The interpreter \
is the host's, made a virtual environment rooted at the sysroot's ${prefix}; when its version is \
not PYTHON_BASEVERSION, a .pth file adds the python${PYTHON_BASEVERSION} site-packages."
LICENSE = "MIT"

inherit native python3-dir

SWUPD_TEST_HOST_PYTHON ??= "/usr/bin/python3"
SWUPD_TEST_PYTHON_SITE ??= ""

do_install[vardeps] += "SWUPD_TEST_PYTHON_SITE"
do_install() {
    [ -d "${SWUPD_TEST_PYTHON_SITE}" ] || bbfatal "SWUPD_TEST_PYTHON_SITE = '${SWUPD_TEST_PYTHON_SITE}' is no directory"
    host=$(readlink -f ${SWUPD_TEST_HOST_PYTHON})
    version=$($host -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    install -d ${D}${bindir} ${D}${PYTHON_SITEPACKAGES_DIR}
    ln -s $host ${D}${bindir}/nativepython3
    install -d ${D}${bindir}/python3-native
    ln -s $host ${D}${bindir}/python3-native/python3
    printf 'home = %s\ninclude-system-site-packages = false\nversion = %s\n' "$(dirname $host)" "$version" > ${D}${bindir}/pyvenv.cfg
    cp -R --no-preserve=ownership ${SWUPD_TEST_PYTHON_SITE}/. ${D}${PYTHON_SITEPACKAGES_DIR}/
    if [ "$version" != "${PYTHON_BASEVERSION}" ]; then
        install -d ${D}${libdir}/python$version/site-packages
        echo "import os, site, sys; site.addsitedir(os.path.join(sys.prefix, 'lib', 'python${PYTHON_BASEVERSION}', 'site-packages'))" \
            > ${D}${libdir}/python$version/site-packages/native-sysroot.pth
    fi
}
