"""Freshness and stream identity on the device: pointers ordered by version first, a floor that
rises only with verified versions, and streams signed with one key that are not interchangeable.
Every stream here is built by swupd-server and served by the test HTTP server."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import clientkit as ck
import pytest
from clientkit import DAY, Device
from support.httpserver import FaultServer

LATEST = "version/format1/latest"


def build(monkeypatch: pytest.MonkeyPatch, www: Path, rootfs: str, version: int, stream: ck.Stream, *extra: str,
          epoch: int | None = None) -> None:  # fmt: skip
    """create-update, with SOURCE_DATE_EPOCH = `epoch` when given."""
    if epoch is None:
        monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    else:
        monkeypatch.setenv("SOURCE_DATE_EPOCH", str(epoch))
    ck.build_version(str(www), rootfs, version, stream.private, stream.bundles_toml, *extra)
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)


def install(stream: ck.Stream, url: str, where: Path, *extra: str) -> Device:
    dev = Device(str(where / "root"), str(where / "state"), url, stream)
    r = ck.run("os-install", dev.root, "--statedir", dev.state, "--url", url, "--key", stream.key, "--format", "1",
               *extra)  # fmt: skip
    assert r.rc == 0, r.err
    return dev


def trust(dev: Device) -> dict:
    return json.loads(Path(dev.state, "trust.json").read_text())


def test_reproducible_build_refresh_check_and_next_build(
    stream: ck.Stream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build with SOURCE_DATE_EPOCH, refresh-latest without it, a device check, then the next
    build made the same way: the device updates (the next pointer has a higher version, though
    an older timestamp than the refreshed one)."""
    www = tmp_path / "www"
    epoch = int(time.time()) - 10 * DAY
    build(monkeypatch, www, stream.rootfs[10], 10, stream, epoch=epoch)
    ck.server_cli("refresh-latest", "--www", str(www), "--signing-key", stream.private)
    with FaultServer(www) as srv:
        dev = install(stream, srv.url(), tmp_path / "dev", "--compat", ck.COMPAT)
        r = dev.swupd("check-update")
        assert r.rc == 1, r.err
        build(monkeypatch, www, stream.rootfs[20], 20, stream, epoch=epoch + DAY)
        r = dev.swupd("check-update")
        assert r.rc == 0, r.err
        old = dev.tree()
        r = dev.swupd("update")
        assert r.rc == 0, r.err
    assert dev.version() == 20
    ck.assert_tree(dev.root, stream.expected(20, {"os-core"}, old))


@pytest.fixture
def www30(stream: ck.Stream, tmp_path: Path) -> Path:
    """A copy of the stream with versions 10, 20 and 30 that a test may change."""
    return Path(ck.copy_www(stream.www30, str(tmp_path / "www30")))


def forged_latest(stream: ck.Stream, www: Path, version: int) -> None:
    """A `latest` the release key signed, naming `version`, otherwise as the genuine one
    (docs/format.md, `latest`), signed now and valid for 90 days."""
    now = int(time.time())
    lines = (www / LATEST).read_text().split("\n")
    lines[0] = str(version)
    fields = {"timestamp": now, "expires": now + 90 * DAY}
    lines = [next((f"{k}:\t{v}" for k, v in fields.items() if line.startswith(f"{k}:")), line) for line in lines]
    data = "\n".join(lines).encode()
    (www / LATEST).write_bytes(data)
    (www / f"{LATEST}.sig").write_bytes(ck.sign(stream.private, data))


def test_a_signed_latest_whose_version_fails_does_not_lock_out_the_next(
    v10_all: Device, clone_device, stream: ck.Stream, www30: Path
) -> None:
    """A signed pointer to version 1000 whose MoM is missing, then bad: the device cannot update
    to it, and once the genuine pointer is back it updates to 30."""
    genuine = ((www30 / LATEST).read_bytes(), (www30 / f"{LATEST}.sig").read_bytes())
    with FaultServer(www30) as srv:
        dev = clone_device(v10_all, srv.url())
        before = trust(dev)
        forged_latest(stream, www30, 1000)
        assert dev.swupd("check-update").rc == 0  # it is signed: an update is offered
        r = dev.swupd("update")
        assert r.rc == 12 and "1000/Manifest.MoM" in r.error_line(), r.err
        # A MoM that fails its checks: signed, but of another version.
        (www30 / "1000").mkdir()
        mom = (www30 / "30/Manifest.MoM").read_bytes()
        (www30 / "1000/Manifest.MoM").write_bytes(mom)
        (www30 / "1000/Manifest.MoM.sig").write_bytes(ck.sign(stream.private, mom))
        r = dev.swupd("update")
        assert r.rc == 3 and "says it is version 30" in r.error_line(), r.err
        assert trust(dev) == before
        (www30 / LATEST).write_bytes(genuine[0])
        (www30 / f"{LATEST}.sig").write_bytes(genuine[1])
        r = dev.swupd("update")
        assert r.rc == 0, r.err
    assert dev.version() == 30
    assert trust(dev)["highest_version"] == 30


