# swupd-image.bbclass: publish every build of an image as a signed, delta-efficient update.
#
# Add `inherit swupd-image` to an image recipe. Each build of the image then:
#   1. has swupd-server write into the rootfs the swupd client's settings (update URLs,
#      format, the trusted public keys, the compatibility id = MACHINE, the stream identity =
#      image name and compatibility id), a marker for every bundle and VERSION_ID = OS_VERSION
#      in os-release, as the client reads them and the server publishes them (at rootfs time,
#      so a version bump rebuilds no package);
#   2. after the image is complete, turns the rootfs into version OS_VERSION of the update
#      stream in ${DEPLOY_DIR_SWUPD}/www with swupd-server: bundle manifests, a signed
#      Manifest.MoM, fullfiles, zero packs and delta packs from earlier versions.
#
# The stream's history is ${DEPLOY_DIR_SWUPD}/www itself: keep that directory between builds
# (it is not in sstate; copy it to and from CI machines), publish it with any web server, and
# raise OS_VERSION for every build that should reach devices. A build whose OS_VERSION is not
# above the newest published version fails instead of overwriting anything.
#
# Bundles are defined by packages, and one rootfs holds all of them:
#   SWUPD_BUNDLES = "editors net-tools"
#   BUNDLE_CONTENTS[editors] = "vim nano"
#   BUNDLE_CONTENTS[net-tools] = "iproute2 curl"
#   BUNDLE_INCLUDES[net-tools] = "editors"        (optional)
# Each bundle is given the paths its packages install (from package data); everything else in
# the rootfs is os-core. The build checks that every ELF file of a bundle finds its libraries
# in that bundle, its includes or os-core (warnings; SWUPD_STRICT_ELF = "1" makes them fatal).
#
# Signing (required):
#   SWUPD_SIGNING_KEY = "/secure/path/release.key"       # swupd-server keygen --private ...
#   SWUPD_PUBLIC_KEYS = "/secure/path/release.pub"       # installed into the image
# Without SWUPD_SIGNING_KEY the build stops. For a first experiment only, SWUPD_DEV_SIGNING =
# "1" signs with the layer's published development key (files/dev-signing), with a warning.
# A stream keeps its key: to move it to a new key, build once with SWUPD_SIGNING_KEY = the new
# key, SWUPD_ROTATE_KEY = the old one (which introduces the new key to devices) and both public
# keys in SWUPD_PUBLIC_KEYS; later builds need only the new key.
#
# Device side: the image gets the `swupd-client` package; `swupd update`, `swupd bundle-add`,
# `swupd verify --fix` and the rest then work against SWUPD_VERSION_URL/SWUPD_CONTENT_URL.
#
# Every variable below has a weak default and a [doc] flag; see also the layer's README.

SWUPD_IMAGE_PN ??= "${PN}"
SWUPD_IMAGE_PN[doc] = "Name of the update stream; the same for every build of this image."

OS_VERSION ??= ""
OS_VERSION[doc] = "Version this build publishes: a positive integer that must rise with every build."

SWUPD_GENERATE ??= "1"
SWUPD_GENERATE[doc] = "Set to 0 to build the image without publishing update content."

SWUPD_BUNDLES ??= ""
SWUPD_BUNDLES[doc] = "Names of the optional bundles; each needs BUNDLE_CONTENTS[<name>]."

BUNDLE_CONTENTS[doc] = "Flags per bundle: the packages whose files make up the bundle."
BUNDLE_INCLUDES[doc] = "Flags per bundle: other bundles it includes (installed with it)."

SWUPD_FILE_BLACKLIST ??= ""
SWUPD_FILE_BLACKLIST[doc] = "Paths (globs allowed) kept in the image but never in update content."

SWUPD_DELTAPACK_VERSIONS ??= ""
SWUPD_DELTAPACK_VERSIONS[doc] = "Earlier OS_VERSIONs to make delta packs from; empty: the last SWUPD_DELTAPACK_COUNT."

SWUPD_DELTAPACK_COUNT ??= "2"
SWUPD_DELTAPACK_COUNT[doc] = "How many earlier versions get delta packs when SWUPD_DELTAPACK_VERSIONS is empty."

SWUPD_FORMAT ??= "1"
SWUPD_FORMAT[doc] = "Content format number; change only together with a client that reads the new format."

SWUPD_VERSION_URL ??= ""
SWUPD_VERSION_URL[doc] = "Where devices read version/format<F>/latest (written into the image)."

SWUPD_CONTENT_URL ??= "${SWUPD_VERSION_URL}"
SWUPD_CONTENT_URL[doc] = "Where devices fetch manifests, fullfiles and packs (written into the image)."

SWUPD_COMPAT ??= "${MACHINE}"
SWUPD_COMPAT[doc] = "Compatibility id: devices refuse content built for another id."

