# nooelint: oelint.var.bbclassextend - the client runs on the target only
SUMMARY = "swupd: safe, signed, delta-efficient OS updates on the device"
DESCRIPTION = "The device side of meta-swupd: update, verify and repair the OS, add and remove \
               bundles, from a signed swupd update stream."
HOMEPAGE = "https://github.com/meta-swupd/meta-swupd"
BUGTRACKER = "https://github.com/meta-swupd/meta-swupd/issues"
SECTION = "base"
CVE_PRODUCT = "swupd-client"
LICENSE = "MIT"
# nooelint: oelint.var.licenseremotefile - the license is the project's own, beside the layer
LIC_FILES_CHKSUM = "file://${SWUPD_SOURCE_DIR}/LICENSE;md5=78c6dac75aaf6a4f676d75afff7fe14a"

# The client is built from the project's own sources, beside this layer (no fetch).
SWUPD_SOURCE_DIR ??= "${SWUPD_LAYERDIR}/.."
SRC_URI = ""
S = "${SWUPD_SOURCE_DIR}/client"

inherit python3-dir python3native bash-completion

# The sources are the checkout's own, not fetched: their files are part of do_install's
# signature, so an updated checkout installs its client again rather than reusing the old one.
do_install[file-checksums] += "${S}/swupd:True ${S}/install:True ${S}/man:True ${S}/completion:True"

# client/install holds the steps, shared with the test device's image builder: the package
# byte-compiled for the target's Python (a read-only /usr cannot keep caches, and caches no
# manifest lists are what `verify --picky` reports), the command, the units, the state directory,
# the man page and the bash and zsh completions.
do_install() {
    sh ${S}/install client --python "${PYTHON}" --sitedir ${PYTHON_SITEPACKAGES_DIR} --bindir ${bindir} \
        --unitdir ${systemd_system_unitdir} --statedir ${localstatedir}/lib/swupd \
        --mandir ${mandir} --datadir ${datadir} ${D}
}

# The man page goes to ${PN}-doc and the bash completion to ${PN}-bash-completion, as OE-core
# splits them; the zsh completion to ${PN}-zsh-completion, as OE-core's recipes name it (an
# image's bash-completion-pkgs and zsh-completion-pkgs features install these).
PACKAGE_BEFORE_PN += "${PN}-zsh-completion"
FILES:${PN}-zsh-completion += "${datadir}/zsh"

FILES:${PN} += "${PYTHON_SITEPACKAGES_DIR}/swupd ${systemd_system_unitdir} ${localstatedir}/lib/swupd"
RDEPENDS:${PN} += "\
    python3-asyncio \
    python3-bsdiff4 \
    python3-compression \
    python3-core \
    python3-crypt \
    python3-ctypes \
    python3-fcntl \
    python3-io \
    python3-json \
    python3-math \
    python3-mmap \
    python3-netclient \
    python3-pynacl \
    python3-requests \
    python3-tqdm \
    python3-zstandard \
"
