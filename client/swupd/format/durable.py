"""Making what was written durable, for both sides: the device before its journal, the build
side before a version becomes visible."""

from __future__ import annotations

import os


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
