SUMMARY = "Binary diff and patch using the bsdiff4 format"
DESCRIPTION = "Python bindings to bsdiff's core, used by swupd for binary deltas."
HOMEPAGE = "https://github.com/ilanschnell/bsdiff4"
BUGTRACKER = "https://github.com/ilanschnell/bsdiff4/issues"
CVE_PRODUCT = "bsdiff4"
SECTION = "devel/python"
LICENSE = "BSD-2-Clause & BSD-Protection"
LIC_FILES_CHKSUM = "file://LICENSE;md5=a2321ebf3d51a8e3b0010d032d40cd22"

SRC_URI[sha256sum] = "ed262caa697247e9af00af1076b5fce0b578a17b19d9bdbad30c110dd7660a8d"

inherit pypi setuptools3

BBCLASSEXTEND = "native nativesdk"
