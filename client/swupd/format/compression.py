"""Compression of fullfiles and packs, recognised by magic bytes.

Fullfiles are zstd by default (fast to unpack on a small device), xz when a build asks for it;
readers detect the codec from the first bytes, so a stream may mix them. Every decompressing
reader is bounded: it fails once the output passes the size the caller allows, zstd frames
that need a window above 8 MiB and xz streams with a larger dictionary are refused, and a
stream that ends inside a frame is an error, so a hostile stream cannot exhaust a device or
pass for a shorter one.
"""

from __future__ import annotations

import io
import lzma
from typing import BinaryIO

import zstandard

from .errors import FormatError, SizeLimitError

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
XZ_MAGIC = b"\xfd7zXZ\x00"
MAX_WINDOW = 8 * 1024 * 1024
MAX_WINDOW_LOG = MAX_WINDOW.bit_length() - 1
# xz's decoder needs its dictionary and 1 MiB: dictionaries are held to the zstd window, so an
# xz stream costs a device no more than a zstd one.
_XZ_MEMLIMIT = MAX_WINDOW + 1024 * 1024


def max_compressed_size(size: int) -> int:
    """An upper bound of a zstd frame holding `size` bytes (zstd's own bound is smaller), so a
    download of compressed data can be capped by the signed size of what it holds."""
    return size + (size >> 7) + 1024


def detect(head: bytes) -> str:
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    if head.startswith(XZ_MAGIC):
        return "xz"
    return "none"


class _Bounded(io.RawIOBase):
    """A reader that raises once more than `limit` bytes come out."""

    def __init__(self, inner: BinaryIO, limit: int) -> None:
        self._inner = inner
        self._left = limit

    def readable(self) -> bool:
        return True

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        n = self._inner.readinto(buf) if hasattr(self._inner, "readinto") else 0
        if n is None:
            return 0
        self._left -= n
        if self._left < 0:
            raise SizeLimitError("decompressed data larger than allowed")
        return n


class _XzReader(io.RawIOBase):
    def __init__(self, src: BinaryIO) -> None:
        self._src = src
        self._dec = lzma.LZMADecompressor(memlimit=_XZ_MEMLIMIT)
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        try:
            while not self._buf and not self._dec.eof:
                # More input only once the decoder has used what it holds: it keeps what it has
                # not used, so reading on while output is capped would gather the stream.
                chunk = self._src.read(65536) if self._dec.needs_input else b""
                if not chunk and self._dec.needs_input:
                    raise FormatError("xz stream truncated")
                self._buf = self._dec.decompress(chunk, max_length=len(buf))
        except lzma.LZMAError as e:
            raise FormatError(f"corrupt xz data: {e}") from None
        n = min(len(buf), len(self._buf))
        buf[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


_FRAME, _BLOCK, _CHECKSUM = range(3)  # what the next unit of a zstd stream is
_MAX_BLOCK = 128 * 1024  # zstd's largest block, whatever the window


class _ZstdReader(io.RawIOBase):
    """Streams zstd frames, feeding the decoder one unit at a time (a frame header, a block, a
    checksum or a skippable frame), found from the units' own headers. A block decodes to at
    most 128 KiB however small it is (four bytes of an RLE block make 128 KiB), so no call
    holds more, whatever the stream; a stream that ends inside a frame is refused."""

    def __init__(self, src: BinaryIO) -> None:
        self._src = src
        self._dctx = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW)
        self._obj = self._dctx.decompressobj()
        self._in = memoryview(b"")
        self._out = memoryview(b"")
        self._unit = 0  # bytes of the current unit still to feed
        self._next = _FRAME  # what follows the current unit
        self._checksum = False  # the current frame ends with a checksum

    def readable(self) -> bool:
        return True

    def _fill(self, n: int) -> bool:
        """At least `n` bytes of input at hand, unless the source ends first."""
        while len(self._in) < n:
            more = self._src.read(65536)
            if not more:
                return False
            self._in = memoryview(bytes(self._in) + more) if self._in else memoryview(more)
        return True

    def _plan(self) -> bool:
        """The size of the next unit into `_unit`; False where the stream ends between frames."""
        if self._next == _FRAME:
            if not self._fill(1):
                return False
            if not self._fill(5):
                raise FormatError("zstd stream truncated")
            head = bytes(self._in[:5])
            if head[:4] == ZSTD_MAGIC:
                fhd = head[4]
                single = fhd >> 5 & 1
                self._unit = 6 - single + (0, 1, 2, 4)[fhd & 3] + (single, 2, 4, 8)[fhd >> 6]
                self._checksum, self._next = bool(fhd & 4), _BLOCK
            elif head[1:4] == b"\x2a\x4d\x18" and head[0] & 0xF0 == 0x50:  # a skippable frame
                if not self._fill(8):
                    raise FormatError("zstd stream truncated")
                self._unit = 8 + int.from_bytes(self._in[4:8], "little")
            else:
                raise FormatError("corrupt zstd data: not a zstd frame")
        elif self._next == _BLOCK:
            if not self._fill(3):
                raise FormatError("zstd stream truncated")
            h = int.from_bytes(self._in[:3], "little")
            kind, size = h >> 1 & 3, h >> 3
            if kind == 3 or size > _MAX_BLOCK:
                raise FormatError("corrupt zstd data: malformed block")
            self._unit = 3 + (1 if kind == 1 else size)
            self._next = (_CHECKSUM if self._checksum else _FRAME) if h & 1 else _BLOCK
        else:
            self._unit, self._next = 4, _FRAME
        return True

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        try:
            while not self._out:
                if not self._unit and not self._plan():
                    return 0
                if not self._in and not self._fill(1):
                    raise FormatError("zstd stream truncated")
                piece, self._in = self._in[: self._unit], self._in[self._unit :]
                self._unit -= len(piece)
                self._out = memoryview(self._obj.decompress(piece))
                if self._unit or self._next != _FRAME:
                    if self._obj.eof:
                        raise FormatError("corrupt zstd data: a frame ends inside a block")
                elif not self._obj.eof:
                    raise FormatError("corrupt zstd data: a frame goes on past its last block")
                else:
                    self._obj = self._dctx.decompressobj()
        except zstandard.ZstdError as e:
            raise FormatError(f"corrupt zstd data: {e}") from None
        n = min(len(buf), len(self._out))
        buf[:n] = self._out[:n]
        self._out = self._out[n:]
        return n


