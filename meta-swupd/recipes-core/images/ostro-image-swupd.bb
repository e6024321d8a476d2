SUMMARY = "A small image updated with swupd: os-core and two example bundles"
DESCRIPTION = "Boots to a console; publishes every build as a signed swupd update stream with the \
               bundles 'editors' and 'net-tools' that devices can add and remove."
HOMEPAGE = "https://github.com/meta-swupd/meta-swupd"
BUGTRACKER = "https://github.com/meta-swupd/meta-swupd/issues"
SECTION = "images"
CVE_PRODUCT = ""
LICENSE = "MIT"

IMAGE_INSTALL = "packagegroup-core-boot"

inherit core-image swupd-image

SWUPD_BUNDLES ??= "editors net-tools"
BUNDLE_CONTENTS[editors] ??= "vim-tiny"
BUNDLE_CONTENTS[net-tools] ??= "iproute2 curl"
