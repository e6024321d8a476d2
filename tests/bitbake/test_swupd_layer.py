"""meta-swupd under real BitBake: the image recipe parses with the layer's variables, two builds
with rising OS_VERSIONs publish a signed stream with deltas, the client installs the first and
updates to the second, and the layer refuses what it must (no key, no version, no rise)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import bbtest
import pytest
from bbtest import TOP, describe

LAYER = TOP / "meta-swupd"
TEST_LAYER = Path(__file__).resolve().parent / "meta-swupd-test"
IMAGE = "swupd-test-image"
BIN = Path(sys.executable).parent


def keypair(directory: Path) -> tuple[Path, Path]:
    key, pub = directory / "release.key", directory / "release.pub"
    subprocess.run([BIN / "swupd-server", "keygen", "--private", key, "--public", pub], check=True, capture_output=True)
    return key, pub


def rootfs(top: Path) -> Path:
    return top / "tmp" / "work" / "qemux86-64" / IMAGE / "1.0" / "rootfs"


def swupd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([BIN / "swupd", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def stream(tmp_path_factory, bitbake_harness):
    """Two builds of the test image: OS_VERSION 10, then 20 with a changed package."""
    if not bbtest.have_fakeroot():
        pytest.skip(bbtest.NO_FAKEROOT)
    base = tmp_path_factory.mktemp("layer")
    key, pub = keypair(base)
    deploy = base / "swupd"
    conf = (
        f'OS_VERSION = "10"\nSWUPD_SIGNING_KEY = "{key}"\nSWUPD_PUBLIC_KEYS = "{pub}"\n'
        f'DEPLOY_DIR_SWUPD = "{deploy}"\nSWUPD_VERSION_URL = "file://{deploy}/www"\n'
    )
    top = bbtest.make_builddir(base / "build", [LAYER, TEST_LAYER], conf)
    first = bbtest.bitbake(top, IMAGE)
    v10_rootfs = base / "rootfs-10"
    if first.returncode == 0:
        subprocess.run(["cp", "-a", rootfs(top), v10_rootfs], check=True)
    bbtest.append_local_conf(top, 'OS_VERSION = "20"\nAPP_TOOLS_RELEASE = "2"\n')
    second = bbtest.bitbake(top, IMAGE) if first.returncode == 0 else first
    return {
        "top": top,
        "first": first,
        "second": second,
        "www": deploy / "www",
        "pub": pub,
        "base": base,
        "v10": v10_rootfs,
    }


def test_image_recipe_parses_with_the_layer(stream):
    r = bbtest.bitbake(stream["top"], "-e", IMAGE)
    assert r.returncode == 0, describe(r)
    env = bbtest.parse_env_output(r.stdout)
    assert {"swupd-client", "app-tools", "hello"} <= set(env["IMAGE_INSTALL"].split())
    assert env["SWUPD_COMPAT"] == "qemux86-64"
    assert env["SWUPD_STREAM"] == f"{IMAGE}-qemux86-64"
    assert env["SWUPD_BUNDLES"] == "apps"
    assert env["DEPLOY_DIR_SWUPD"] == str(stream["www"].parent)
    r = bbtest.bitbake(stream["top"], IMAGE, "-c", "listtasks")
    assert "do_swupd_update" in r.stdout, describe(r)


def test_two_builds_publish_a_signed_stream(stream):
    assert stream["first"].returncode == 0, describe(stream["first"])
    assert stream["second"].returncode == 0, describe(stream["second"])
    www = stream["www"]
    sys.path.insert(0, str(TOP / "client"))
    from swupd.format import latest, signing
    from swupd.format import manifest as mf

    trusted = [signing.load_public(str(stream["pub"]))]
    record = latest.loads((www / "version/format1/latest").read_bytes())
    assert record.version == 20
    pointer = www / "version/format1/latest"
    signing.verify(pointer.read_bytes(), (www / "version/format1/latest.sig").read_bytes(), trusted)
    mom_bytes = (www / "20/Manifest.MoM").read_bytes()
    signing.verify(mom_bytes, (www / "20/Manifest.MoM.sig").read_bytes(), trusted)
    mom = mf.loads(mom_bytes, is_mom=True)
    assert mom.compat == "qemux86-64"
    assert mom.stream == record.stream == f"{IMAGE}-qemux86-64"
    bundles = {e.path: e for e in mom.entries}
    assert set(bundles) == {"os-core", "apps"}
    apps = mf.loads((www / f"{bundles['apps'].version}/Manifest.apps").read_bytes())
    paths = {e.path for e in apps.entries if e.present}
    # The bundle's paths come from app-tools' package data.
    assert {"/usr/bin/app-tool", "/usr/bin/app-info", "/usr/share/app-tools/release.txt"} <= paths
    core = mf.loads((www / f"{bundles['os-core'].version}/Manifest.os-core").read_bytes())
    core_paths = {e.path for e in core.entries if e.present}
    assert "/usr/bin/hello" in core_paths and "/usr/bin/app-tool" not in core_paths
    assert "/etc/hello.conf" not in core_paths  # SWUPD_FILE_BLACKLIST
    assert (www / "20" / "pack-apps-from-10.tar").is_file()
    assert (www / "report" / "index.html").is_file()


def test_image_carries_the_client_configuration(stream):
    assert stream["second"].returncode == 0, describe(stream["second"])
    root = rootfs(stream["top"])
    defaults = root / "usr/share/defaults/swupd"
    assert (defaults / "versionurl").read_text() == f"file://{stream['www']}\n"
    assert (defaults / "format").read_text() == "1\n"
    assert (defaults / "compat").read_text() == "qemux86-64\n"
    assert (defaults / "stream").read_text() == f"{IMAGE}-qemux86-64\n"
    assert (defaults / "keys/release.pub").read_bytes() == stream["pub"].read_bytes()
    assert (root / "usr/share/clear/bundles/apps").is_file()
    assert "VERSION_ID=20\n" in (root / "usr/lib/os-release").read_text()
    assert list(root.glob("usr/lib*/python3*/site-packages/swupd/cli.py")), "the client is not in the image"
    # Shipped byte-compiled, so a device never compiles it (nor leaves unlisted caches in /usr).
    assert list(root.glob("usr/lib*/python3*/site-packages/swupd/__pycache__/cli.*.pyc"))
    assert (root / "usr/bin/swupd").read_text().endswith("from swupd.cli import entry\nentry()\n")


def test_client_installs_10_and_updates_to_20(stream, tmp_path):
    assert stream["second"].returncode == 0, describe(stream["second"])
    device = tmp_path / "device"
    url = f"file://{stream['www']}"
    r = swupd(
        "os-install",
        "--url",
        url,
        "--key",
        stream["pub"],
        "--format",
        "1",
        "--version",
        "10",
        "--compat",
        "qemux86-64",
        "--bundles",
        "apps",
        device,
    )
    assert r.returncode == 0, r.stderr
    assert (device / "usr/share/app-tools/release.txt").read_text() == "release 1\n"
    # From here the device uses the configuration the image carries.
    r = swupd("update", "--path", device)
    assert r.returncode == 0, r.stderr
    assert (device / "usr/share/app-tools/release.txt").read_text() == "release 2\n"
    assert "VERSION_ID=20\n" in (device / "usr/lib/os-release").read_text()
    r = swupd("verify", "--path", device)
    assert r.returncode == 0, r.stdout + r.stderr
    r = swupd("bundle-remove", "apps", "--path", device)
    assert r.returncode == 0, r.stderr
    assert not (device / "usr/bin/app-tool").exists()
    assert swupd("verify", "--path", device).returncode == 0


def test_version_bump_rebuilds_no_package(stream):
    """A new OS_VERSION changes only the image (os-release at rootfs time), never a package."""
    assert stream["second"].returncode == 0, describe(stream["second"])
    top = stream["top"]
    bbtest.append_local_conf(top, 'OS_VERSION = "30"\n')
    r = bbtest.bitbake(top, IMAGE)
    assert r.returncode == 0, describe(r)
    ran = bbtest.tasks_run(r)
    assert ran and all(recipe == f"{IMAGE}.bb" for recipe, _ in ran), ran
    assert ("swupd-test-image.bb", "do_swupd_update") in ran
    assert "VERSION_ID=30\n" in (rootfs(top) / "usr/lib/os-release").read_text()
    assert (stream["www"] / "30" / "Manifest.MoM").is_file()


def test_os_version_must_rise(stream):
    assert stream["second"].returncode == 0, describe(stream["second"])
    top = stream["top"]
    bbtest.append_local_conf(top, 'OS_VERSION = "15"\nAPP_TOOLS_RELEASE = "3"\n')
    try:
        r = bbtest.bitbake(top, IMAGE)
        assert r.returncode != 0
        out = r.stdout + r.stderr
        assert "OS_VERSION 15 is not above" in out and "the latest version published" in out, describe(r)
        assert not (stream["www"] / "15").exists()
    finally:
        bbtest.append_local_conf(top, 'APP_TOOLS_RELEASE = "2"\n')


def test_build_without_signing_key_stops_naming_the_variable(make_builddir, bitbake, fakeroot):
    top = make_builddir([LAYER, TEST_LAYER], 'OS_VERSION = "10"\n')
    r = bitbake(top, IMAGE)
    assert r.returncode != 0
    assert "SWUPD_SIGNING_KEY is not set" in r.stdout + r.stderr, describe(r)


def test_image_without_os_version_is_skipped_with_a_reason(make_builddir, bitbake):
    top = make_builddir([LAYER, TEST_LAYER])
    r = bitbake(top, IMAGE)
    assert r.returncode != 0
    assert "OS_VERSION must be a positive integer" in r.stdout + r.stderr, describe(r)


def test_layer_is_lint_clean(oelint):
    files = sorted(str(p) for p in LAYER.rglob("*") if p.suffix in (".bb", ".bbappend", ".bbclass", ".conf"))
    r = oelint(
        *files,
        known_vars=("BUNDLE_CONTENTS", "BUNDLE_INCLUDES", "SWUPD_LAYERDIR"),
        # `swupd-image` is the class name meta-swupd users have always inherited.
        suppress=("oelint.vars.homepageping", "oelint.bbclass.underscores"),
    )
    assert not r.findings, "\n".join(map(str, r.findings))


def test_development_signing_is_explicit_and_loud(make_builddir, bitbake, fakeroot, tmp_path):
    deploy = tmp_path / "dev"
    conf = f'OS_VERSION = "10"\nSWUPD_DEV_SIGNING = "1"\nDEPLOY_DIR_SWUPD = "{deploy}"\n'
    top = make_builddir([LAYER, TEST_LAYER], conf)
    r = bitbake(top, IMAGE)
    assert r.returncode == 0, describe(r)
    assert "DEVELOPMENT key" in r.stdout + r.stderr
    assert os.path.isfile(deploy / "www/10/Manifest.MoM.sig")


def test_signing_keys_are_checked_and_a_rotation_is_named(stream, tmp_path):
    """A public key as SWUPD_SIGNING_KEY stops the build naming the variable; a new key without
    SWUPD_ROTATE_KEY stops it naming that one; with it, the build introduces the new key."""
    assert stream["second"].returncode == 0, describe(stream["second"])
    top, www, pub = stream["top"], stream["www"], stream["pub"]
    old_key = stream["base"] / "release.key"
    new_key, new_pub = tmp_path / "next.key", tmp_path / "next.pub"
    subprocess.run([BIN / "swupd-server", "keygen", "--private", new_key, "--public", new_pub], check=True)
    try:
        bbtest.append_local_conf(top, f'OS_VERSION = "40"\nSWUPD_SIGNING_KEY = "{pub}"\n')
        r = bbtest.bitbake(top, IMAGE)
        assert r.returncode != 0
        assert f"SWUPD_SIGNING_KEY = '{pub}' is a public key" in r.stdout + r.stderr, describe(r)
        bbtest.append_local_conf(top, f'SWUPD_SIGNING_KEY = "{new_key}"\nSWUPD_PUBLIC_KEYS = "{pub} {new_pub}"\n')
        r = bbtest.bitbake(top, IMAGE)
        assert r.returncode != 0
        assert "SWUPD_ROTATE_KEY" in r.stdout + r.stderr, describe(r)
        assert not (www / "40").exists()
        bbtest.append_local_conf(top, f'SWUPD_ROTATE_KEY = "{old_key}"\n')
        r = bbtest.bitbake(top, IMAGE)
        assert r.returncode == 0, describe(r)
        sys.path.insert(0, str(TOP / "client"))
        from swupd.format import layout, signing

        old, new = signing.load_public(str(pub)), signing.load_public(str(new_pub))
        intro = www / layout.key_introduction(new.keyid)
        assert intro.read_bytes() == new_pub.read_bytes()
        signing.verify(intro.read_bytes(), (www / layout.sig(layout.key_introduction(new.keyid))).read_bytes(), [old])
        for key in (old, new):
            signing.verify((www / "40/Manifest.MoM").read_bytes(), (www / "40/Manifest.MoM.sig").read_bytes(), [key])
        keys = rootfs(top) / "usr/share/defaults/swupd/keys"
        assert sorted(p.read_bytes() for p in keys.iterdir()) == sorted([pub.read_bytes(), new_pub.read_bytes()])
    finally:
        bbtest.append_local_conf(
            top, f'SWUPD_SIGNING_KEY = "{old_key}"\nSWUPD_PUBLIC_KEYS = "{pub}"\nSWUPD_ROTATE_KEY = ""\n'
        )


def test_a_signing_key_that_is_no_key_file_stops_the_build_naming_it(stream, tmp_path):
    """A file that holds no key (an OpenSSH key, bytes of anything) stops the build with one
    error naming the variable and what swupd-server found, not a Python stack trace; the image's
    public key is derived from it when SWUPD_PUBLIC_KEYS is empty."""
    assert stream["second"].returncode == 0, describe(stream["second"])
    top, www = stream["top"], stream["www"]
    ssh, binary = tmp_path / "id_ed25519", tmp_path / "random.key"
    ssh.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n")
    binary.write_bytes(bytes(range(256)))
    try:
        for key in (ssh, binary):
            key.chmod(0o600)
            bbtest.append_local_conf(top, f'OS_VERSION = "50"\nSWUPD_SIGNING_KEY = "{key}"\nSWUPD_PUBLIC_KEYS = ""\n')
            r = bbtest.bitbake(top, IMAGE)
            out = r.stdout + r.stderr
            assert r.returncode != 0
            assert f"SWUPD_SIGNING_KEY = '{key}'" in out and "is not a key file" in out, describe(r)
            assert "stack trace" not in out and "CalledProcessError" not in out, describe(r)
            assert "UnicodeDecodeError" not in out, describe(r)
            assert not (www / "50").exists()
    finally:
        key, pub = stream["base"] / "release.key", stream["pub"]
        bbtest.append_local_conf(top, f'SWUPD_SIGNING_KEY = "{key}"\nSWUPD_PUBLIC_KEYS = "{pub}"\n')


def _without_stream_identity(www: Path, version: int, key: Path) -> None:
    """Make `www` look published by a release before stream identities: no `stream:` line in
    the newest MoM and `latest`, both signed again."""
    sys.path.insert(0, str(TOP / "client"))
    from swupd.format import signing

    for rel in (f"{version}/Manifest.MoM", "version/format1/latest"):
        data = (www / rel).read_bytes()
        data = b"".join(line for line in data.splitlines(keepends=True) if not line.startswith(b"stream:\t"))
        (www / rel).write_bytes(data)
        (www / f"{rel}.sig").write_bytes(signing.sign(data, [signing.load_private(str(key))]))


def test_a_refusal_names_the_variable_a_build_sets(stream, tmp_path):
    """swupd-server's refusals name its options; a build's error says what to set instead: a
    stream published before stream identities goes on with SWUPD_FORMAT, and a changed
    SWUPD_STREAM is not something a build can move a stream to."""
    assert stream["second"].returncode == 0, describe(stream["second"])
    top, www = stream["top"], stream["www"]
    newest = max(int(p.name) for p in www.iterdir() if p.name.isdigit())
    old = tmp_path / "old"
    old.mkdir()
    subprocess.run(["cp", "-a", www, old / "www"], check=True)
    _without_stream_identity(old / "www", newest, stream["base"] / "release.key")
    try:
        bbtest.append_local_conf(top, f'OS_VERSION = "60"\nDEPLOY_DIR_SWUPD = "{old}"\n')
        r = bbtest.bitbake(top, IMAGE)
        assert r.returncode != 0
        out = r.stdout + r.stderr
        assert "has no stream identity" in out and "--format 2" in out, describe(r)
        assert "SWUPD_FORMAT" in out, describe(r)
        assert not (old / "www/60").exists()
        bbtest.append_local_conf(top, f'DEPLOY_DIR_SWUPD = "{www.parent}"\nSWUPD_STREAM = "another-stream"\n')
        r = bbtest.bitbake(top, IMAGE)
        assert r.returncode != 0
        out = r.stdout + r.stderr
        assert "'another-stream'" in out and "SWUPD_STREAM" in out and "DEPLOY_DIR_SWUPD" in out, describe(r)
        assert not (www / "60").exists()
    finally:
        bbtest.append_local_conf(top, f'DEPLOY_DIR_SWUPD = "{www.parent}"\nSWUPD_STREAM = "{IMAGE}-qemux86-64"\n')
