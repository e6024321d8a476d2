"""`update` and `check-update` against real content: the updated tree equals the new rootfs."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from pathlib import Path

import clientkit as ck
import pytest
from clientkit import Device
from support.httpserver import FaultServer
from swupd.format import fastparse
from swupd.format import manifest as mf
from swupd.format.limits import LIMITS


def test_update_to_latest_matches_the_new_rootfs(device: Device, stream: ck.Stream, content: FaultServer) -> None:
    before = device.tree()
    r = device.swupd("update")
    assert r.rc == 0, r.err
    assert "Update successful: system updated from version 10 to version 20" in r.out
    assert device.version() == 20
    ck.assert_tree(device.root, stream.expected(20, ck.ALL_BUNDLES, old=before))
    for gone in ("etc/hostname", "usr/lib/plugins-1", "usr/share/swap/inner"):
        assert not os.path.lexists(os.path.join(device.root, gone)), gone
    # State under /var is the device's: neither updated nor removed.
    assert Path(device.root, "var/lib/app/state.txt").read_bytes() == b"state of build 1\n"
    assert Path(device.root, "var/lib/old/state.db").exists()
    # Deltas and packs were used rather than whole files where they pay off.
    assert content.requests("/20/pack-os-core-from-10.tar")
    # "N bytes downloaded" is every byte the server sent: pointer, MoM, manifests and content.
    sent = sum(
        os.path.getsize(os.path.join(stream.www, e.path.lstrip("/")))
        for e in content.requests(method="GET")
        if e.status == 200
    )
    assert re.search(r"\b(\d+) bytes downloaded", r.out + r.err)[1] == str(sent), r.out + r.err
    v = device.swupd("verify")
    assert v.rc == 0 and "0 missing, 0 modified, 0 extra" in v.out, v.out + v.err


def test_update_from_file_url(v10_all: Device, clone_device, stream: ck.Stream) -> None:
    dev = clone_device(v10_all, Path(stream.www).as_uri())
    before = dev.tree()
    r = dev.swupd("update")
    assert r.rc == 0, r.err
    ck.assert_tree(dev.root, stream.expected(20, ck.ALL_BUNDLES, old=before))


def test_update_to_a_given_version(v10_all: Device, clone_device, stream: ck.Stream) -> None:
    with FaultServer(stream.www30) as srv:
        dev = clone_device(v10_all, srv.url())
        before = dev.tree()
        r = dev.swupd("update", "--version", "20")
        assert r.rc == 0, r.err
        assert dev.version() == 20
        ck.assert_tree(dev.root, stream.expected(20, ck.ALL_BUNDLES, old=before))


def test_update_across_two_versions(v10_all: Device, clone_device, stream: ck.Stream) -> None:
    with FaultServer(stream.www30) as srv:
        dev = clone_device(v10_all, srv.url())
        before = dev.tree()
        r = dev.swupd("check-update")
        assert r.rc == 0 and "There is a new OS version available: 30" in r.out, r.out
        r = dev.swupd("update")
        assert r.rc == 0 and "from version 10 to version 30" in r.out, r.out + r.err
        assert dev.version() == 30
        ck.assert_tree(dev.root, stream.expected(30, ck.ALL_BUNDLES, old=before))
        assert dev.swupd("verify").rc == 0


def test_already_up_to_date(device: Device, content: FaultServer) -> None:
    assert device.swupd("update").rc == 0
    snap = device.snapshot()
    content.clear_log()
    r = device.swupd("update")
    assert r.rc == 0 and "System is up to date at version 20" in r.out, r.out + r.err
    assert ck.diff_snapshots(snap, device.snapshot()) == ""
    assert {e.path for e in content.log} <= {"/version/format1/latest", "/version/format1/latest.sig"}
    r = device.swupd("update", "--version", "20")
    assert r.rc == 0 and "System is up to date at version 20" in r.out


def test_check_update(device: Device) -> None:
    r = device.swupd("check-update")
    assert r.rc == 0, r.err
    assert "Current OS version: 10" in r.out and "There is a new OS version available: 20" in r.out
    assert device.swupd("update").rc == 0
    r = device.swupd("check-update")
    assert r.rc == 1 and "There are no updates available" in r.out, r.out + r.err
    assert "Error" not in r.err


def test_download_only_then_update_without_the_content_server(
    device: Device, stream: ck.Stream, content: FaultServer, tmp_path: Path
) -> None:
    before, snap = device.tree(), device.snapshot()
    r = device.swupd("update", "--download-only")
    assert r.rc == 0 and "Downloaded what version 20 needs" in r.out, r.out + r.err
    assert ck.diff_snapshots(snap, device.snapshot()) == "", "--download-only changed the tree"
    assert device.version() == 10
    # Only the signed pointer is left on the "server": every other request would be a 404.
    only_latest = tmp_path / "only-latest"
    (only_latest / "version/format1").mkdir(parents=True)
    for name in ("latest", "latest.sig"):
        (only_latest / "version/format1" / name).write_bytes(Path(stream.www, "version/format1", name).read_bytes())
    with FaultServer(only_latest) as srv:
        r = device.swupd("update", url=srv.url())
        assert r.rc == 0, r.err
        assert {(e.path, e.status) for e in srv.log} == {
            ("/version/format1/latest", 200),
            ("/version/format1/latest.sig", 200),
        }, srv.log
    ck.assert_tree(device.root, stream.expected(20, ck.ALL_BUNDLES, old=before))


def test_user_data_survives_an_update(device: Device, stream: ck.Stream) -> None:
    root = Path(device.root)
    (root / "usr/lib/plugins-1/user-plugin.so").write_bytes(b"the user's own plugin\n")
    (root / "etc/app.conf").write_bytes(b"mode=mine\n")  # the new version changes it
    (root / "etc/hostname").write_bytes(b"my-device\n")  # the new version deletes it
    (root / "var/lib/app/state.txt").write_bytes(b"the device's data\n")  # the new version changes it
    before = device.tree()
    r = device.swupd("update")
    assert r.rc == 0, r.err
    # The deleted directory with the user's file was moved aside, the file intact.
    aside = [p for p in (root / "usr/lib").iterdir() if p.name.startswith(".deleted.")]
    assert len(aside) == 1 and aside[0].name.endswith(".plugins-1"), aside
    assert sorted(p.name for p in aside[0].iterdir()) == ["user-plugin.so"]
    assert (aside[0] / "user-plugin.so").read_bytes() == b"the user's own plugin\n"
    assert not (root / "usr/lib/plugins-1").exists()
    # Configuration the administrator changed is kept, with a warning naming it.
    assert (root / "etc/app.conf").read_bytes() == b"mode=mine\n"
    assert (root / "etc/hostname").read_bytes() == b"my-device\n"
    assert "/etc/app.conf" in r.err and "Warning" in r.err, r.err
    assert "/etc/hostname" in r.err
    # State is never overwritten.
    assert (root / "var/lib/app/state.txt").read_bytes() == b"the device's data\n"
    want = stream.expected(20, ck.ALL_BUNDLES, old=before)
    for kept in ("/etc/app.conf", "/etc/hostname"):
        want[kept] = before[kept]
    ck.assert_tree(device.root, want, allow_extra=[str(Path("/usr/lib") / aside[0].name)])


def kept(device: Device, version: int, bundle: str) -> str:
    return os.path.join(device.state, "manifests", str(version), "parsed", f"Manifest.{bundle}")


def stamp(digest: str) -> bytes:
    """What the client binds a kept manifest to: its signed hash and the limits it was read with."""
    return f"{digest} {LIMITS!r}".encode()


def published(stream: ck.Stream, version: int, bundle: str) -> mf.Manifest:
    return mf.loads(Path(stream.www, str(version), f"Manifest.{bundle}").read_bytes())


def test_manifests_are_kept_parsed_and_a_bad_copy_is_never_used(device: Device, stream: ck.Stream) -> None:
    """Installed manifests are kept parsed under the hash the MoM signs; a damaged copy, or one
    of another manifest, is parsed again from the text instead of being believed."""
    mom10 = ck.mom(stream.www, 10)
    hashes = {e.name: stamp(e.hash) for e in mom10.entries}
    blob = Path(kept(device, 10, "os-core")).read_bytes()
    assert fastparse.kept_loads(blob, hashes["os-core"]) == published(stream, 10, "os-core")
    damaged = bytearray(blob)
    damaged[len(blob) // 2] ^= 0x40
    Path(kept(device, 10, "os-core")).write_bytes(bytes(damaged))
    before = device.tree()
    r = device.swupd("update")
    assert r.rc == 0, r.out + r.err
    ck.assert_tree(device.root, stream.expected(20, ck.ALL_BUNDLES, old=before))
    assert fastparse.kept_loads(Path(kept(device, 10, "os-core")).read_bytes(), hashes["os-core"]) is not None
    mom20 = ck.mom(stream.www, 20)
    for e in mom20.entries:
        if os.path.exists(kept(device, 20, e.name)):
            got = fastparse.kept_loads(Path(kept(device, 20, e.name)).read_bytes(), stamp(e.hash))
            assert got == published(stream, 20, e.name), e.name
    # Another bundle's manifest, whole and well-formed, under os-core's name.
    other = next(e.name for e in mom20.entries if e.name != "os-core" and os.path.exists(kept(device, 20, e.name)))
    Path(kept(device, 20, other)).replace(kept(device, 20, "os-core"))
    v = device.swupd("verify", "--picky")
    assert v.rc == 0 and "0 missing, 0 modified, 0 extra" in v.out, v.out + v.err


def test_a_state_directory_that_cannot_keep_parsed_manifests_still_works(v10_all: Device, clone_device) -> None:
    """Kept-parsed copies are only a cache: when they cannot be written, commands go on."""
    dev = clone_device(v10_all)
    for version in ("10", "20"):
        d = Path(dev.state, "manifests", version)
        d.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(d / "parsed", ignore_errors=True)
        (d / "parsed").write_bytes(b"a file where the directory would go")
    v = dev.swupd("verify")
    assert v.rc == 0 and "0 missing, 0 modified, 0 extra" in v.out, v.out + v.err
    r = dev.swupd("update")
    assert r.rc == 0, r.out + r.err
    assert dev.version() == 20


@pytest.fixture(scope="module")
def etc_stream(stream: ck.Stream, tmp_path_factory: pytest.TempPathFactory) -> ck.Stream:
    """Versions 10, 20 and a version 30 that starts to ship /etc/new.conf and /etc/sub/."""
    d = tmp_path_factory.mktemp("etc-stream")
    rootfs = ck.clone(stream.rootfs[20], str(d / "rootfs-30"))
    ck._write(rootfs, "etc/new.conf", b"shipped by 30\n")
    ck._write(rootfs, "etc/sub/dir.conf", b"shipped by 30 too\n")
    www = ck.copy_www(stream.www, str(d / "www"))
    ck.build_version(www, rootfs, 30, stream.private, stream.bundles_toml)
    return dataclasses.replace(stream, www=www, www30="", rootfs={**stream.rootfs, 30: rootfs})


def test_a_path_the_new_version_starts_to_ship_keeps_the_administrators_file(
    v10_all: Device, clone_device, etc_stream: ck.Stream
) -> None:
    dev = clone_device(v10_all, Path(etc_stream.www).as_uri())
    dev.stream = etc_stream
    root = Path(dev.root)
    (root / "etc/new.conf").write_bytes(b"written by the administrator\n")
    (root / "etc/sub").write_bytes(b"the administrator's file where 30 has a directory\n")
    before = dev.tree()
    r = dev.swupd("update")
    assert r.rc == 0, r.err
    assert dev.version() == 30
    assert (root / "etc/new.conf").read_bytes() == b"written by the administrator\n"
    assert (root / "etc/sub").read_bytes() == b"the administrator's file where 30 has a directory\n"
    for kept in ("/etc/new.conf", "/etc/sub"):
        assert f"Warning: {kept} was changed locally" in r.err, r.err
    want = etc_stream.expected(30, ck.ALL_BUNDLES, old=before)
    want["/etc/new.conf"], want["/etc/sub"] = before["/etc/new.conf"], before["/etc/sub"]
    del want["/etc/sub/dir.conf"]
    ck.assert_tree(dev.root, want)
    v = dev.swupd("verify")
    assert v.rc == 0, v.out + v.err
    assert sorted(line for line in v.out.splitlines() if line.startswith("Config: ")) == [
        "Config: /etc/new.conf",
        "Config: /etc/sub",
    ], v.out


def test_etc_replaced_by_a_link_stays_a_link(device: Device, stream: ck.Stream, tmp_path: Path) -> None:
    """/etc moved to other storage and linked back (as read-only root file systems do): the
    update keeps the link, writes nothing through it, updates everything else, and says so."""
    root = Path(device.root)
    persistent = tmp_path / "persistent-etc"
    shutil.move(str(root / "etc"), persistent)
    (root / "etc").symlink_to(persistent)
    snap = ck.snapshot(str(persistent))
    before = device.tree()
    r = device.swupd("update")
    assert r.rc == 0, r.err
    assert "Warning: /etc was changed locally" in r.err, r.err
    assert (root / "etc").is_symlink() and ck.diff_snapshots(snap, ck.snapshot(str(persistent))) == ""
    want = {p: o for p, o in stream.expected(20, ck.ALL_BUNDLES, old=before).items() if not p.startswith("/etc/")}
    want["/etc"] = before["/etc"]
    ck.assert_tree(device.root, want)
    v = device.swupd("verify")
    assert v.rc == 0 and "Config: /etc" in v.out.splitlines(), v.out + v.err
