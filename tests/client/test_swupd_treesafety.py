"""The target tree as an adversary or a mess: symlinks planted above paths the update writes,
and post-update hooks that must run once per completed transaction, even across a crash."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import clientkit as ck
import pytest
from clientkit import Device


def plant_link(device: Device, tmp_path: Path) -> tuple[Path, dict]:
    """/usr/share/data replaced by a link to a copy of it outside ROOT."""
    outside = tmp_path / "outside"
    ck.clone(str(Path(device.root, "usr/share/data")), str(outside))
    data = Path(device.root, "usr/share/data")
    os.rename(data, tmp_path / "moved-away")
    data.symlink_to(outside)
    return outside, ck.snapshot(str(outside))


def test_symlinked_directory_never_redirects_writes(device: Device, tmp_path: Path) -> None:
    """The update has files to write below the planted link: it must never follow it."""
    outside, outside_before = plant_link(device, tmp_path)
    r = device.swupd("update")
    assert ck.diff_snapshots(outside_before, ck.snapshot(str(outside))) == "", "wrote through the planted link"
    # The link stands where the manifests list a directory: the update puts the directory back.
    assert r.rc == 0, r.err
    assert not Path(device.root, "usr/share/data").is_symlink()
    for command in ("verify", "repair", "update"):
        r = device.swupd(command)
        assert ck.diff_snapshots(outside_before, ck.snapshot(str(outside))) == "", command
        assert "Traceback" not in r.err


def test_repair_recovers_from_a_planted_link(device: Device, stream: ck.Stream, tmp_path: Path) -> None:
    plant_link(device, tmp_path)
    before = device.tree()
    device.swupd("update")
    r = device.swupd("repair")
    assert r.rc == 0, r.err
    assert not Path(device.root, "usr/share/data").is_symlink()
    ck.assert_tree(device.root, stream.expected(20, ck.ALL_BUNDLES, old=before))


HOOK = """#!/bin/sh
echo "ran for $SWUPD_ROOT" >> "$SWUPD_ROOT/var/lib/hook.log"
"""


def add_hook(dev: Device, name: str = "10-log", body: str = HOOK) -> Path:
    d = Path(dev.root, "etc/swupd/post-update.d")
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_text(body)
    (d / name).chmod(0o755)
    return Path(dev.root, "var/lib/hook.log")


def test_post_update_hooks_run_once(device: Device) -> None:
    log = add_hook(device)
    add_hook(device, "20-fails", "#!/bin/sh\nexit 3\n")
    r = device.swupd("update")
    assert r.rc == 0, r.err
    assert log.read_text() == f"ran for {device.root}\n"
    assert "post-update hook 20-fails failed with status 3" in r.err
    assert device.swupd("update").rc == 0  # up to date: no transaction, no hooks
    assert device.swupd("verify").rc == 0
    assert log.read_text() == f"ran for {device.root}\n"


def test_post_update_hooks_run_after_a_crash(device: Device) -> None:
    log = add_hook(device)
    r = device.swupd_process("update", env=dict(os.environ, SWUPD_FAULT="recorded:kill"))
    assert r.rc == -signal.SIGKILL
    assert not log.exists()
    r = device.swupd_process("info")  # any command finishes the transaction and its hooks
    assert r.rc == 0, r.err
    assert log.read_text() == f"ran for {device.root}\n"
    assert device.swupd("update").rc == 0
    assert log.read_text() == f"ran for {device.root}\n"


@pytest.mark.parametrize("size", [0, 1, 4096, 3 << 20])
def test_reading_a_file_stops_at_its_end_or_the_limit(tmp_path: Path, size: int) -> None:
    """Old files for deltas are read straight from their descriptors: the whole file when it is
    under the limit, exactly `limit` bytes when it is not (which callers take as "too large")."""
    from swupd.apply.tree import read_fd

    data = bytes(range(256)) * (size // 256)
    (tmp_path / "f").write_bytes(data)
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        assert read_fd(fd, size + 1) == data
        os.lseek(fd, 0, os.SEEK_SET)
        assert read_fd(fd, max(size // 2, 1)) == data[: max(size // 2, 1)]
    finally:
        os.close(fd)
    fd = os.open("/proc/self/status", os.O_RDONLY)  # size 0, yet content
    try:
        assert read_fd(fd, 1 << 20).startswith(b"Name:")
    finally:
        os.close(fd)
