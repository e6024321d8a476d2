"""The swupd file hash and the xattr records it covers (docs/format.md, "The file hash").

Written from the documented format with hmac and hashlib alone, so that what the tests check
is the bytes against the documentation, not the product's code against itself.
"""

from __future__ import annotations

import hashlib
import hmac
import stat
import struct

ZERO_HASH = "0" * 64
# Set by the system on a labelled machine, not by the content: never hashed, never shipped.
UNHASHED_XATTRS = frozenset({b"security.selinux"})


class FormatViolation(AssertionError):
    """Published bytes that do not follow the documented format."""


def check(condition: bool, message: str) -> None:
    """Raise FormatViolation with `message` unless `condition` holds."""
    if not condition:
        raise FormatViolation(message)


def xattr_records(xattrs: dict[bytes, bytes]) -> bytes:
    """Per xattr, names sorted bytewise: u16 LE name length, u32 LE value length, name, value."""
    return b"".join(struct.pack("<HI", len(n), len(xattrs[n])) + n + xattrs[n] for n in sorted(xattrs))


def parse_xattr_records(blob: bytes, what: str) -> dict[bytes, bytes]:
    """The records of `xattr_records` read back, refusing truncation and unsorted or repeated
    names (`what` names the container in the message)."""
    out: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(blob):
        check(pos + 6 <= len(blob), f"{what}: xattr record truncated")
        nlen, vlen = struct.unpack_from("<HI", blob, pos)
        pos += 6
        check(pos + nlen + vlen <= len(blob), f"{what}: xattr record truncated")
        name = blob[pos : pos + nlen]
        check(bool(name) and (not out or name > max(out)), f"{what}: xattr names empty, repeated or unsorted")
        out[name] = blob[pos + nlen : pos + nlen + vlen]
        pos += nlen + vlen
    return out


def xattr_blob(xattrs: dict[bytes, bytes]) -> bytes:
    """What the hash covers of the xattrs: nothing for none, else their records."""
    return xattr_records(xattrs) if xattrs else b""


def swupd_hash(kind: str, mode: int, uid: int, gid: int, data: bytes, xattrs: dict[bytes, bytes] | None = None) -> str:
    """kind is F, D or L; `mode` is the full st_mode (type bits included) for F and D.

    For L, `data` is the link target and mode and xattrs do not count; for D, `data` is ignored.
    """
    if kind == "D":
        data, size = b"DIRECTORY", 0
    elif kind == "L":
        mode, size, xattrs = 0, len(data), None
    else:
        size = len(data)
    block = struct.pack("<QQQQQ", mode, uid, gid, 0, size)
    key = hmac.new(block, xattr_blob(xattrs or {}), hashlib.sha256).hexdigest().encode("ascii")
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def manifest_hash(data: bytes) -> str:
    """A manifest file is hashed as a root-owned 0644 regular file."""
    return swupd_hash("F", stat.S_IFREG | 0o644, 0, 0, data)
