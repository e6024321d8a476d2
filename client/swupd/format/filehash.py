"""The swupd file hash.

Identical to Clear Linux swupd's: an HMAC-SHA256 over the content, keyed with the hex digest of
an HMAC-SHA256 over the file's xattrs keyed with a 40-byte stat block (mode, uid, gid, rdev,
size as little-endian u64). Directories hash the word `DIRECTORY` with size 0; symlinks hash
their target with mode 0. Because mode and ownership are in the key, a permission change is an
update, and `verify` catches it.

Unlike swupd (which leaves xattrs out unless built with an option), the hash covers the xattrs
that define behaviour (file capabilities, ACLs, IMA/EVM, user and trusted attributes); only
`security.selinux` is left out, since the device's policy assigns it. They enter the hash as
length-prefixed records, not as swupd's NUL-terminated names and values, which let different
sets of xattrs hash alike.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
import struct
from typing import BinaryIO

from . import xattrs as xattr_records

ZERO_HASH = "0" * 64
_CHUNK = 1024 * 1024
# Assigned on each device by its security policy: neither hashed nor carried, and a device
# never removes it from an object it writes.
EXCLUDED_XATTRS = frozenset({"security.selinux"})
# A bundle manifest is hashed (in the MoM) as a root-owned 0644 regular file, as swupd does.
MANIFEST_MODE = 0o100644


def stat_block(mode: int, uid: int, gid: int, size: int) -> bytes:
    """The 40-byte stat block that keys the hash, normalised by file type."""
    if stat.S_ISDIR(mode):
        size = 0
    elif stat.S_ISLNK(mode):
        mode = 0
    return struct.pack("<QQQQQ", mode, uid, gid, 0, size)


def xattr_blob(xattrs: dict[str, bytes]) -> bytes:
    """The records of `xattrs.py`: lengths before names and values, so that no two sets of
    xattrs give the same blob; empty for none, as swupd's, so objects without xattrs hash as
    swupd hashes them."""
    return xattr_records.dump(xattrs) if xattrs else b""


def _key(mode: int, uid: int, gid: int, size: int, xattrs: dict[str, bytes] | None) -> bytes:
    # hmac.digest is OpenSSL's one-shot HMAC: no HMAC object per file (a device hashes
    # thousands of small files in an update and every file in a verify).
    block = stat_block(mode, uid, gid, size)
    return hmac.digest(block, xattr_blob(xattrs) if xattrs else b"", "sha256").hex().encode()


def hash_bytes(data: bytes, mode: int, uid: int = 0, gid: int = 0, xattrs: dict[str, bytes] | None = None) -> str:
    """Hash of a regular file (or symlink target) given as bytes."""
    return hmac.digest(_key(mode, uid, gid, len(data), xattrs), data, "sha256").hex()


def hash_stream(
    fobj: BinaryIO,
    size: int,
    mode: int,
    uid: int = 0,
    gid: int = 0,
    xattrs: dict[str, bytes] | None = None,
) -> str:
    """Hash of a regular file read in chunks, so memory stays flat for any size."""
    key = _key(mode, uid, gid, size, xattrs)
    if size < _CHUNK:  # most files: one read (one more byte than expected shows growth), one call
        data = fobj.read(size + 1)
        while len(data) < size and (more := fobj.read(size + 1 - len(data))):
            data += more
        if len(data) != size:
            raise OSError(f"file changed size while hashing ({len(data)} != {size} bytes)")
        return hmac.digest(key, data, "sha256").hex()
    mac = hmac.new(key, digestmod=hashlib.sha256)
    read = 0
    while chunk := fobj.read(_CHUNK):
        mac.update(chunk)
        read += len(chunk)
    if read != size:
        raise OSError(f"file changed size while hashing ({read} != {size} bytes)")
    return mac.hexdigest()


def hash_manifest(data: bytes) -> str:
    """Hash of a bundle manifest's bytes, as its MoM entry records it."""
    return hash_bytes(data, MANIFEST_MODE)


def hash_directory(mode: int, uid: int = 0, gid: int = 0, xattrs: dict[str, bytes] | None = None) -> str:
    """Hash of a directory: independent of its name and content."""
    return hmac.digest(_key(mode, uid, gid, 0, xattrs), b"DIRECTORY", "sha256").hex()


def hash_symlink(target: str, uid: int = 0, gid: int = 0) -> str:
    """Hash of a symlink: its target bytes, with mode forced to 0."""
    raw = os.fsencode(target)
    return hmac.digest(_key(stat.S_IFLNK, uid, gid, len(raw), None), raw, "sha256").hex()


def read_xattrs(path: str | bytes) -> dict[str, bytes]:
    """The hashed xattrs of `path` (not following symlinks); empty where unsupported."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out = {}
    for name in names:
        if name in EXCLUDED_XATTRS:
            continue
        try:
            out[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
    return out


def fd_xattrs(fd: int) -> dict[str, bytes]:
    """The hashed xattrs of an open file; an error reading them is the caller's to report."""
    return {n: os.getxattr(fd, n) for n in os.listxattr(fd) if n not in EXCLUDED_XATTRS}


def hash_path(path: str | bytes) -> str:
    """Hash of whatever is at `path` now; the zero hash when nothing is there."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return ZERO_HASH
    if stat.S_ISLNK(st.st_mode):
        return hash_symlink(os.fsdecode(os.readlink(path)), st.st_uid, st.st_gid)
    xattrs = read_xattrs(path)
    if stat.S_ISDIR(st.st_mode):
        return hash_directory(st.st_mode, st.st_uid, st.st_gid, xattrs)
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"cannot hash special file {os.fsdecode(path)!r}")
    with open(path, "rb") as f:
        return hash_stream(f, st.st_size, st.st_mode, st.st_uid, st.st_gid, xattrs)
