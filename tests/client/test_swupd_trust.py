"""Attacks on the update's trust: every one fails with its documented exit status and leaves
the tree byte for byte as it was."""

from __future__ import annotations

import json
import shutil
import time
import types
from pathlib import Path

import clientkit as ck
import pytest
import zstandard
from clientkit import DAY, Device
from support.httpserver import FaultServer
from swupd.trust import trusted

LATEST = "version/format1/latest"


@pytest.fixture
def attacked(v10_all: Device, clone_device, private_server: FaultServer) -> Device:
    """A version 10 device updating from a private copy of www/ that the test tampers with."""
    return clone_device(v10_all, private_server.url())


def refused(dev: Device, code: int, *args: str, message: str) -> str:
    """Run `update ARGS` on a device at version 10 and check it fails with `code` and one error
    line that says `message`, the tree unchanged and the device still at 10."""
    snap = dev.snapshot()
    r = dev.swupd("update", *args)
    assert r.rc == code, (r.rc, r.out, r.err)
    line = r.error_line()
    assert message in line, line
    assert ck.diff_snapshots(snap, dev.snapshot()) == "", "a refused update changed the tree"
    assert not Path(dev.state, "journal").exists()
    assert dev.version() == 10
    return line


def drop_packs(www: Path, version: int = 20) -> None:
    for p in (www / str(version)).glob("pack-*.tar"):
        p.unlink()


# -- signatures ---------------------------------------------------------------------------------


def test_mom_signature_garbage(attacked: Device, private_www: Path) -> None:
    (private_www / "20/Manifest.MoM.sig").write_bytes(b"ed25519 0123456789abcdef " + b"zz" * 64 + b"\n")
    refused(attacked, 4, message="malformed signature value")


def test_mom_signature_empty(attacked: Device, private_www: Path) -> None:
    (private_www / "20/Manifest.MoM.sig").write_bytes(b"")
    refused(attacked, 4, message="no signature")


def test_mom_signature_absent_from_the_server(attacked: Device, private_www: Path) -> None:
    (private_www / "20/Manifest.MoM.sig").unlink()
    refused(attacked, 12, message="Manifest.MoM.sig")


def test_mom_signed_by_another_key(attacked: Device, private_www: Path, stream: ck.Stream) -> None:
    mom = (private_www / "20/Manifest.MoM").read_bytes()
    (private_www / "20/Manifest.MoM.sig").write_bytes(ck.sign(stream.other_private, mom))
    refused(attacked, 4, message="no valid signature by a trusted key")


def test_mom_altered_under_a_valid_signature(attacked: Device, private_www: Path) -> None:
    mom = private_www / "20/Manifest.MoM"
    mom.write_bytes(mom.read_bytes().replace(b"test-machine", b"test-machinf"))
    refused(attacked, 4, message="no valid signature by a trusted key")


def test_latest_signed_by_another_key(attacked: Device, private_www: Path, stream: ck.Stream) -> None:
    data = (private_www / LATEST).read_bytes()
    (private_www / f"{LATEST}.sig").write_bytes(ck.sign(stream.other_private, data))
    refused(attacked, 4, message="no valid signature by a trusted key")
    r = attacked.swupd("check-update")
    assert r.rc == 4


def test_a_trusted_second_key_is_accepted(attacked: Device, private_www: Path, stream: ck.Stream) -> None:
    """Control for the tests above: the forged signatures are well formed; trusting the other key
    makes them pass (a key rotation)."""
    for name in (LATEST, "20/Manifest.MoM"):
        data = (private_www / name).read_bytes()
        (private_www / f"{name}.sig").write_bytes(ck.sign(stream.other_private, data))
    r = ck.run("update", *attacked.opts()[:-6], "--key", stream.key, "--key", stream.other_key, "--format", "1")
    assert r.rc == 0, r.err


# -- hashes -------------------------------------------------------------------------------------


def drop_manifest_deltas(www: Path, version: int, bundle: str) -> None:
    """Without its deltas the device fetches a bundle's manifest whole (a bad delta only sends
    it there too: tests/client/test_swupd_manifest_deltas.py)."""
    for p in (www / f"{version}/manifests").glob(f"from-*/Manifest.{bundle}.delta"):
        p.unlink()


def serve_manifest(www: Path, version: int, bundle: str, data: bytes, compressed: bytes | None = None) -> None:
    """Replace a bundle manifest in every form a server offers, as an attacker would."""
    drop_manifest_deltas(www, version, bundle)
    (www / f"{version}/Manifest.{bundle}").write_bytes(data)
    zst = www / f"{version}/manifests/Manifest.{bundle}.zst"
    zst.write_bytes(zstandard.ZstdCompressor().compress(data) if compressed is None else compressed)


def test_bundle_manifest_altered(attacked: Device, private_www: Path) -> None:
    data = (private_www / "20/Manifest.os-core").read_bytes()
    i = data.index(b"/usr/bin/ls") - 10  # inside the hash of that entry: same size, other bytes
    serve_manifest(private_www, 20, "os-core", data[:i] + (b"0" if data[i : i + 1] != b"0" else b"1") + data[i + 1 :])
    refused(attacked, 5, message="Manifest.os-core")


