SUMMARY = "app-tools: a program, a script and data, for optional bundles"
LICENSE = "MIT"

inherit testpkg

RDEPENDS:${PN} = "glibc"

do_install() {
    install -d ${D}${bindir} ${D}${datadir}/app-tools
    install -m 0755 /bin/true ${D}${bindir}/app-tool
    printf '#!/bin/sh\necho app-tools ${PV}\n' > ${D}${bindir}/app-info
    chmod 0755 ${D}${bindir}/app-info
    printf 'app-tools data, version ${PV}\n' > ${D}${datadir}/app-tools/data.txt
    ln -s data.txt ${D}${datadir}/app-tools/current
}
