SUMMARY = "swupd-server: turns root file systems into signed swupd update content"
DESCRIPTION = "The build side of meta-swupd, used by swupd-image.bbclass from the native sysroot."
HOMEPAGE = "https://github.com/meta-swupd/meta-swupd"
BUGTRACKER = "https://github.com/meta-swupd/meta-swupd/issues"
SECTION = "devel"
CVE_PRODUCT = "swupd-server"
LICENSE = "MIT"
# nooelint: oelint.var.licenseremotefile - the license is the project's own, beside the layer
LIC_FILES_CHKSUM = "file://${SWUPD_SOURCE_DIR}/LICENSE;md5=78c6dac75aaf6a4f676d75afff7fe14a"

SWUPD_SOURCE_DIR ??= "${SWUPD_LAYERDIR}/.."
SRC_URI = ""
S = "${SWUPD_SOURCE_DIR}"

inherit python3-dir bash-completion

# The sources are the checkout's own, not fetched: their files are part of do_install's
# signature, so an updated checkout installs its server again rather than reusing the old one.
do_install[file-checksums] += "${SWUPD_SOURCE_DIR}/client/swupd:True ${SWUPD_SOURCE_DIR}/server-lib/swupd_server:True \
    ${SWUPD_SOURCE_DIR}/server-lib/man:True ${SWUPD_SOURCE_DIR}/server-lib/completion:True"

# Inside a build the server runs under OE's own Python, which sees the native sysroot's
# site-packages; the host's python3 would not find swupd_server or its dependencies.
SWUPD_SERVER_PYTHON = "python3"
SWUPD_SERVER_PYTHON:class-native = "nativepython3"

do_install() {
    for pkg in client/swupd server-lib/swupd_server; do
        (cd ${S}/$(dirname $pkg) && find $(basename $pkg) -name '*.py' -o -name '*.html' -o -name '*.service' -o -name '*.timer') |
        while read -r f; do
            install -D -m 0644 "${S}/$(dirname $pkg)/$f" "${D}${PYTHON_SITEPACKAGES_DIR}/$f"
        done
    done
    install -d ${D}${bindir}
    printf '#!/usr/bin/env ${SWUPD_SERVER_PYTHON}\nimport sys\nfrom swupd_server.cli import main\nsys.exit(main())\n' > ${D}${bindir}/swupd-server
    chmod 0755 ${D}${bindir}/swupd-server
    # The man page and completions scripts/gen-docs made from the command's parser.
    install -D -m 0644 ${S}/server-lib/man/swupd-server.1 ${D}${mandir}/man1/swupd-server.1
    install -D -m 0644 ${S}/server-lib/completion/bash/swupd-server ${D}${datadir}/bash-completion/completions/swupd-server
    install -D -m 0644 ${S}/server-lib/completion/zsh/_swupd-server ${D}${datadir}/zsh/site-functions/_swupd-server
}

# As the client's: the man page in ${PN}-doc, the completions in ${PN}-bash-completion and
# ${PN}-zsh-completion.
PACKAGE_BEFORE_PN += "${PN}-zsh-completion"
FILES:${PN}-zsh-completion += "${datadir}/zsh"

FILES:${PN} += "${PYTHON_SITEPACKAGES_DIR}"
RDEPENDS:${PN} += "python3-bsdiff4 python3-core python3-jinja2 python3-pyelftools python3-pynacl python3-zstandard"
BBCLASSEXTEND = "native"
