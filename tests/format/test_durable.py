"""Durable files (swupd.format.durable) on real file systems: a replaced file is either the old
or the new content whatever fails, no temporary file outlives a failure, and a full disk or a
reached quota is the one disk-full error."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from swupd.format import durable
from swupd.format.errors import DiskFullError, TreeIOError

OLD, NEW = b"old content\n", b"new content\n"


def entries(d: Path) -> list[str]:
    return sorted(os.listdir(d))



@pytest.mark.parametrize("sync", [True, False])
def test_replaces_the_file_and_leaves_nothing_else(tmp_path: Path, sync: bool) -> None:
    target = tmp_path / "f"
    durable.write_atomic(str(target), OLD, sync=sync)
    assert target.read_bytes() == OLD
    durable.write_atomic(str(target), NEW, sync=sync)
    assert target.read_bytes() == NEW and entries(tmp_path) == ["f"]


def test_the_file_gets_the_mode_asked_for_less_the_umask(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        durable.write_atomic(str(tmp_path / "a"), NEW)
        with durable.atomic_file(str(tmp_path / "b"), mode=0o600) as f:
            f.write(NEW)
    finally:
        os.umask(umask)
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("existed", [True, False])
def test_a_failure_mid_write_keeps_the_old_file_and_drops_the_temporary(tmp_path: Path, existed: bool) -> None:
    target = tmp_path / "f"
    if existed:
        target.write_bytes(OLD)
    with pytest.raises(ValueError, match="checked and refused"):
        with durable.atomic_file(str(target), tmp=str(tmp_path / ".f.part")) as f:
            f.write(NEW * 100_000)
            f.flush()
            assert (tmp_path / ".f.part").stat().st_size == len(NEW) * 100_000
            raise ValueError("checked and refused")
    assert (target.read_bytes() == OLD) if existed else not target.exists()
    assert entries(tmp_path) == (["f"] if existed else [])


def test_a_failed_rename_drops_the_temporary(tmp_path: Path) -> None:
    target = tmp_path / "d"
    target.mkdir()
    (target / "x").write_bytes(OLD)  # a non-empty directory cannot be replaced by a file
    with pytest.raises(IsADirectoryError):
        durable.write_atomic(str(target), NEW)
    assert entries(tmp_path) == ["d"] and (target / "x").read_bytes() == OLD


def test_a_writer_killed_mid_write_leaves_the_old_file(tmp_path: Path) -> None:
    """SIGKILL leaves no chance to clean up: the target is still the old content, and the
    temporary it left is replaced, not written through, by the next write."""
    target = tmp_path / "f"
    target.write_bytes(OLD)
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from swupd.format import durable\n"
            "with durable.atomic_file(sys.argv[1]) as f:\n"
            "    f.write(b'half of it'); f.flush()\n"
            "    print('written', flush=True); time.sleep(60)\n",
            str(target),
        ],
        stdout=subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == b"written\n"
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
        child.stdout.close()  # type: ignore[union-attr]
    assert target.read_bytes() == OLD
    assert (tmp_path / "f.tmp").read_bytes() == b"half of it"
    durable.write_atomic(str(target), NEW)
    assert target.read_bytes() == NEW and entries(tmp_path) == ["f"]


def test_a_temporary_left_as_a_link_is_not_written_through(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(OLD)
    d = tmp_path / "d"
    d.mkdir()
    os.symlink(victim, d / "f.tmp")
    os.link(victim, d / "g.tmp")
    durable.write_atomic(str(d / "f"), NEW)
    durable.write_atomic(str(d / "g"), NEW)
    assert victim.read_bytes() == OLD
    assert (d / "f").read_bytes() == NEW and (d / "g").read_bytes() == NEW and entries(d) == ["f", "g"]


def test_a_full_disk_keeps_the_old_file_and_maps_to_disk_full(small_fs: Path) -> None:
    target = small_fs / "f"
    durable.write_atomic(str(target), OLD)
    with pytest.raises(OSError) as raised:
        durable.write_atomic(str(target), NEW * 100_000)
    assert raised.value.errno == errno.ENOSPC and durable.is_disk_full(raised.value)
    assert target.read_bytes() == OLD and entries(small_fs) == ["f"]
    mapped = durable.os_error(raised.value, f"no space left writing {target}", "not this one")
    assert type(mapped) is DiskFullError and mapped.exit_code == 13
    assert str(mapped) == f"no space left writing {target}"


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_no_space_and_quota_exceeded_are_the_one_disk_full_error(code: int) -> None:
    e = OSError(code, os.strerror(code))
    assert durable.is_disk_full(e)
    mapped = durable.os_error(e, "no room", "failed")
    assert type(mapped) is DiskFullError and mapped.exit_code == 13 and str(mapped) == "no room"


@pytest.mark.parametrize("code", [errno.EIO, errno.EACCES, errno.EROFS])
def test_other_errors_are_tree_io_errors(code: int) -> None:
    e = OSError(code, os.strerror(code))
    assert not durable.is_disk_full(e)
    mapped = durable.os_error(e, "no room", f"failed: {e.strerror}")
    assert type(mapped) is TreeIOError and mapped.exit_code == 15 and str(mapped) == f"failed: {e.strerror}"
    assert not durable.is_disk_full(ValueError("not an OSError"))


def test_directory_sync_needs_a_directory(tmp_path: Path) -> None:
    durable.fsync_dir(str(tmp_path))
    (tmp_path / "f").write_bytes(OLD)
    with pytest.raises(NotADirectoryError):
        durable.fsync_dir(str(tmp_path / "f"))
