"""Writing test trees: files with given ownership and mode, and whether xattrs can be set."""

from __future__ import annotations

import os


def write_file(
    root: str | bytes, rel: str | bytes, data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0
) -> bytes:
    """Create `root/rel` (any bytes in the name) with this content, owner and mode."""
    path = os.path.join(os.fsencode(root), os.fsencode(rel).lstrip(b"/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.chown(path, uid, gid)
    os.chmod(path, mode)
    return path


def xattrs_supported(directory: str) -> bool:
    """True if the file system under `directory` takes user xattrs."""
    probe = os.path.join(directory, ".xattr-probe")
    with open(probe, "wb"):
        pass
    try:
        os.setxattr(probe, "user.probe", b"1")
        return True
    except OSError:
        return False
    finally:
        os.unlink(probe)
