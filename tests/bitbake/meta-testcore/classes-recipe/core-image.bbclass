# core-image.bbclass of meta-testcore: OE-core's base class of images, over image.bbclass.
# IMAGE_FEATURES are accepted but add nothing here.
CORE_IMAGE_EXTRA_INSTALL ?= ""
CORE_IMAGE_BASE_INSTALL ?= "packagegroup-core-boot ${CORE_IMAGE_EXTRA_INSTALL}"
IMAGE_INSTALL ?= "${CORE_IMAGE_BASE_INSTALL}"

inherit image
