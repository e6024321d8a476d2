SUMMARY = "An image published as a swupd update stream, with one optional bundle"
LICENSE = "MIT"

IMAGE_INSTALL = "packagegroup-core-boot hello"

inherit core-image swupd-image

SWUPD_BUNDLES = "apps"
BUNDLE_CONTENTS[apps] = "app-tools"
SWUPD_FILE_BLACKLIST = "/etc/hello.conf"
