"""Binary per-file deltas: one container, several codecs.

A delta starts with the magic `SWDELTA1`, a codec byte, the old and new sizes (u64 LE), and the
new object's mode, uid and gid (u32 LE) and xattrs (u32 LE length, then the records of
`xattrs.py`), so the result can be hashed exactly as the manifest pins it. Then comes the codec's payload:
- codec 1, `zstd-dict`: a zstd frame compressed with the old file as a raw-content dictionary;
  fastest to apply.
- codec 2, `bsdiff`: the compressed lengths of three zstd frames (3 x u64 LE), then the frames:
  bsdiff's control triples, its diff block and its extra block, each with a window of at most
  1 MiB, so the device applies it as a stream; smallest on rebuilt binaries.
The server makes every codec it is asked for and keeps the smallest (it encodes them in
swupd_server/encode.py; a device only decodes). A delta is only ever a way to obtain bytes
whose hash the manifest already pins: the applier checks sizes, and the caller checks the hash
of the result before using it.
"""

from __future__ import annotations

import io
import stat
import struct
from bisect import bisect_right
from itertools import accumulate, chain
from operator import add
from typing import BinaryIO

import bsdiff4.core
import zstandard

from . import xattrs
from .errors import FormatError, SizeLimitError
from .fullfile import Meta
from .limits import LIMITS, Limits

MAGIC = b"SWDELTA1"
ZSTD_DICT = 1
BSDIFF = 2
CODECS = {"zstd-dict": ZSTD_DICT, "bsdiff": BSDIFF}
_NAMES = {v: k for k, v in CODECS.items()}
# Bumped whenever a codec's payload layout changes, so build caches never reuse older deltas.
PAYLOAD_REVISION = 2
_HEADER = struct.Struct("<8sBQQIIII")
# The largest window a zstd-dict payload may use, and the window of each bsdiff block.
MAX_WINDOW_LOG = 27
BSDIFF_WINDOW_LOG = 20
# The compressed lengths of a bsdiff payload's three blocks.
FRAMES = struct.Struct("<QQQ")
_BATCH = 1 << 18
# At most this many control integers (a seek triple, then the batch's triples) per bsdiff4 call.
_MAX_CONTROL = _BATCH // 64 * 3
_MAX_TRIPLES = _MAX_CONTROL // 3
_CONTROL_RUN = 24 * 1024
_MAGNITUDE = (1 << 63) - 1


def pack_header(codec: int, old_len: int, new_len: int, meta: Meta) -> bytes:
    """The header a delta starts with, xattrs included; `header` reads it back."""
    blob = xattrs.dump(meta.xattrs)
    return _HEADER.pack(MAGIC, codec, old_len, new_len, meta.mode, meta.uid, meta.gid, len(blob)) + blob


def codec_name(delta: bytes) -> str:
    """The codec of a delta, from its fixed-size header alone."""
    if len(delta) < _HEADER.size:
        raise FormatError("delta too short")
    magic, number = _HEADER.unpack_from(delta)[:2]
    if magic != MAGIC or number not in _NAMES:
        raise FormatError("not a delta of a known codec")
    return _NAMES[number]


def usable(codec: int, old_len: int, new_len: int, limits: Limits = LIMITS) -> bool:
    """Whether a device may apply `codec` to files of these sizes: what it holds in memory
    meanwhile is bounded (bsdiff: the old file; zstd-dict: the old and the new one). The build
    makes only deltas that pass, and a device refuses any other."""
    if codec == BSDIFF:
        return max(old_len, new_len) <= limits.max_bsdiff_bytes
    return old_len + new_len <= limits.max_zstd_dict_pair_bytes


def header(delta: bytes, limits: Limits = LIMITS) -> tuple[int, int, Meta, int]:
    """(codec, old size, new object's metadata, payload offset) of a delta, checked for form."""
    if len(delta) < _HEADER.size:
        raise FormatError("delta too short")
    magic, codec, old_len, new_len, mode, uid, gid, xlen = _HEADER.unpack_from(delta)
    if magic != MAGIC or codec not in _NAMES:
        raise FormatError("not a delta of a known codec")
    # Both sides only make deltas for files up to this size, so nothing larger is allocated.
    if new_len > limits.max_delta_source_bytes or old_len > limits.max_delta_source_bytes:
        raise SizeLimitError("delta source or target larger than deltas may be")
    if xlen > limits.max_xattr_bytes:
        raise SizeLimitError("delta xattrs too large")
    if _HEADER.size + xlen > len(delta):
        raise FormatError("delta xattrs truncated")
    if not stat.S_ISREG(mode):
        raise FormatError("delta target is not a regular file")
    if not usable(codec, old_len, new_len, limits):
        raise SizeLimitError(f"{_NAMES[codec]} delta for files larger than that codec may be used for")
    records = xattrs.load(memoryview(delta)[_HEADER.size : _HEADER.size + xlen])
    return codec, old_len, Meta(mode, uid, gid, 0, new_len, "", records), _HEADER.size + xlen


