IMAGE_INSTALL += "app-tools"

inherit harnessimage