def test_bundle_manifest_grown(attacked: Device, private_www: Path) -> None:
    data = (private_www / "20/Manifest.app").read_bytes()
    serve_manifest(private_www, 20, "app", data + b"F...\t" + b"1" * 64 + b"\t20\t1\t/opt/app/extra\n")
    refused(attacked, 6, message="Manifest.app")


def test_compressed_manifest_altered_is_not_replaced_by_the_plain_one(attacked: Device, private_www: Path) -> None:
    """Only a missing compressed manifest sends the device to the plain one; a bad one is an
    attack and fails the update."""
    data = (private_www / "20/Manifest.os-core").read_bytes()
    drop_manifest_deltas(private_www, 20, "os-core")
    (private_www / "20/manifests/Manifest.os-core.zst").write_bytes(
        zstandard.ZstdCompressor().compress(data.replace(b"/usr/bin/ls", b"/usr/bin/LS"))
    )
    refused(attacked, 5, message="Manifest.os-core")


def test_compressed_manifest_expanding_past_its_signed_size(attacked: Device, private_www: Path) -> None:
    data = (private_www / "20/Manifest.os-core").read_bytes()
    bomb = zstandard.ZstdCompressor(level=19).compress(data + b"\0" * (64 << 20))
    drop_manifest_deltas(private_www, 20, "os-core")
    (private_www / "20/manifests/Manifest.os-core.zst").write_bytes(bomb)
    refused(attacked, 6, message="Manifest.os-core")


def test_server_without_compressed_manifests(attacked: Device, private_www: Path) -> None:
    """A mirror made before compressed manifests existed still serves updates."""
    for p in private_www.glob("*/manifests"):
        shutil.rmtree(p)
    r = attacked.swupd("update")
    assert r.rc == 0, r.err
    assert attacked.version() == 20


def suid_tool(stream: ck.Stream) -> ck.Entry:
    return ck.entries(stream.www, 20, {"os-core"})["/usr/bin/suid-tool"]


def test_fullfile_with_other_content(attacked: Device, private_www: Path, stream: ck.Stream) -> None:
    e = suid_tool(stream)
    drop_packs(private_www)
    evil = b"#!/bin/sh\nrm -rf /\n"[: e.size].ljust(e.size, b"\n")
    (private_www / f"20/files/{e.hash}.tar").write_bytes(ck.fullfile(e.hash, evil, mode=0o4755))
    line = refused(attacked, 5, message=f"{e.hash}.tar")
    assert "does not hash" in line
    assert not any(Path(attacked.state, "objects").glob(f"{e.hash}*"))


def test_fullfile_corrupted_in_transit(attacked: Device, private_www: Path, private_server: FaultServer) -> None:
    stream_e = ck.entries(str(private_www), 20, {"os-core"})["/usr/bin/suid-tool"]
    drop_packs(private_www)
    private_server.corrupt(path=f"/20/files/{stream_e.hash}.tar")
    refused(attacked, 3, message="fullfile for /usr/bin/suid-tool")
    # Once the network is sound again the update succeeds: nothing bad was cached.
    private_server.clear_faults()
    r = attacked.swupd("update")
    assert r.rc == 0, r.err


# -- rollback, expiry, compatibility ------------------------------------------------------------


def serve_latest(www: Path, pointer: tuple[bytes, bytes]) -> None:
    (www / LATEST).write_bytes(pointer[0])
    (www / f"{LATEST}.sig").write_bytes(pointer[1])


