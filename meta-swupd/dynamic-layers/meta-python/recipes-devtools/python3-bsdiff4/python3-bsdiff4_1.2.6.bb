SUMMARY = "Binary diff and patch using the bsdiff4 format"
DESCRIPTION = "Python bindings to bsdiff's core, used by swupd for binary deltas."
HOMEPAGE = "https://github.com/ilanschnell/bsdiff4"
BUGTRACKER = "https://github.com/ilanschnell/bsdiff4/issues"
CVE_PRODUCT = "bsdiff4"
SECTION = "devel/python"
LICENSE = "BSD-2-Clause & BSD-Protection"
LIC_FILES_CHKSUM = "file://LICENSE;md5=a2321ebf3d51a8e3b0010d032d40cd22"

SRC_URI[sha256sum] = "2ab57d01a78b39e29e5accc9cfead4130982ded9dccbc4261bd0e9c51d6b751d"

inherit pypi setuptools3

BBCLASSEXTEND = "native nativesdk"
