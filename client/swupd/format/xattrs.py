"""The one byte encoding of a set of xattrs: in the file hash, in fullfiles and in deltas.

One record per xattr, names sorted bytewise: name length (u16 LE), value length (u32 LE), the
name, the value. Lengths make every set encode to its own bytes (a value may hold NULs, a name
may end where another begins), and a fixed order makes the encoding of a set unique, so a
reader refuses any other order, a repeated name or an empty one.
"""

from __future__ import annotations

import struct

from .errors import FormatError

_RECORD = struct.Struct("<HI")


def _raw(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


def dump(xattrs: dict[str, bytes]) -> bytes:
    """The records of `xattrs` (empty bytes for none)."""
    out = bytearray()
    for raw, value in sorted((_raw(n), v) for n, v in xattrs.items()):
        if not raw or b"\0" in raw or len(raw) > 0xFFFF or len(value) > 0xFFFFFFFF:
            raise FormatError(f"xattr name {raw!r} cannot be encoded")
        out += _RECORD.pack(len(raw), len(value)) + raw + value
    return bytes(out)


def load(blob: bytes | memoryview) -> dict[str, bytes]:
    """The xattrs `dump` encoded as `blob`; refuses anything `dump` would not have written."""
    out: dict[str, bytes] = {}
    pos, last = 0, b""
    while pos < len(blob):
        if pos + _RECORD.size > len(blob):
            raise FormatError("xattr records truncated")
        nlen, vlen = _RECORD.unpack_from(blob, pos)
        pos += _RECORD.size
        if pos + nlen + vlen > len(blob):
            raise FormatError("xattr records truncated")
        raw = bytes(blob[pos : pos + nlen])
        if not raw or b"\0" in raw or raw <= last:
            raise FormatError("xattr records not in canonical form (names empty, repeated or unsorted)")
        out[raw.decode("utf-8", "surrogateescape")] = bytes(blob[pos + nlen : pos + nlen + vlen])
        pos += nlen + vlen
        last = raw
    return out