def apply(old: bytes, delta: bytes, limits: Limits = LIMITS) -> tuple[Meta, bytes]:
    """The new file's metadata and bytes; raises on any inconsistency, never a wrong length."""
    codec, old_len, meta, offset = header(delta, limits)
    if codec == ZSTD_DICT:
        # Whole, in one call: the frame must declare exactly the promised size.
        if old_len != len(old):
            raise FormatError("delta made against another source")
        payload = memoryview(delta)[offset:]
        try:
            if zstandard.frame_content_size(payload) != meta.size:
                raise FormatError("delta payload does not match its target size")
            d = zstandard.ZstdCompressionDict(old, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
            dctx = zstandard.ZstdDecompressor(dict_data=d, max_window_size=1 << MAX_WINDOW_LOG)
            new = dctx.decompress(payload, max_output_size=meta.size)
        except zstandard.ZstdError as e:
            raise FormatError(f"corrupt delta: {e}") from None
        if len(new) != meta.size:
            raise FormatError("delta produced the wrong size")
        return meta, new
    meta, stream = open_result(old, delta, limits)
    with stream:
        # Sized, so the stream fills one buffer (an unsized read goes 8 KiB at a time), and
        # one byte more, so a result longer than promised cannot pass.
        new = stream.read(meta.size + 1)
    if len(new) != meta.size:
        raise FormatError("delta produced the wrong size")
    return meta, new


class _Exact(io.RawIOBase):
    """Streams a delta's result, failing unless exactly the promised number of bytes comes out."""

    def __init__(self, reader: BinaryIO, size: int) -> None:
        self._reader, self._left = reader, size

    def readable(self) -> bool:
        return True

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        try:
            n = self._reader.readinto(buf)  # type: ignore[attr-defined]
        except zstandard.ZstdError as e:
            raise FormatError(f"corrupt delta: {e}") from None
        self._left -= n
        if self._left < 0 or (n == 0 and self._left > 0):
            raise FormatError("delta produced the wrong size")
        return n


def open_result(old: bytes, delta: bytes, limits: Limits = LIMITS) -> tuple[Meta, BinaryIO]:
    """The new file's metadata and its bytes as a stream, so a large file is never held whole
    in memory on the device; reading fails unless exactly the promised bytes come out."""
    codec, old_len, meta, offset = header(delta, limits)
    if old_len != len(old):
        raise FormatError("delta made against another source")
    payload = memoryview(delta)[offset:]
    try:
        if codec == ZSTD_DICT:
            if zstandard.frame_content_size(payload) != meta.size:
                raise FormatError("delta payload does not match its target size")
            d = zstandard.ZstdCompressionDict(old, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
            dctx = zstandard.ZstdDecompressor(dict_data=d, max_window_size=1 << MAX_WINDOW_LOG)
            reader = dctx.stream_reader(payload, read_across_frames=False)
        else:
            reader = _BsPatch(old, meta.size, payload)
    except zstandard.ZstdError as e:
        raise FormatError(f"corrupt delta: {e}") from None
    return meta, io.BufferedReader(_Exact(reader, meta.size), 1 << 20)  # type: ignore[arg-type]


def _signed(value: int) -> int:
    """A signed integer as bsdiff's sign-magnitude 64-bit value."""
    return value if value >= 0 else -value | 1 << 63


class _BsPatch(io.RawIOBase):
    """bspatch as a stream: the control, diff and extra blocks are read from their own zstd
    frames as they are needed and the output is made a batch at a time, so memory stays at the
    old file plus a few small buffers whatever the delta's size (or an attacker's claims)."""

    def __init__(self, old: bytes, new_len: int, payload: memoryview) -> None:
        if len(payload) < FRAMES.size:
            raise FormatError("delta payload truncated")
        sizes = FRAMES.unpack_from(payload)
        if FRAMES.size + sum(sizes) != len(payload):
            raise FormatError("delta blocks do not match their lengths")
        pos, self._blocks = FRAMES.size, []
        for size in sizes:
            # One decompressor per block: a decompression context serves one stream at a time.
            dctx = zstandard.ZstdDecompressor(max_window_size=1 << BSDIFF_WINDOW_LOG)
            frame = payload[pos : pos + size]
            self._blocks.append(io.BufferedReader(dctx.stream_reader(frame, read_across_frames=False), 1 << 16))
            pos += size
        self._old, self._left, self._oldpos = old, new_len, 0
        self._out, self._pending, self._triples = memoryview(b""), None, 0
        self._xs: tuple[int, ...] = ()
        self._ys: tuple[int, ...] = ()
        self._zs: list[int] = []
        self._zraw: tuple[int, ...] = ()
        self._ends: list[int] = []
        self._next = 0
        # bsdiff makes no more triples than new bytes; a control block claiming more is hostile.
        self._max_triples = new_len + 16

    def readable(self) -> bool:
        return True

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._out and self._left:
            self._out = memoryview(self._batch())
        n = min(len(buf), len(self._out))
        buf[:n] = self._out[:n]
        self._out = self._out[n:]
        if not self._out and not self._left:
            self._check_drained()
        return n

    def _exactly(self, block: int, n: int) -> bytes:
        data = self._blocks[block].read(n)
        if len(data) != n:
            raise FormatError("delta block shorter than its control says")
        return data

    def _fill(self) -> None:
        """Decode and check the next run of control triples at once (C calls per run, not
        Python per integer): x and y must not be negative, z within +-2**62; the running end
        of each triple's output is kept so a batch finds its last whole triple by bisection."""
        raw = self._blocks[0].read(_CONTROL_RUN)
        if not raw or len(raw) % 24:
            raise FormatError("delta control block ends early")
        values = struct.unpack(f"<{len(raw) // 8}Q", raw)
        xs, ys, zraw = values[0::3], values[1::3], values[2::3]
        zs = [-(v & _MAGNITUDE) if v >> 63 else v for v in zraw]
        self._triples += len(xs)
        # x and y as unsigned: a negative one has the top bit set, far above any real length.
        if self._triples > self._max_triples or max(xs) >= 1 << 63 or max(ys) >= 1 << 63:
            raise FormatError("delta control block out of range")
        if max(zs) > 1 << 62 or min(zs) < -(1 << 62):
            raise FormatError("delta control block out of range")
        self._xs, self._ys, self._zs, self._zraw = xs, ys, zs, zraw
        self._ends = list(accumulate(map(add, xs, ys)))
        self._next = 0

    def _batch(self) -> bytes:
        """Up to _BATCH new bytes in one bsdiff4 call: the control triples that make them,
        split where one is longer, after a seek triple to the current old position."""
        control, total, xs, ys = [0, 0, _signed(self._oldpos)], 0, 0, 0
        limit = min(_BATCH, self._left)
        while total < limit and len(control) < _MAX_CONTROL:
            room = limit - total
            if self._pending is not None:
                x, y, z = self._pending
                self._pending = None
            else:
                if self._next >= len(self._xs):
                    self._fill()
                i = self._next
                base = self._ends[i - 1] if i else 0
                # The whole triples from i that fit in the room, as many as the batch may hold.
                j = bisect_right(self._ends, base + room, i, min(len(self._ends), i + _MAX_TRIPLES))
                if j > i:
                    bx, by, bz = self._xs[i:j], self._ys[i:j], self._zs[i:j]
                    # The raw z values are already bsdiff's sign-magnitude integers.
                    control += chain.from_iterable(zip(bx, by, self._zraw[i:j], strict=True))
                    sx, sy = sum(bx), sum(by)
                    total, xs, ys = total + sx + sy, xs + sx, ys + sy
                    self._oldpos += sx + sum(bz)
                    self._next = j
                    continue
                x, y, z = self._xs[i], self._ys[i], self._zs[i]
                self._next = i + 1
            if x + y > room:
                if x + y > self._left - total:
                    raise FormatError("delta control block longer than its target")
                # (x, y, z) is (a, 0, 0) then (x - a, y, z), or (x, b, 0) then (0, y - b, z).
                cut_x, cut_y = min(x, room), max(0, room - x)
                self._pending = (x - cut_x, y - cut_y, z)
                x, y, z = cut_x, cut_y, 0
            control += (x, y, _signed(z))
            total, xs, ys = total + x + y, xs + x, ys + y
            self._oldpos += x + z
        try:
            packed = struct.pack(f"<{len(control)}Q", *control)
            out = bsdiff4.core.patch(self._old, total, packed, self._exactly(1, xs), self._exactly(2, ys))
        except ValueError as e:
            raise FormatError(f"corrupt delta: {e}") from None
        self._left -= total
        return out

    def _check_drained(self) -> None:
        # Decoded triples left over are control that makes nothing: as hostile as extra bytes.
        if self._next < len(self._xs) or any(block.read(1) for block in self._blocks):
            raise FormatError("delta blocks longer than their control says")
