"""The commands an image build asks instead of keeping the server's rules: `latest` (the version
a published tree's pointer names) and `prepare-rootfs` (VERSION_ID, bundle markers and the client's settings)."""

from __future__ import annotations

import os

import pytest
import reader
from buildutil import all_entries, cli, copy_www, create

MARKERS = "usr/share/clear/bundles"


def test_latest_prints_the_published_version_or_0(stream, tmp_path):
    r = cli("latest", "--www", stream.www)
    assert (r.rc, r.out) == (0, "20\n"), r.err
    assert cli("latest", "--www", stream.www, "--format", "2").out == "0\n"
    assert cli("latest", "--www", tmp_path / "empty").out == "0\n"


def test_latest_of_a_corrupt_pointer_is_one_line_error(stream, tmp_path):
    www = copy_www(stream.www, str(tmp_path / "www"))
    with open(os.path.join(www, "version/format1/latest"), "w") as f:
        f.write("twenty\n")
    r = cli("latest", "--www", www)
    assert r.rc == 3  # malformed published data
    assert "version/format1/latest" in r.one_line_error()


def _layout(root, kind: str) -> None:
    """os-release as images have it: the OS's file with /etc's link to it (relative or
    absolute), a file elsewhere that /etc links to, two files of their own, or none."""
    lib, etc = root / "usr/lib/os-release", root / "etc/os-release"
    lib.parent.mkdir(parents=True)
    etc.parent.mkdir()
    if kind in ("relative", "absolute", "two files"):
        lib.write_text('# made by hand\nVERSION_ID="1.2"\nID=x\n')
    if kind == "relative":
        etc.symlink_to("../usr/lib/os-release")
    elif kind == "absolute":
        etc.symlink_to("/usr/lib/os-release")
    elif kind == "elsewhere":
        (root / "usr/share").mkdir()
        (root / "usr/share/os-release").write_text("ID=y\n")
        etc.symlink_to("/usr/share/os-release")
    elif kind == "two files":
        etc.write_text("ID=stale\n")


@pytest.mark.parametrize("kind", ["relative", "absolute", "elsewhere", "two files", "none"])
def test_prepare_rootfs_stamps_os_release_as_the_build_publishes_it(keys, tmp_path, kind):
    """A flashed device holds the os-release its manifests list, whichever way the image keeps
    it: every file of the prepared image hashes as its published entry."""
    root = tmp_path / "rootfs"
    _layout(root, kind)
    assert cli("prepare-rootfs", "--rootfs", root, "--version", "30", "editors").rc == 0
    text = (root / "usr/lib/os-release").read_text()
    assert "VERSION_ID=30\n" in text and not (root / "usr/lib/os-release").is_symlink()
    bundles = tmp_path / "bundles.toml"
    bundles.write_text('[bundle.editors]\npaths = ["/usr/share/clear/bundles/editors"]\n')
    create(str(tmp_path / "www"), root, 30, keys.private, bundles)
    www = reader.Www(str(tmp_path / "www"), keys.raw)
    entries = all_entries(www.bundles(30))
    image = reader.tree(str(root))
    assert set(image) == set(entries)
    for path, obj in image.items():
        assert obj.hash() == entries[path].hash, path
    assert sorted(p.name for p in (root / MARKERS).iterdir()) == ["editors", "os-core"]
    if kind == "two files":
        assert (root / "etc/os-release").read_text() == text
    elif kind != "none":
        assert os.path.islink(root / "etc/os-release")


def test_prepare_rootfs_keeps_to_the_rootfs(tmp_path):
    """Links that climb out of the image or name a host path are followed inside it."""
    root = tmp_path / "deep/er/rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "usr").symlink_to("../../../../../../../../outside")
    (root / "etc/os-release").symlink_to("../../../../../../../../etc/os-release")
    host_file = tmp_path / "deep/outside"
    assert cli("prepare-rootfs", "--rootfs", root, "--version", "4").rc == 0
    assert (root / "outside/lib/os-release").read_text() == 'NAME="Linux"\nID=linux\nVERSION_ID=4\n'
    assert not host_file.exists() and not (tmp_path / "outside").exists()


def test_prepare_rootfs_without_a_version_writes_only_the_markers(tmp_path):
    root = tmp_path / "rootfs"
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/lib/os-release").write_text("ID=z\nVERSION_ID=3\n")
    assert cli("prepare-rootfs", "--rootfs", root, "--", "apps").rc == 0
    assert (root / "usr/lib/os-release").read_text() == "ID=z\nVERSION_ID=3\n"
    assert sorted(os.listdir(root / MARKERS)) == ["apps", "os-core"]


