"""Making what was written durable, for both sides: the device before its journal, the build
side before a version becomes visible.

A file is replaced by writing a temporary file in the same directory and renaming it over the
target, so a crash leaves either the old or the new content, never a mix. Whether the file and
its directory are fsynced is the caller's choice: content that is verified whenever it is used
(objects against their hash, manifests against a signature), or that only saves time (caches),
needs no fsync of its own; a torn copy is noticed and made again.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from typing import BinaryIO

from .errors import DiskFullError, SwupdError, TreeIOError

# A quota reached is, for whoever runs the command, the same as a full disk.
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(e: BaseException) -> bool:
    """True if `e` says the file system, or the user's quota on it, has no room left."""
    return isinstance(e, OSError) and e.errno in _FULL


def os_error(e: OSError, full: str, failed: str) -> SwupdError:
    """The project's error for a failed system call: `DiskFullError(full)` (exit 13) when there
    was no room, `TreeIOError(failed)` (exit 15) otherwise."""
    return DiskFullError(full) if is_disk_full(e) else TreeIOError(failed)


def fsync_dir(path: str) -> None:
    """fsync a directory: what makes a rename or a new name in it survive a power cut."""
    fd = os.open(path or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace(tmp: str, path: str, *, sync: bool = True) -> None:
    """Rename `tmp` over `path`, and fsync their directory unless `sync` is false."""
    os.replace(tmp, path)
    if sync:
        fsync_dir(os.path.dirname(os.path.abspath(path)))


def _create(tmp: str, mode: int) -> int:
    """A new file at `tmp`: one left there by a killed run is removed first, never written
    through (it could be a symlink or a hard link to a file elsewhere)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(tmp, flags, mode)
    except FileExistsError:
        os.unlink(tmp)
        return os.open(tmp, flags, mode)


@contextlib.contextmanager
def atomic_file(
    path: str, *, sync: bool = True, sync_dir: bool | None = None, tmp: str | None = None, mode: int = 0o666
) -> Iterator[BinaryIO]:
    """A file to write that replaces `path` when the block ends without an exception.

    The data goes to `tmp` (default `path.tmp`, in the same directory so the rename stays on
    one file system), which is fsynced unless `sync` is false and then renamed over `path`; the
    directory is fsynced unless `sync_dir` (by default `sync`) is false. On any failure, the
    block's own included, the temporary file is removed and `path` is left as it was. System
    errors are raised as they are: the caller knows what it was writing (see `os_error`).
    """
    tmp = tmp if tmp is not None else f"{path}.tmp"
    fd = _create(tmp, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            if sync:
                f.flush()
                os.fsync(f.fileno())
        replace(tmp, path, sync=sync if sync_dir is None else sync_dir)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_atomic(path: str, data: bytes, *, sync: bool = True, sync_dir: bool | None = None) -> None:
    """Replace `path` with `data` as `atomic_file` does."""
    with atomic_file(path, sync=sync, sync_dir=sync_dir) as f:
        f.write(data)


def sync_filesystem(path: str) -> None:
    """Make everything written to the file system holding `path` durable (syncfs(2)); the
    whole system's sync where syncfs is missing."""
    import ctypes

    fd = os.open(path, os.O_RDONLY)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syncfs(fd) != 0:
            os.sync()
    except (OSError, AttributeError):
        os.sync()
    finally:
        os.close(fd)
