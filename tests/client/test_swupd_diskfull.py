"""A real full disk: the device on a small tmpfs that cannot hold the update."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import clientkit as ck
import pytest
from clientkit import Device
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
            pytest.skip(f"cannot mount a tmpfs: {p.stderr.strip() or p.returncode}")
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
