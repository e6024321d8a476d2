"""Plain ustar headers, read and written by this project alone.

Fullfiles and packs are tar archives whose every header is a plain POSIX ustar header: no pax
records, no GNU long names, nothing a reader must collect before it knows what a member is.
The device parses them itself instead of using a general tar parser, which is attack surface:
each 512-byte header is checked whole (checksum, magic and version, octal fields of digits
only) and accepted only if its name and type are among those the caller expects and its size
is within the caller's cap, all before one byte of its data is read. A reader walks members
one at a time, from a stream or from bytes in memory, holding no more than one header and what
the caller reads of a member's data. The archive ends with two zero blocks.

Numeric fields hold octal digits (spaces before them are taken) ended by NULs or spaces, or fill
the whole field without one when the value needs every digit (as GNU tar, bsdtar and Python's
tar module read them): sizes up to 64 GiB - 1, ids up to 2**24 - 1. Names and link names are
at most 100 bytes; a longer name is split over ustar's 155-byte prefix and the name at a slash.
"""

from __future__ import annotations

import io
import re
from collections.abc import Collection
from re import Pattern
from typing import BinaryIO, NamedTuple

from .errors import FormatError, SizeLimitError

BLOCK = 512
REGULAR, SYMLINK, DIRECTORY = "0", "2", "5"
END = bytes(2 * BLOCK)  # end-of-archive
MAX_SIZE = 8**12 - 1  # every digit of the size field
MAX_ID = 8**8 - 1  # every digit of the uid and gid fields
_ZERO = bytes(BLOCK)
_MAGIC = b"ustar\x0000"
# What other writers put in headers that this format never uses, named when refused.
_FOREIGN = {
    "x": "a pax extended header",
    "g": "a pax global header",
    "L": "a GNU long name",
    "K": "a GNU long link name",
    "1": "a hard link",
    "3": "a character device",
    "4": "a block device",
    "6": "a FIFO",
}
_OCTAL = re.compile(rb" *([0-7]*)[ \0]*\Z")
# (offset, width) of the numeric fields; devmajor and devminor are checked for form only.
_FIELDS = {"mode": (100, 8), "uid": (108, 8), "gid": (116, 8), "size": (124, 12), "mtime": (136, 12)}
_DEVICE_FIELDS = ((329, 8), (337, 8))


class Header(NamedTuple):
    """One member as its header describes it; `type` is REGULAR, SYMLINK or DIRECTORY."""

    name: str
    type: str
    mode: int
    uid: int
    gid: int
    size: int
    mtime: int
    linkname: str


def _number(block: bytes, offset: int, width: int, what: str, empty_ok: bool = False) -> int:
    m = _OCTAL.match(block, offset, offset + width)
    if m is None or not (m[1] or empty_ok):
        raise FormatError(f"tar header with a malformed {what} field")
    return int(m[1], 8) if m[1] else 0


def _text(field: bytes) -> bytes:
    end = field.find(b"\0")
    return field if end < 0 else field[:end]


def parse(block: bytes, names: Pattern[str] | Collection[str], types: Collection[str], max_size: int) -> Header:
    """The header in `block`, if it is a plain ustar header of one of `types` with a name in
    `names` (a set, or a pattern the whole name must match) and a size of at most `max_size`.

    Directory names end with a slash and no other name does. Regular members only have data
    (AREGTYPE, NUL, counts as regular), and only regular members and symlinks a link name."""
    if len(block) != BLOCK:
        raise FormatError("tar archive cut short")
    if block[257:265] != _MAGIC:
        raise FormatError("not a plain ustar header")
    stored = _number(block, 148, 8, "checksum")
    if stored != sum(block[:148]) + 256 + sum(block[156:]):
        raise FormatError("tar header checksum mismatch")
    kind = chr(block[156]) if block[156] else REGULAR
    if kind not in types:
        what = _FOREIGN.get(kind, f"a member of type {kind!r}")
        raise FormatError(f"tar archive holds {what}, which is not expected here")
    try:
        name = _text(block[0:100]).decode("ascii")
        prefix = _text(block[345:500]).decode("ascii")
        linkname = _text(block[157:257]).decode("utf-8", "surrogateescape")
    except UnicodeDecodeError:
        raise FormatError("tar member name is not ASCII") from None
    if prefix:
        name = f"{prefix}/{name}"
    expected = names.fullmatch(name) is not None if isinstance(names, Pattern) else name in names
    if not expected or name.endswith("/") != (kind == DIRECTORY):
        raise FormatError(f"unexpected tar member {name[:200]!r}")
    mode, uid, gid, size, mtime = (_number(block, o, w, f) for f, (o, w) in _FIELDS.items())
    for offset, width in _DEVICE_FIELDS:
        _number(block, offset, width, "device", empty_ok=True)
    if kind != REGULAR and size:
        raise FormatError(f"tar member {name!r} of type {kind!r} with data")
    if size > max_size:
        raise SizeLimitError(f"tar member {name!r} larger than allowed ({size} bytes)")
    if linkname and kind != SYMLINK:
        raise FormatError(f"tar member {name!r} with a link name")
    return Header(name, kind, mode, uid, gid, size, mtime, linkname)


def _field(value: int, width: int, what: str) -> bytes:
    if 0 <= value < 8 ** (width - 1):
        return b"%0*o\0" % (width - 1, value)
    if 0 <= value < 8**width:
        return b"%0*o" % (width, value)
    raise FormatError(f"{what} {value} does not fit a ustar header")


