SUMMARY = "test-image: a small image of the test packages"
LICENSE = "MIT"

IMAGE_INSTALL = "packagegroup-core-boot hello"

inherit image