SWUPD_STREAM ??= "${SWUPD_IMAGE_PN}-${SWUPD_COMPAT}"
SWUPD_STREAM[doc] = "Identity of the update stream (letters, digits and . _ + -), signed into every version and written into the image: devices refuse another stream's content even when one key signs both. Changing it part-way through a stream fails the build."

SWUPD_SIGNING_KEY ??= ""
SWUPD_SIGNING_KEY[doc] = "Private Ed25519 key file that signs the stream (swupd-server keygen)."

SWUPD_ROTATE_KEY ??= ""
SWUPD_ROTATE_KEY[doc] = "Private key that signed the stream so far, for the build that rotates to a new SWUPD_SIGNING_KEY."

SWUPD_PUBLIC_KEYS ??= ""
SWUPD_PUBLIC_KEYS[doc] = "Public key files devices trust; empty: the signing key's own public key."

SWUPD_DEV_SIGNING ??= "0"
SWUPD_DEV_SIGNING[doc] = "Set to 1 to sign with the layer's published development key (never for products)."

SWUPD_EXPIRY_DAYS ??= "90"
SWUPD_EXPIRY_DAYS[doc] = "Days until devices treat the stream's latest pointer as stale."

SWUPD_STRICT_ELF ??= "0"
SWUPD_STRICT_ELF[doc] = "Set to 1 to fail the build when an ELF file of a bundle misses a library or a bundle path matches nothing in the rootfs."

DEPLOY_DIR_SWUPD ??= "${DEPLOY_DIR}/swupd/${MACHINE}/${SWUPD_IMAGE_PN}"
DEPLOY_DIR_SWUPD[doc] = "Holds www/ (publish it; keep it between builds) and the build cache."

SWUPD_SERVER ??= "swupd-server"
SWUPD_SERVER[doc] = "The swupd-server command (from swupd-server-native)."

SWUPD_SERVER_DEPENDS ??= "swupd-server-native:do_populate_sysroot"
SWUPD_SERVER_DEPENDS[doc] = "Task that provides SWUPD_SERVER in the native sysroot."

SWUPD_CLIENT_PACKAGE ??= "swupd-client"
SWUPD_CLIENT_PACKAGE[doc] = "Package installed into the image for the device side."

SWUPD_DEV_KEY = "${SWUPD_LAYERDIR}/files/dev-signing/development.key"

# One rootfs holds every bundle; each bundle is then given its packages' paths.
IMAGE_INSTALL:append = " ${SWUPD_CLIENT_PACKAGE} ${@swupd_bundle_packages(d)}"

def swupd_private_key(d, var):
    """The private key file a variable names, or a fatal error naming the variable: a missing
    file, a public key, or a key others may read would only fail later, in swupd-server."""
    import stat
    key = d.getVar(var)
    if not os.path.isfile(key):
        bb.fatal("%s = '%s' does not exist" % (var, key))
    with open(key, "rb") as f:
        tag = (f.read(64).split() or [b""])[0]
    if tag == b"ed25519-public":
        bb.fatal("%s = '%s' is a public key: set it to the private key (swupd-server keygen --private)" % (var, key))
    mode = stat.S_IMODE(os.stat(key).st_mode)
    if mode & 0o077:
        bb.fatal("%s = '%s' has mode %04o: others may read it; make it its owner's alone (chmod 600)" % (var, key, mode))
    return key

def swupd_signing_key(d):
    """The private key file to sign with, or a fatal error naming the variable to set."""
    if d.getVar("SWUPD_SIGNING_KEY"):
        return swupd_private_key(d, "SWUPD_SIGNING_KEY")
    if d.getVar("SWUPD_DEV_SIGNING") == "1":
        import shutil
        bb.warn("signing %s with the published DEVELOPMENT key (SWUPD_DEV_SIGNING = \"1\"); "
                "devices built this way trust a key anyone has" % d.getVar("PN"))
        # A checked-out file is readable by all, which swupd-server refuses for a private key.
        copy = os.path.join(d.getVar("WORKDIR"), "swupd-development.key")
        bb.utils.mkdirhier(os.path.dirname(copy))
        shutil.copyfile(d.getVar("SWUPD_DEV_KEY"), copy)
        os.chmod(copy, 0o600)
        return copy
    bb.fatal("SWUPD_SIGNING_KEY is not set: set it to a private key made with "
             "'swupd-server keygen --private KEY --public KEY.pub' (and SWUPD_PUBLIC_KEYS to the .pub), "
             "or set SWUPD_DEV_SIGNING = \"1\" to use the layer's development key for a first test")

