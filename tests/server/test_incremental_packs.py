"""Incremental packs: a build copies the frames of the previous version's pack from the same
source that are still (mostly) wanted, compresses only the rest, and the result still updates
a device."""

from __future__ import annotations

import os
import random
import shutil

import pytest
import reader
import zstandard
from buildutil import create
from support import oracle
from support.trees import write_file
from swupd.cli import main as swupd_main
from swupd_server import cachefile, segments

BUNDLES = """\
[bundle.data]
paths = ["/usr/share/data/**"]
"""
FILES = 48


@pytest.fixture
def small_frames(monkeypatch):
    """Frames of 64 KiB, so a tree of a few MiB makes packs of many frames."""
    monkeypatch.setattr(segments, "MAX_SEGMENT", 64 * 1024)


def make_tree(root: str, changed: dict[int, int]) -> str:
    """os-core plus a `data` bundle of FILES incompressible 16 KiB files (each change makes a
    pack member of about its size); `changed` maps a file's number to the generation of its
    content."""
    for i in range(FILES):
        rng = random.Random(i * 1000 + changed.get(i, 0))
        write_file(root, f"usr/share/data/f{i:02}.bin", rng.randbytes(16 * 1024))
        write_file(root, f"usr/lib/core/c{i:02}.bin", random.Random(-i - 1).randbytes(4 * 1024))
    write_file(root, "etc/hostname", b"box\n")
    return root


def frame_bytes(path: str) -> list[bytes]:
    with open(path, "rb") as f:
        blob = f.read()
    return [blob[fr.offset : fr.offset + fr.length] for fr in segments.frames_of(path)]


@pytest.fixture
def stream(tmp_path, keys, small_frames):
    bundles = tmp_path / "bundles.toml"
    bundles.write_text(BUNDLES)
    www = tmp_path / "www"
    state: dict[int, int] = {}

    def build(version: int, change: list[int]) -> str:
        for i in change:
            state[i] = state.get(i, 0) + 1
        root = tmp_path / f"rootfs-{version}"
        shutil.rmtree(root, ignore_errors=True)
        make_tree(str(root), state)
        sources = ["--delta-versions", "10"] if version > 10 else []
        create(www, root, version, keys.private, bundles, "--jobs", "1", *sources)
        return str(root)

    return www, build


def installed(www, keys, version: int, dest) -> str:
    w = reader.Www(str(www), keys.raw)
    os.makedirs(dest)
    for name in sorted(w.bundles(version)):
        reader.install_bundle(w, version, name, str(dest))
    return str(dest)


def test_a_rebuild_copies_all_but_the_changed_frame(stream, keys, tmp_path):
    """Version 20 changes every file, 30 one more: the pack from 10 of version 30 copies every
    frame of version 20's but the one that held the file changed again."""
    www, build = stream
    build(10, [])
    build(20, list(range(FILES)))
    root30 = build(30, [7])
    old = frame_bytes(str(www / "20" / "pack-data-from-10.tar"))
    new = frame_bytes(str(www / "30" / "pack-data-from-10.tar"))
    assert len(old) >= 10
    # Every frame but the one that held file 7 is copied byte for byte, in order; what that
    # frame still had to offer and file 7's new content make one new frame at the end.
    kept = [fr for fr in old if fr in new]
    assert len(kept) == len(old) - 1
    assert new == [*kept, new[-1]]
    # What the build remembered of the new pack is what reading it finds.
    pack = str(www / "30" / "pack-data-from-10.tar")
    record = cachefile.load(f"{www}.cache/packframes/pack-data-from-10.tar.cache")
    st = os.stat(pack)
    assert (record["pack"], record["stamp"]) == ("30/pack-data-from-10.tar", f"{st.st_size}:{st.st_mtime_ns}")
    remembered = [segments.Frame(**fr) for fr in record["frames"]]
    assert remembered == segments.frames_of(pack) and len(remembered) == len(new)
    # The independent reader updates a device of 10 from the pack alone (bounded waste).
    base = installed(www, keys, 10, tmp_path / "v10")
    work = str(tmp_path / "device")
    oracle.copy_tree(base, work)
    used = reader.apply_delta_pack(reader.Www(str(www), keys.raw), "data", 10, 30, base, work)
    assert used["staged"] + used["delta"] == FILES, used
    got, want = reader.tree(work), reader.tree(root30)
    for path in want:
        if path.startswith(b"/usr/share/data/"):
            assert got[path] == want[path], path


def test_waste_stays_bounded_over_many_rebuilds(stream, keys, tmp_path):
    """Changing a third of the files at once leaves frames mostly unwanted: those are packed
    anew, not copied, and every pack still updates a device of 10 with no member to spare."""
    www, build = stream
    build(10, [])
    for version, change in ((20, list(range(FILES))), (30, [1]), (40, list(range(0, FILES, 3))), (50, [1, 2])):
        build(version, change)
    www_r = reader.Www(str(www), keys.raw)
    base = installed(www, keys, 10, tmp_path / "v10")
    for version in (20, 30, 40, 50):
        work = str(tmp_path / f"device-{version}")
        oracle.copy_tree(base, work)
        reader.apply_delta_pack(www_r, "data", 10, version, base, work)
    copied_40 = set(frame_bytes(str(www / "40" / "pack-data-from-10.tar"))) & set(
        frame_bytes(str(www / "30" / "pack-data-from-10.tar"))
    )
    assert len(copied_40) < len(frame_bytes(str(www / "30" / "pack-data-from-10.tar"))) - 3


def test_device_installs_and_updates_from_incremental_packs(stream, keys, tmp_path):
    www, build = stream
    build(10, [])
    build(20, [3, 30])
    build(30, [3])
    root30 = build(40, [5])
    url = f"file://{www}"
    common = ["--url", url, "--key", keys.public, "--format", "1"]
    device = tmp_path / "device"
    assert swupd_main(["os-install", *common, "--version", "20", "--bundles", "data", "--quiet", str(device)]) == 0
    assert swupd_main(["update", "--path", str(device), *common, "--quiet"]) == 0
    assert swupd_main(["verify", "--path", str(device), *common, "--quiet"]) == 0
    want = reader.tree(root30)
    got = reader.tree(str(device))
    for path, obj in want.items():
        if path.startswith(b"/usr/share/data/") or path.startswith(b"/usr/lib/core/"):
            assert got[path] == obj, path


def test_packs_not_in_frames_are_not_reused(tmp_path):
    """A pack compressed as one frame (or not a pack at all) offers nothing to copy."""
    whole = tmp_path / "whole.tar"
    whole.write_bytes(zstandard.ZstdCompressor().compress(b"\0" * 10240))
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"not zstd at all" * 100)
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(zstandard.ZstdCompressor().compress(os.urandom(100_000))[:5000])
    for p in (whole, garbage, truncated, tmp_path / "missing.tar"):
        assert segments.frames_of(str(p)) == []