@pytest.fixture(scope="module")
def stream_b(stream: ck.Stream, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another image's stream, signed with the same key for the same compat id: versions 10 and
    20, its 20 with a setuid shell of its own."""
    d = tmp_path_factory.mktemp("image-b")
    www = d / "www"
    for v in (10, 20):
        rootfs = ck.clone(stream.rootfs[v], str(d / f"rootfs-{v}"))
        ck._write(rootfs, "opt/image-b/README", b"image B\n")
        if v == 20:
            ck._write(rootfs, "usr/bin/b-shell", b"#!/bin/sh\nexec /bin/sh\n", 0o4755)
        ck.build_version(str(www), rootfs, v, stream.private, stream.bundles_toml)
    return www


def test_another_stream_signed_with_the_same_key_is_refused(
    v10_all: Device, clone_device, stream_b: Path, tmp_path: Path, stream: ck.Stream
) -> None:
    """A man in the middle serves image B's stream (its latest, then, behind image A's genuine
    latest, its MoM) to a device of image A."""
    mixed = Path(ck.copy_www(stream.www, str(tmp_path / "mixed")))
    os.rename(mixed / "20", tmp_path / "a-20")
    ck.copy_www(str(stream_b / "20"), str(mixed / "20"))
    for www, commands, message in (
        (stream_b, ("update", "check-update"), "the server's latest pointer (version 20) belongs to stream"),
        (mixed, ("update",), "version 20 belongs to stream"),
    ):
        with FaultServer(www) as srv:
            dev = clone_device(v10_all, srv.url())
            snap = dev.snapshot()
            for command in commands:
                r = dev.swupd(command)
                assert r.rc == 9 and message in r.error_line(), (www, r.rc, r.err)
            assert ck.diff_snapshots(snap, dev.snapshot()) == ""
            assert not Path(dev.root, "usr/bin/b-shell").exists()
    # A device that holds to no stream yet (installed before streams had an identity) takes
    # the pointer's for the run: a MoM of another stream behind it is refused all the same.
    with FaultServer(mixed) as srv:
        dev = clone_device(v10_all, srv.url())
        record = trust(dev)
        del record["stream"]
        Path(dev.state, "trust.json").write_text(json.dumps(record))
        r = dev.swupd("update")
        assert r.rc == 9 and "version 20 belongs to stream" in r.error_line(), r.err
        assert not Path(dev.root, "usr/bin/b-shell").exists()


def test_a_device_without_compat_holds_to_the_one_it_was_installed_with(
    stream: ck.Stream, www30: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """os-install with no compat id configured pins the MoM's; a later version of the same
    stream built for another machine is refused."""
    os.rename(www30 / "30", tmp_path / "old-30")  # the stream as it was at 20
    (www30 / LATEST).write_bytes(stream.latest_of[20][0])
    (www30 / f"{LATEST}.sig").write_bytes(stream.latest_of[20][1])
    with FaultServer(www30) as srv:
        dev = install(stream, srv.url(), tmp_path / "dev", "--version", "10")
        assert trust(dev)["compat"] == ck.COMPAT
        r = ck.run("info", "--json", "--path", dev.root, "--statedir", dev.state)
        info = json.loads(r.out.splitlines()[1])
        assert info["compat"] == ck.COMPAT, r.out
        assert info["stream"] == ck.mom(str(www30), 10).header["stream"], r.out
        build(monkeypatch, www30, stream.rootfs[30], 30, stream, "--change-stream", "--compat", "other-machine")
        snap = dev.snapshot()
        r = dev.swupd("update", compat="")
        assert r.rc == 9 and "other-machine" in r.error_line(), r.err
        assert ck.diff_snapshots(snap, dev.snapshot()) == ""
        assert dev.swupd("update", "--version", "20", compat="").rc == 0
    assert dev.version() == 20


def test_a_device_moves_to_the_next_format(
    v10_all: Device, clone_device, stream: ck.Stream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/format.md, "Moving to a new format": the device reaches the last version of format 1,
    then follows format 2 from there, the installed version's MoM and manifests being of format 1."""
    www = Path(ck.copy_www(stream.www, str(tmp_path / "www")))
    build(monkeypatch, www, stream.rootfs[30], 30, stream, "--format", "2")
    with FaultServer(www) as srv:
        dev = clone_device(v10_all, srv.url())
        assert dev.swupd("update").rc == 0
        assert dev.version() == 20
        old = dev.tree()
        opts = dev.opts()
        opts[opts.index("--format") + 1] = "2"
        r = ck.run("update", *opts)
        assert r.rc == 0, r.err
    assert dev.version() == 30
    ck.assert_tree(dev.root, stream.expected(30, ck.ALL_BUNDLES, old))