def swupd_server_output(d, args, what):
    """Runs the native swupd-server with `args` and returns what it prints: the layer asks the
    server for the rules both share instead of keeping copies. A failure stops the build with
    the server's one-line reason after `what`, the variables that gave the input."""
    import subprocess
    r = subprocess.run([d.getVar("SWUPD_SERVER")] + args, capture_output=True, text=True)
    if r.returncode != 0:
        reason = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "exit status %d" % r.returncode
        bb.fatal("%s: %s" % (what, reason))
    return r.stdout

def swupd_bundle_packages(d):
    return " ".join(p for b in (d.getVar("SWUPD_BUNDLES") or "").split()
                    for p in (d.getVarFlag("BUNDLE_CONTENTS", b) or "").split())

def swupd_bundle_flags(d, flag):
    return {b: (d.getVarFlag(flag, b) or "").split() for b in (d.getVar("SWUPD_BUNDLES") or "").split()}

# nooelint: oelint.task.noanonpython - the recipe must be skipped at parse time without OS_VERSION
python () {
    for bundle in (d.getVar("SWUPD_BUNDLES") or "").split():
        packages = (d.getVarFlag("BUNDLE_CONTENTS", bundle) or "").split()
        if not packages:
            raise bb.parse.SkipRecipe("BUNDLE_CONTENTS[%s] is empty: bundle %s needs packages" % (bundle, bundle))
    version = d.getVar("OS_VERSION") or ""
    if d.getVar("SWUPD_GENERATE") == "1" and (not version.isdigit() or not 0 < int(version) < 2**31):
        raise bb.parse.SkipRecipe("OS_VERSION must be a positive integer below 2^31 (got '%s'); "
                                  "set it in local.conf or the image recipe" % version)
}

# Rootfs time: the client's settings, bundle markers and VERSION_ID, all written by the native
# server, in the layout the client reads and by the rules it publishes with.
python swupd_rootfs_config () {
    rootfs = d.getVar("IMAGE_ROOTFS")
    keys = (d.getVar("SWUPD_PUBLIC_KEYS") or "").split()
    if not keys and d.getVar("SWUPD_GENERATE") == "1":
        signing = swupd_signing_key(d)
        derived = os.path.join(d.getVar("WORKDIR"), "swupd-signing.pub")
        swupd_server_output(d, ["public-key", "--private", signing, "--output", derived],
                            "SWUPD_SIGNING_KEY = '%s'" % (d.getVar("SWUPD_SIGNING_KEY") or signing))
        keys = [derived]
    for key in keys:
        if not os.path.isfile(key):
            bb.fatal("SWUPD_PUBLIC_KEYS names %s, which does not exist" % key)
    bundles = (d.getVar("SWUPD_BUNDLES") or "").split()
    version = d.getVar("OS_VERSION") or ""
    # Without update content (SWUPD_GENERATE = "0") OS_VERSION need not be a number: then
    # VERSION_ID stays as the image has it.
    args = ["prepare-rootfs", "--rootfs", rootfs]
    if version.isascii() and version.isdigit():
        args += ["--version", version]
    settings = (("--version-url", "SWUPD_VERSION_URL"), ("--content-url", "SWUPD_CONTENT_URL"),
                ("--format", "SWUPD_FORMAT"), ("--compat", "SWUPD_COMPAT"), ("--stream", "SWUPD_STREAM"))
    for option, var in settings:
        if d.getVar(var):
            args += [option, d.getVar(var)]
    for key in keys:
        args += ["--public-key", key]
    given = ", ".join("%s = '%s'" % (var, d.getVar(var) or "") for _, var in settings)
    swupd_server_output(d, args + ["--"] + bundles,
                        "SWUPD_BUNDLES = '%s', OS_VERSION = '%s', %s, SWUPD_PUBLIC_KEYS = '%s'"
                        % (" ".join(bundles), version, given, " ".join(keys)))
}
swupd_rootfs_config[doc] = "Has swupd-server write the client's settings, bundle markers and VERSION_ID into the rootfs."
# Without SWUPD_PUBLIC_KEYS, the public key is derived from the signing key by the native server.
do_rootfs[depends] += "${SWUPD_SERVER_DEPENDS}"
swupd_rootfs_config[vardeps] += "SWUPD_BUNDLES SWUPD_PUBLIC_KEYS SWUPD_VERSION_URL SWUPD_CONTENT_URL SWUPD_FORMAT SWUPD_COMPAT SWUPD_STREAM OS_VERSION"
ROOTFS_POSTPROCESS_COMMAND += "swupd_rootfs_config"