@pytest.mark.parametrize(
    ("bundles", "message"),
    [
        (["full"], "'full' is not a usable bundle name"),
        (["MoM"], "'MoM' is not a usable bundle name"),
        (["os-core"], "'os-core' is not a usable bundle name"),
        (["a/b"], "'a/b' is not a usable bundle name"),
        (["apps", "tools", "apps"], "bundle 'apps' is named twice"),
    ],
)
def test_prepare_rootfs_refuses_bundle_names_the_format_refuses(tmp_path, bundles, message):
    root = tmp_path / "rootfs"
    root.mkdir()
    r = cli("prepare-rootfs", "--rootfs", root, "--version", "10", *bundles)
    assert r.rc == 2
    assert r.one_line_error() == f"swupd-server: {message}"
    assert os.listdir(root) == []


def _keypair(tmp_path, name: str):
    key, pub = tmp_path / f"{name}.key", tmp_path / f"{name}.pub"
    assert cli("keygen", "--private", key, "--public", pub).rc == 0
    return pub


def test_prepare_rootfs_writes_the_settings_the_client_reads(tmp_path):
    """What an image build writes is what the device's client loads: both URLs, the format, the
    ids, and every key (two files of one name included); keys an earlier build left are gone."""
    from swupd import config
    from swupd.format.signing import load_public

    root = tmp_path / "rootfs"
    stale = root / "usr/share/defaults/swupd/keys/old.pub"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(_keypair(tmp_path, "old").read_bytes())
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    pubs = [_keypair(tmp_path / "a", "release"), _keypair(tmp_path / "b", "release")]
    r = cli(
        "prepare-rootfs", "--rootfs", root, "--version-url", "https://updates.example/v/",
        "--content-url", "https://cdn.example/c", "--format", "3", "--compat", "intel-corei7-64",
        "--stream", "ostro-image-swupd-intel-corei7-64", "--public-key", pubs[0], "--public-key", pubs[1],
    )  # fmt: skip
    assert r.rc == 0, r.err
    s = config.load(str(root))
    assert (s.versionurl, s.contenturl, s.format) == ("https://updates.example/v", "https://cdn.example/c", 3)
    assert (s.compat, s.stream) == ("intel-corei7-64", "ostro-image-swupd-intel-corei7-64")
    assert sorted(k.raw for k in s.keys) == sorted(load_public(str(p)).raw for p in pubs)
    assert s.origins["keys"].endswith("usr/share/defaults/swupd/keys")
    assert not stale.exists()
    assert os.listdir(root / MARKERS) == ["os-core"]


def test_prepare_rootfs_without_settings_leaves_the_client_settings_alone(tmp_path):
    root = tmp_path / "rootfs"
    root.mkdir()
    assert cli("prepare-rootfs", "--rootfs", root, "--").rc == 0  # as an image build without bundles runs it
    assert not (root / "usr/share/defaults").exists()
    assert os.listdir(root / MARKERS) == ["os-core"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--compat", "intel corei7"], "compat id 'intel corei7' is not 1-128 of"),
        (["--stream", "../x"], "stream identity '../x' is not 1-128 of"),
        (["--version-url", "https://a b/"], "URL 'https://a b/' holds a space"),
        (["--public-key", "NOTAKEY"], "NOTAKEY"),
    ],
)
def test_prepare_rootfs_refuses_settings_a_device_would_refuse(tmp_path, args, message):
    root = tmp_path / "rootfs"
    root.mkdir()
    (tmp_path / "NOTAKEY").write_text("hello\n")
    args = [str(tmp_path / a) if a == "NOTAKEY" else a for a in args]
    r = cli("prepare-rootfs", "--rootfs", root, *args)
    assert r.rc == 2
    assert message in r.one_line_error()
    assert os.listdir(root) == []


def test_prepare_rootfs_names_a_link_loop(tmp_path):
    root = tmp_path / "rootfs"
    root.mkdir()
    (root / "usr").symlink_to("usr")
    r = cli("prepare-rootfs", "--rootfs", root, "--version", "4")
    assert r.rc == 2 and "/usr/share/clear/bundles of the rootfs is a link loop" in r.one_line_error()


def test_prepare_rootfs_replaces_only_the_rootfs_keys(tmp_path):
    """The keys an earlier build left are removed inside the image, never through a link that
    leads out of it."""
    root = tmp_path / "a/rootfs"
    root.mkdir(parents=True)
    outside = tmp_path / "a/host-usr/share/defaults/swupd/keys/host.pub"
    outside.parent.mkdir(parents=True)
    outside.write_text("the host's own\n")
    (root / "usr").symlink_to("../host-usr")
    pub = _keypair(tmp_path, "release")
    assert cli("prepare-rootfs", "--rootfs", root, "--public-key", pub).rc == 0
    assert outside.read_text() == "the host's own\n"
    keys = root / "host-usr/share/defaults/swupd/keys"
    assert [p.read_bytes() for p in keys.iterdir()] == [pub.read_bytes()]