def _strip_stream(www: Path, rel: str, stream: ck.Stream) -> None:
    """`rel` as published before streams had an identity: without its `stream:` line, signed."""
    data = (www / rel).read_bytes()
    old = b"".join(line for line in data.splitlines(keepends=True) if not line.startswith(b"stream:\t"))
    assert old != data
    (www / rel).write_bytes(old)
    (www / f"{rel}.sig").write_bytes(ck.sign(stream.private, old))


def test_only_the_installed_version_may_lack_the_stream_identity(
    v10_all: Device, clone_device, stream: ck.Stream, private_www: Path, private_server: FaultServer
) -> None:
    """A device runs a version whose MoM predates stream identities: it still verifies against
    it, but refuses a target without one, and a pointer without one."""
    for v in (10, 20):
        _strip_stream(private_www, f"{v}/Manifest.MoM", stream)
    dev = clone_device(v10_all, private_server.url())
    shutil.rmtree(Path(dev.state, "manifests"))  # the device holds the MoM as published then
    # ... and the trust record an earlier client kept, which names no stream.
    old = trust(dev)
    Path(dev.state, "trust.json").write_text(json.dumps({k: old[k] for k in ("highest_version", "latest_timestamp")}))
    r = dev.swupd("verify")
    assert r.rc == 0, r.err
    snap = dev.snapshot()
    r = dev.swupd("update")
    assert r.rc == 3 and "version 20 names no stream" in r.error_line(), r.err
    _strip_stream(private_www, LATEST, stream)
    for command in ("update", "check-update"):
        r = dev.swupd(command)
        assert r.rc == 3 and "latest of format 1 names no stream" in r.error_line(), r.err
    assert ck.diff_snapshots(snap, dev.snapshot()) == ""


def test_a_configured_stream_is_held_to(device: Device) -> None:
    etc = Path(device.root, "etc/swupd")
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "stream").write_text("image-c\n")
    snap = device.snapshot()
    r = device.swupd("update")
    assert r.rc == 9 and "this device follows 'image-c'" in r.error_line(), r.err
    r = device.swupd("update", "--stream", "bad stream")
    assert r.rc == 2 and "stream identity" in r.error_line(), r.err
    assert ck.diff_snapshots(snap, device.snapshot()) == ""
    (etc / "stream").unlink()
    assert device.swupd("update").rc == 0


# -- a new format reuses nothing of the older one ----------------------------------------------

LONG_TARGET = "a-target-longer-than-ustar-link-field/" * 4 + "same.txt"


def _old_symlink_fullfile(digest: str) -> bytes:
    """The fullfile the previous release wrote for a long-target symlink: a pax tar (the target
    in a `linkpath` record), which devices of this format refuse."""
    import tarfile

    info, _ = ck.member(digest, kind=tarfile.SYMTYPE, mode=0o777, linkname=LONG_TARGET, uid=0, gid=0)
    return ck.zstd(ck.tar_bytes([(info, None)]))


def _replace_pack_member(pack: Path, name: str, data: bytes) -> bool:
    """Replace member `name` of a pack in place, frame by frame (the frames a later build may
    copy stay frames); whether the pack held it."""
    import io
    import tarfile

    import zstandard

    blob, frames, found = pack.read_bytes(), [], False
    while blob:
        obj = zstandard.ZstdDecompressor().decompressobj()
        raw = obj.decompress(blob)
        blob = obj.unused_data
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            members = [(i, tar.extractfile(i).read() if i.isreg() else None) for i in tar]
        if any(i.name == name for i, _ in members):
            found, out = True, b""
            for info, content in members:
                if info.name == name:
                    info.size, content = len(data), data
                out += info.tobuf(tarfile.USTAR_FORMAT, "ascii", "strict")
                if content is not None:
                    out += content + bytes(-len(content) % 512)
            raw = out
        frames.append(zstandard.ZstdCompressor(level=3, write_content_size=True).compress(raw))
    pack.write_bytes(b"".join(frames))
    return found


