SUMMARY = "glibc: the host's C library and dynamic loader, which the host programs in test packages need"
LICENSE = "LGPL-2.1-or-later"

inherit testpkg

# The libraries /bin/true needs go to ${base_libdir}; the loader keeps its absolute path (its
# PT_INTERP, e.g. /lib64/ld-linux-x86-64.so.2).
do_install() {
    install -d ${D}${base_libdir}
    ldd /bin/true | while read -r name arrow path rest; do
        if [ "$arrow" = "=>" ] && [ -e "$path" ]; then
            install -m 0755 "$(readlink -f "$path")" ${D}${base_libdir}/$name
        elif [ -e "$name" ]; then
            install -D -m 0755 "$(readlink -f "$name")" ${D}$name
        fi
    done
    [ -e ${D}${base_libdir}/libc.so.6 ] || bbfatal "no libc.so.6 found with ldd /bin/true"
}