# After the image is complete: publish OS_VERSION into the stream.
python do_swupd_update () {
    import subprocess
    if d.getVar("SWUPD_GENERATE") != "1":
        bb.note("SWUPD_GENERATE is not 1: no update content")
        return
    key = swupd_signing_key(d)
    workdir = os.path.join(d.getVar("WORKDIR"), "swupd")
    bb.utils.mkdirhier(workdir)
    try:
        text = swupdlayer.bundles.bundles_toml(
            (d.getVar("SWUPD_BUNDLES") or "").split(),
            swupd_bundle_flags(d, "BUNDLE_CONTENTS"),
            swupd_bundle_flags(d, "BUNDLE_INCLUDES"),
            d.getVar("PKGDATA_DIR"),
            (d.getVar("SWUPD_FILE_BLACKLIST") or "").split(),
        )
    except swupdlayer.bundles.BundleConfigError as e:
        bb.fatal(str(e))
    bundles_file = os.path.join(workdir, "bundles.toml")
    with open(bundles_file, "w") as f:
        f.write(text)
    deploy = d.getVar("DEPLOY_DIR_SWUPD")
    www = os.path.join(deploy, "www")
    bb.utils.mkdirhier(www)
    published = swupd_server_output(d, ["latest", "--www", www, "--format", d.getVar("SWUPD_FORMAT")],
                                    "DEPLOY_DIR_SWUPD = '%s'" % deploy).strip()
    if int(d.getVar("OS_VERSION")) <= int(published):
        bb.fatal("OS_VERSION %s is not above %s, the latest version published in %s: raise OS_VERSION "
                 "for every build that should reach devices" % (d.getVar("OS_VERSION"), published, www))
    cmd = [d.getVar("SWUPD_SERVER"), "create-update", "--www", www, "--rootfs", d.getVar("IMAGE_ROOTFS"),
           "--bundles", bundles_file, "--version", d.getVar("OS_VERSION"), "--signing-key", key,
           "--format", d.getVar("SWUPD_FORMAT"), "--compat", d.getVar("SWUPD_COMPAT"), "--stream", d.getVar("SWUPD_STREAM"),
           "--expiry-days", d.getVar("SWUPD_EXPIRY_DAYS"), "--cache-dir", os.path.join(deploy, "cache"),
           "--jobs", d.getVar("BB_NUMBER_THREADS") or "1"]
    versions = (d.getVar("SWUPD_DELTAPACK_VERSIONS") or "").split()
    if versions:
        cmd += ["--delta-versions", " ".join(versions)]
    else:
        cmd += ["--deltas", d.getVar("SWUPD_DELTAPACK_COUNT")]
    if d.getVar("SWUPD_STRICT_ELF") == "1":
        cmd.append("--strict")
    if d.getVar("SWUPD_ROTATE_KEY"):
        cmd += ["--rotate-key", swupd_private_key(d, "SWUPD_ROTATE_KEY")]
    bb.note("running: %s" % " ".join(cmd))
    r = subprocess.run(cmd, capture_output=True, text=True)
    for line in r.stdout.splitlines():
        (bb.warn if "warning:" in line else bb.note)(line.strip())
    if r.returncode != 0:
        reason = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode
        # swupd-server names its own options; a build sets them through variables.
        for option, var in (("--rotate-key", "SWUPD_ROTATE_KEY"), ("--format", "SWUPD_FORMAT")):
            if option in str(reason):
                reason = "%s (in a build: %s)" % (reason, var)
        if "--change-stream" in str(reason):
            reason = ("%s (a build does not move a stream: keep SWUPD_STREAM and SWUPD_COMPAT, or publish "
                      "another stream into another DEPLOY_DIR_SWUPD)" % reason)
        bb.fatal("swupd-server could not publish OS_VERSION %s into %s: %s" % (d.getVar("OS_VERSION"), www, reason))
    r = subprocess.run([d.getVar("SWUPD_SERVER"), "report", "--www", www], capture_output=True, text=True)
    if r.returncode != 0:
        bb.warn("swupd-server report failed: %s" % r.stderr.strip())
    bb.plain("swupd: published %s version %s into %s" % (d.getVar("SWUPD_IMAGE_PN"), d.getVar("OS_VERSION"), www))
}
do_swupd_update[doc] = "Publishes the finished rootfs as version OS_VERSION of the image's update stream."
do_swupd_update[fakeroot] = "1"
do_swupd_update[lockfiles] = "${DEPLOY_DIR_SWUPD}/swupd.lock"
do_swupd_update[depends] += "${SWUPD_SERVER_DEPENDS}"
do_swupd_update[vardeps] += "OS_VERSION SWUPD_BUNDLES SWUPD_FILE_BLACKLIST SWUPD_DELTAPACK_VERSIONS SWUPD_DELTAPACK_COUNT SWUPD_FORMAT SWUPD_COMPAT SWUPD_STREAM SWUPD_SIGNING_KEY SWUPD_ROTATE_KEY SWUPD_DEV_SIGNING SWUPD_STRICT_ELF SWUPD_EXPIRY_DAYS"
do_swupd_update[vardepsexclude] += "BB_NUMBER_THREADS"
addtask swupd_update after do_image_complete before do_build