def _device_reads_everything(www: Path, version: int) -> int:
    """Read every fullfile, and every staged pack member a device of `version` may want, under
    `version` as the device does; how many."""
    import io
    import tarfile

    import zstandard
    from swupd.format import fullfile

    sizes = {e.hash: e.size for e in ck.entries(str(www), version, ck.ALL_BUNDLES).values()}
    read = 0
    for f in sorted((www / str(version) / "files").glob("*.tar")):
        with open(f, "rb") as src:
            fullfile.read(src, f.name[:-4], sizes[f.name[:-4]])
        read += 1
    for pack in sorted((www / str(version)).glob("pack-*.tar")):
        raw = zstandard.ZstdDecompressor().stream_reader(pack.read_bytes(), read_across_frames=True).read()
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            for info in tar:
                digest = info.name[len("staged/") : -len(".tar")]
                if info.isreg() and info.name.startswith("staged/") and digest in sizes:  # others are skipped
                    fullfile.read(tar.extractfile(info), digest, sizes[digest])
                    read += 1
    return read


def test_a_new_format_reuses_no_content_of_the_older(
    stream: ck.Stream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/format.md, "Moving to a new format": format 1 as the previous release published it
    (MoMs and latest without a stream identity, a long-target symlink's fullfile a pax tar, in
    files/ and in the packs), then format 2. No fullfile, pack frame or delta of format 1 is
    reused: a device installs and updates in format 2, and verify finds nothing wrong."""
    rootfs = {}
    for v in (10, 20, 30):
        rootfs[v] = ck.clone(stream.rootfs[v], str(tmp_path / f"rootfs-{v}"))
        os.symlink(LONG_TARGET, os.path.join(rootfs[v], "usr/share/data/long-link"))
    www = tmp_path / "www"
    for v in (10, 20):
        build(monkeypatch, www, rootfs[v], v, stream)
    link = ck.entries(str(www), 20, ck.ALL_BUNDLES)["/usr/share/data/long-link"]
    assert link.version == 10
    old = _old_symlink_fullfile(link.hash)
    (www / "10" / "files" / f"{link.hash}.tar").write_bytes(old)
    packs = [p for v in (10, 20) for p in (www / str(v)).glob("pack-*.tar")]
    assert sum(_replace_pack_member(p, f"staged/{link.hash}.tar", old) for p in packs) >= 1
    for rel in ("10/Manifest.MoM", "20/Manifest.MoM", LATEST):
        _strip_stream(www, rel, stream)

    build(monkeypatch, www, rootfs[20], 30, stream, "--format", "2")
    assert _device_reads_everything(www, 30) > 0
    with FaultServer(www) as srv:
        dev = Device(str(tmp_path / "dev" / "root"), str(tmp_path / "dev" / "state"), srv.url(), stream)
        r = ck.run("os-install", dev.root, "--statedir", dev.state, "--url", srv.url(), "--key", stream.key,
                   "--format", "2", "--compat", ck.COMPAT, "--bundles", ",".join(ck.ALL_BUNDLES[1:]))  # fmt: skip
        assert r.rc == 0, r.err
        assert os.readlink(os.path.join(dev.root, "usr/share/data/long-link")) == LONG_TARGET
        build(monkeypatch, www, rootfs[30], 40, stream, "--format", "2")
        assert _device_reads_everything(www, 40) > 0
        opts = dev.opts()
        opts[opts.index("--format") + 1] = "2"
        r = ck.run("update", *opts)
        assert r.rc == 0, r.err
        assert dev.version() == 40
        r = ck.run("verify", *opts)
        assert r.rc == 0, r.err


def test_a_device_that_installed_a_stream_takes_no_version_without_one(
    v10_all: Device, clone_device, stream: ck.Stream, private_www: Path, private_server: FaultServer,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # fmt: skip
    """The key once signed another stream, before streams had an identity, and that stream has
    a version of the same number as the one the device runs. Once the device has installed its
    version from its own stream, that other MoM (whose format and version would pass for a
    version installed before streams had one) is refused, even with no MoM cached: a repair
    must not turn the device into the other stream."""
    other = tmp_path / "other-www"
    build(monkeypatch, other, stream.rootfs[30], 20, stream)
    _strip_stream(other, "20/Manifest.MoM", stream)
    dev = clone_device(v10_all, private_server.url())
    assert dev.swupd("update").rc == 0
    assert trust(dev)["stream"] == ck.mom(str(private_www), 20).header["stream"]
    assert dev.swupd("clean", "--all").rc == 0
    shutil.rmtree(private_www / "20")
    shutil.copytree(other / "20", private_www / "20")
    snap = dev.snapshot()
    for command in ("repair", "verify"):
        r = dev.swupd(command)
        assert r.rc == 9 and "version 20 names no stream" in r.error_line(), (command, r.err)
    assert ck.diff_snapshots(snap, dev.snapshot()) == ""
