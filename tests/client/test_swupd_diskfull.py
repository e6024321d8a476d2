"""A real full disk: the device on a small tmpfs that cannot hold the update."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import clientkit as ck
import pytest
from clientkit import Device
from support.environment import unavailable
from support.httpserver import FaultServer


def used(mount: Path) -> int:
    st = os.statvfs(mount)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str, str], Path]]:
    """`tmpfs(name, size)` mounts a tmpfs at tmp_path/name; `resize(path, bytes)` via remount."""
    mounts: list[Path] = []

    def mount(name: str, size: str) -> Path:
        where = tmp_path / name
        where.mkdir()
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
                           capture_output=True, text=True, check=False)  # fmt: skip
        if p.returncode != 0:
            unavailable(f"cannot mount a tmpfs: {p.stderr.strip() or p.returncode}")
        mounts.append(where)
        return where

    yield mount
    for where in reversed(mounts):
        subprocess.run(["umount", "-l", str(where)], check=False)


def resize(where: Path, size: int) -> None:
    size = (size + 4095) // 4096 * 4096
    subprocess.run(["mount", "-o", f"remount,size={size}", str(where)], check=True)


def test_update_that_does_not_fit(tmpfs, v10_all: Device, stream: ck.Stream, content: FaultServer) -> None:
    """ROOT and the state directory share a small file system: the update runs out of space
    before its commit point, so the live tree is untouched; with room, it completes."""
    mnt = tmpfs("disk", "64m")
    dev = Device(ck.clone(v10_all.root, str(mnt / "root")), ck.clone(v10_all.state, str(mnt / "state")),
                 content.url(), stream)  # fmt: skip
    before, snap = dev.tree(), dev.snapshot()
    resize(mnt, used(mnt) + 256 * 1024)
    r = dev.swupd_process("update")
    assert r.rc == 13, (r.rc, r.out, r.err)
    assert "no space left" in r.error_line()
    assert ck.diff_snapshots(snap, dev.snapshot()) == "", "the live tree changed"
    assert not Path(dev.state, "journal").exists()
    # The failed attempt leaves nothing behind that keeps the space taken.
    assert not [p for p in Path(dev.state, "stage").rglob("*") if p.is_file()]
    resize(mnt, 64 << 20)
    r = dev.swupd_process("update")
    assert r.rc == 0, r.err
    ck.assert_tree(dev.root, stream.expected(20, ck.ALL_BUNDLES, old=before))


def test_update_that_does_not_fit_on_the_root_file_system(
    tmpfs, v10_all: Device, stream: ck.Stream, content: FaultServer, tmp_path: Path
) -> None:
    mnt = tmpfs("rootfs", "64m")
    dev = Device(ck.clone(v10_all.root, str(mnt / "root")), ck.clone(v10_all.state, str(tmp_path / "state")),
                 content.url(), stream)  # fmt: skip
    snap = dev.snapshot()
    resize(mnt, used(mnt) + 256 * 1024)
    r = dev.swupd_process("update")
    assert r.rc == 13, (r.rc, r.out, r.err)
    assert "Traceback" not in r.err
    assert not Path(dev.state, "journal").exists(), "the update failed after its commit point"
    assert ck.diff_snapshots(snap, dev.snapshot()) == "", "the live tree changed"


@pytest.mark.parametrize("small", ["state", "root"])
def test_an_update_that_cannot_fit_is_refused_before_downloading(
    tmpfs, v10_all: Device, stream: ck.Stream, content: FaultServer, tmp_path: Path, small: str
) -> None:
    """The state directory (downloads, objects) or the root file system (copies of the new
    files, the state directory being elsewhere) lacks room: exit 13 with the need and what is
    free, after the signed metadata and before any pack or fullfile is asked for."""
    mnt = tmpfs("small", "64m")
    where = {"state": (tmp_path / "root", mnt / "state"), "root": (mnt / "root", tmp_path / "state")}[small]
    dev = Device(ck.clone(v10_all.root, str(where[0])), ck.clone(v10_all.state, str(where[1])), content.url(), stream)
    snap = dev.snapshot()
    resize(mnt, used(mnt) + 1536 * 1024)  # room for the manifests, not for the content
    r = dev.swupd_process("update")
    assert r.rc == 13, (r.rc, r.out, r.err)
    fetched = [e.path for e in content.log if "/pack-" in e.path or "/files/" in e.path]
    assert fetched == [], fetched
    line = r.error_line()
    assert re.search(rf"no space left for the update on the file system of {where[1 if small == 'state' else 0]}.*"
                     r": it needs \d+ bytes .*, \d+ are free", line), line  # fmt: skip
    assert ck.diff_snapshots(snap, dev.snapshot()) == ""
    assert content.requests("/20/Manifest.MoM"), "refused before the metadata said what the update needs"
    resize(mnt, 64 << 20)
    r = dev.swupd_process("update")
    assert r.rc == 0, r.err