def open_decompressed(src: BinaryIO, limit: int) -> BinaryIO:
    """A buffered reader of `src` decompressed by its magic, capped at `limit` output bytes."""
    head = src.read(8)
    raw: BinaryIO = _Prefixed(head, src)  # type: ignore[assignment]
    codec = detect(head)
    if codec == "zstd":
        inner: BinaryIO = _ZstdReader(raw)  # type: ignore[assignment]
    elif codec == "xz":
        inner = _XzReader(raw)  # type: ignore[assignment]
    else:
        inner = raw
    return io.BufferedReader(_Bounded(inner, limit), 1024 * 1024)  # type: ignore[arg-type]


class _Prefixed(io.RawIOBase):
    """Puts back the bytes read to sniff the codec."""

    def __init__(self, head: bytes, src: BinaryIO) -> None:
        self._head = head
        self._src = src

    def readable(self) -> bool:
        return True

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(buf), len(self._head))
            buf[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._src.read(len(buf))
        buf[: len(data)] = data
        return len(data)


def read_small(src: BinaryIO, limit: int) -> bytes | None:
    """All of a zstd stream decompressed at once, or None if it is not zstd or would pass
    `limit` bytes (the caller then streams it with `open_decompressed`): native calls instead
    of thousands of bounded steps, memory still bounded by `limit`. A stream cut short comes
    out short, which the reader of what it holds (a tar) notices."""
    if not src.read(4).startswith(ZSTD_MAGIC):
        return None
    src.seek(0)
    reader = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW).stream_reader(
        src, read_across_frames=True, closefd=False
    )
    chunks, size = [], 0
    try:
        while size <= limit:
            chunk = reader.read(limit + 1 - size)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
    except zstandard.ZstdError as e:
        raise FormatError(f"corrupt zstd data: {e}") from None
    return None


def decompress(data: bytes, limit: int) -> bytes:
    """Whole-buffer form of `open_decompressed`."""
    out = open_decompressed(io.BytesIO(data), limit).read()
    return out
