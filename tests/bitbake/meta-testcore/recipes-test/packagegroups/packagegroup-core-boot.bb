SUMMARY = "packagegroup-core-boot: the packages a minimal image boots with (here: base files and the C library)"
LICENSE = "MIT"

inherit testpkg

RDEPENDS:${PN} = "base-files glibc"