def _split(name: bytes) -> tuple[bytes, bytes]:
    """(prefix, name) fields for `name`: the name whole if it fits, else split at a slash."""
    if len(name) <= 100:
        return b"", name
    cut = name.rfind(b"/", 0, 156)
    if cut <= 0 or len(name) - cut - 1 > 100:
        raise FormatError(f"tar member name {name[:200]!r} does not fit a ustar header")
    return name[:cut], name[cut + 1 :]


def header(
    name: str, kind: str, mode: int, uid: int = 0, gid: int = 0, size: int = 0, mtime: int = 0, linkname: str = ""
) -> bytes:
    """A plain ustar header that `parse` accepts (user and group names empty)."""
    prefix, short = _split(name.encode("ascii"))
    link = linkname.encode("utf-8", "surrogateescape")
    if len(link) > 100:
        raise FormatError("symlink target longer than a ustar link name")
    block = bytearray(BLOCK)
    block[0 : len(short)] = short
    block[100:108] = _field(mode, 8, "mode")
    block[108:116] = _field(uid, 8, "uid")
    block[116:124] = _field(gid, 8, "gid")
    block[124:136] = _field(size, 12, "size")
    block[136:148] = _field(mtime, 12, "mtime")
    block[148:156] = b" " * 8
    block[156:157] = kind.encode("ascii")
    block[157 : 157 + len(link)] = link
    block[257:265] = _MAGIC
    block[345 : 345 + len(prefix)] = prefix
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def padding(size: int) -> bytes:
    """The zeros that fill a member's data up to a whole block."""
    return bytes(-size % BLOCK)


class Reader:
    """The members of one archive, in order, from a stream or from bytes in memory.

    `next` skips what is left of the current member's data (reading a stream, slicing bytes),
    then parses the next header; `content` and `read` give the current member's data, which a
    stream must provide whole."""

    def __init__(self, src: BinaryIO | bytes) -> None:
        self._stream = None if isinstance(src, bytes) else src
        self._buf = src if isinstance(src, bytes) else b""
        self._pos = 0  # in `_buf`: where the current member's data starts
        self._member: Header | None = None
        self._data: _Data | None = None
        self.ended = False

    def _block(self) -> bytes:
        if self._stream is None:
            block = self._buf[self._pos : self._pos + BLOCK]
            self._pos += BLOCK
        else:
            block = self._stream.read(BLOCK)
            while 0 < len(block) < BLOCK and (more := self._stream.read(BLOCK - len(block))):
                block += more
        if len(block) != BLOCK:
            raise FormatError("tar archive cut short")
        return block

    def _skip_data(self) -> None:
        m = self._member
        if m is None:
            return
        self._member = None
        room = m.size + (-m.size % BLOCK)
        if self._stream is None:
            self._pos += room
            return
        left = room - (self._data.consumed if self._data else 0)
        self._data = None
        while left:
            chunk = self._stream.read(min(left, 1 << 20))
            if not chunk:
                raise FormatError("tar archive cut short")
            left -= len(chunk)

    def next(self, names: Pattern[str] | Collection[str], types: Collection[str], max_size: int) -> Header | None:
        """The next member's header, checked by `parse`; None at the end of the archive."""
        if self.ended:
            return None
        self._skip_data()
        block = self._block()
        if block == _ZERO:
            if self._block() != _ZERO:
                raise FormatError("tar archive with a lone zero block")
            self.ended = True
            return None
        m = parse(block, names, types, max_size)
        if self._stream is None and self._pos + m.size > len(self._buf):
            raise FormatError("tar archive cut short")
        self._member = m
        return m

    def content(self) -> BinaryIO:
        """The current member's data, exactly its size: a slice of the bytes, or a stream that
        fails if the archive ends before it does."""
        m = self._member
        if m is None:
            raise FormatError("no tar member to read")
        if self._stream is None:
            return io.BytesIO(self._buf[self._pos : self._pos + m.size])
        if self._data is None:
            self._data = _Data(self._stream, m.size)
        return self._data  # type: ignore[return-value]

    def read(self) -> bytes:
        """The current member's data, whole (the caller has capped its size)."""
        return self.content().read()

    def trailer(self, limit: int) -> None:
        """After the end: what follows may only be zeros (tar pads archives to whole records),
        at most `limit` bytes of them."""
        if self._stream is None:
            rest = self._buf[self._pos :]
            if len(rest) > limit or rest.count(0) != len(rest):
                raise FormatError("data after the end of the tar archive")
            return
        while chunk := self._stream.read(min(limit + 1, 1 << 16)):
            limit -= len(chunk)
            if limit < 0 or chunk.count(0) != len(chunk):
                raise FormatError("data after the end of the tar archive")


class _Data(io.RawIOBase):
    """Exactly `size` bytes of a stream."""

    def __init__(self, stream: BinaryIO, size: int) -> None:
        self._stream, self._left, self.consumed = stream, size, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        want = min(len(buf), self._left)
        if not want:
            return 0
        chunk = self._stream.read(want)
        if not chunk:
            raise FormatError("tar archive cut short")
        n = len(chunk)
        buf[:n] = chunk
        self._left -= n
        self.consumed += n
        return n

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        # Unbuffered and unsized reads in one piece of at most what is left.
        want = self._left if size is None or size < 0 else min(size, self._left)
        out = bytearray()
        while len(out) < want:
            chunk = self._stream.read(want - len(out))
            if not chunk:
                raise FormatError("tar archive cut short")
            out += chunk
        self._left -= len(out)
        self.consumed += len(out)
        return bytes(out)
