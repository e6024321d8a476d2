SUMMARY = "base-files: the directory layout, hostname and a home directory owned by a user"
LICENSE = "MIT"

inherit testpkg

do_install() {
    for dir in ${sysconfdir} ${bindir} ${sbindir} ${libdir} ${datadir} ${localstatedir}/lib /tmp /home; do
        install -d -m 0755 ${D}$dir
    done
    chmod 1777 ${D}/tmp
    echo ${MACHINE} > ${D}${sysconfdir}/hostname
    printf 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n' > ${D}${sysconfdir}/passwd
    install -d -m 0700 -o 1000 -g 1000 ${D}/home/user
    echo "welcome" > ${D}/home/user/.profile
    chown 1000:1000 ${D}/home/user/.profile
}
