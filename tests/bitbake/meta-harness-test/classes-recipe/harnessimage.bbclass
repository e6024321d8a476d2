# harnessimage.bbclass: what a layer's image class does, for the harness tests: rootfs
# post-processing in Python (through the layer library) and in shell (under fakeroot), and a
# task after the finished image.

HARNESS_GREETING ??= "hello from the harness"

python harness_rootfs_python () {
    harnesslib.marker.write(d.getVar("IMAGE_ROOTFS"), "harness-python", d.getVar("HARNESS_GREETING"))
    bb.note("harness_rootfs_python ran")
}

harness_rootfs_shell () {
    echo "shell" > ${IMAGE_ROOTFS}${sysconfdir}/harness-shell
    chown 1000:1000 ${IMAGE_ROOTFS}${sysconfdir}/harness-shell
    bbnote "harness_rootfs_shell ran"
}

ROOTFS_POSTPROCESS_COMMAND += "harness_rootfs_python; harness_rootfs_shell;"

python do_harness_check () {
    link = os.path.join(d.getVar("DEPLOY_DIR_IMAGE"), d.getVar("IMAGE_LINK_NAME") + ".tar")
    if not os.path.exists(link):
        bb.fatal("%s is missing after do_image_complete" % link)
    with open(os.path.join(d.getVar("DEPLOY_DIR_IMAGE"), "harness-check"), "w") as f:
        f.write(os.path.realpath(link) + "\n")
}
do_harness_check[doc] = "Runs after the finished image (as a layer's image task would)"
addtask harness_check after do_image_complete before do_build
