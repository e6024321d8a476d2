SUMMARY = "hello: a real ELF program (the host's true) and its configuration file"
LICENSE = "MIT"

inherit testpkg

RDEPENDS:${PN} = "glibc"

do_install() {
    install -d ${D}${bindir} ${D}${sysconfdir}
    install -m 0755 /bin/true ${D}${bindir}/hello
    printf 'greeting = hello\n' > ${D}${sysconfdir}/hello.conf
    chmod 0644 ${D}${sysconfdir}/hello.conf
}
