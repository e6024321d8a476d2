# A knob that changes a packaged file between two test builds.
APP_TOOLS_RELEASE ?= "1"
do_install:append() {
    printf 'release ${APP_TOOLS_RELEASE}\n' > ${D}${datadir}/app-tools/release.txt
}