def test_rollback_to_an_older_latest_of_the_same_version(
    attacked: Device, private_www: Path, stream: ck.Stream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the device runs 20 and has checked a re-signed pointer to 20, the pointer 20 had
    before the re-signing is a replay."""
    assert attacked.swupd("update").rc == 0
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(int(time.time()) + 100))
    ck.server_cli("refresh-latest", "--www", str(private_www), "--signing-key", stream.private)
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    r = attacked.swupd("check-update")
    assert r.rc == 1, r.err
    serve_latest(private_www, stream.latest_of[20])
    r = attacked.swupd("check-update")
    assert r.rc == 7 and "older than one already trusted" in r.error_line(), r.err
    r = attacked.swupd("update")
    assert r.rc == 7, r.err


def test_rollback_after_an_update(attacked: Device, private_www: Path, stream: ck.Stream) -> None:
    assert attacked.swupd("update").rc == 0
    serve_latest(private_www, stream.latest_of[10])
    snap = attacked.snapshot()
    r = attacked.swupd("update")
    assert r.rc == 7 and "below version 20" in r.error_line()
    assert ck.diff_snapshots(snap, attacked.snapshot()) == ""


def test_update_to_an_older_version(attacked: Device) -> None:
    assert attacked.swupd("update").rc == 0
    snap = attacked.snapshot()
    r = attacked.swupd("update", "--version", "10")
    assert r.rc == 7 and "older than the installed version 20" in r.error_line()
    assert ck.diff_snapshots(snap, attacked.snapshot()) == ""


def test_update_to_an_unpublished_version(attacked: Device) -> None:
    refused(attacked, 2, "--version", "25", message="not published")


@pytest.fixture
def old_device(v10_all: Device, clone_device, stream: ck.Stream, tmp_path: Path) -> Device:
    """Version 10 installed from `old_www`, whose builds are 30 and 20 days old (still valid)."""
    d = tmp_path / "old"
    d.mkdir()
    dev = Device(str(d / "root"), str(d / "state"), Path(stream.old_www).as_uri(), stream)
    r = ck.run("os-install", dev.root, "--version", "10", "--bundles", "app", *dev.opts()[2:])
    assert r.rc == 0, r.err
    return dev


def refreshed_old_www(stream: ck.Stream, tmp_path: Path, days_ago: int, expiry_days: int) -> Path:
    """A copy of old_www whose `latest` was re-signed `days_ago` days ago, valid `expiry_days`."""
    # A pointer the release key really signed back then, as a replaying server would serve it.
    from swupd.format import latest, signing

    www = Path(ck.copy_www(stream.old_www, str(tmp_path / f"refreshed-{days_ago}")))
    pointer = www / "version/format1/latest"
    signed_at = int(time.time()) - days_ago * DAY
    old = latest.loads(pointer.read_bytes())
    record = latest.Latest(old.version, 1, signed_at, signed_at + expiry_days * DAY, old.stream)
    pointer.write_bytes(record.dumps())
    (www / "version/format1/latest.sig").write_bytes(
        signing.sign(record.dumps(), [signing.load_private(stream.private)])
    )
    return www


def test_expired_latest(old_device: Device, stream: ck.Stream, tmp_path: Path) -> None:
    assert old_device.swupd("check-update").rc == 0  # control: the stream as built is valid
    www = refreshed_old_www(stream, tmp_path, days_ago=10, expiry_days=1)
    old_device.url = www.as_uri()
    line = refused(old_device, 8, message="expired")
    assert "version 20" in line
    r = old_device.swupd("check-update")
    assert r.rc == 8


@pytest.fixture
def device_clock_1970(monkeypatch: pytest.MonkeyPatch) -> None:
    """The device's clock reads 1970 (a board without a real-time clock, after a power cut)."""
    fake = types.SimpleNamespace(time=lambda: 0.0, strftime=time.strftime, gmtime=time.gmtime)
    monkeypatch.setattr(trusted, "time", fake)


def test_clock_rule_trust_floor_expires_what_the_device_clock_cannot(
    stream: ck.Stream, tmp_path: Path, device_clock_1970: None
) -> None:
    """A frozen or replaying server offers a pointer signed 25 days ago that expired 24 days ago.
    By the device's clock (1970) it is valid. The device's state directory knows a pointer
    signed 20 days ago, so the client's clock may not be earlier than that: it is expired."""
    stale = refreshed_old_www(stream, tmp_path, days_ago=25, expiry_days=1)
    opts = ["--url", stale.as_uri(), "--key", stream.key, "--format", "1"]
    # Control: with no trust record, the 1970 clock alone accepts the stale pointer.
    fresh = tmp_path / "fresh"
    r = ck.run("os-install", str(fresh / "root"), "--statedir", str(fresh / "state"), *opts)
    assert r.rc == 0, r.err
    # A state directory that has seen the 20-day-old pointer of old_www.
    state = tmp_path / "seen"
    r = ck.run(
        "os-install", str(tmp_path / "seen-root"), "--statedir", str(state), "--url", Path(stream.old_www).as_uri(),
        "--key", stream.key, "--format", "1",
    )  # fmt: skip
    assert r.rc == 0, r.err
    floor = json.loads((state / "trust.json").read_text())["latest_timestamp"]
    assert abs(floor - (time.time() - 20 * DAY)) < DAY
    root = tmp_path / "root"
    r = ck.run("os-install", str(root), "--statedir", str(state), *opts)
    assert r.rc == 8 and "expired" in r.error_line(), (r.rc, r.err)
    assert not root.exists() or not any(root.iterdir())
    # An update on that device refuses the stale pointer too (the rollback rule comes first).
    dev = Device(str(tmp_path / "seen-root"), str(state), stale.as_uri(), stream)
    snap = dev.snapshot()
    r = dev.swupd("update")
    assert r.rc in (7, 8), (r.rc, r.err)
    assert ck.diff_snapshots(snap, dev.snapshot()) == ""


def test_wrong_compat_id(attacked: Device) -> None:
    snap = attacked.snapshot()
    r = attacked.swupd("update", compat="other-machine")
    assert r.rc == 9 and "other-machine" in r.error_line(), r.err
    assert ck.diff_snapshots(snap, attacked.snapshot()) == ""
    r = attacked.swupd("verify", compat="other-machine")  # the cached MoM is checked too
    assert r.rc == 9
    r = attacked.swupd("update", compat="")  # none configured: the one it was installed with holds
    assert r.rc == 0, r.err
