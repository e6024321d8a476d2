"""Binary per-file deltas: one container, several codecs.

A delta starts with the magic `SWDELTA1`, a codec byte, the old and new sizes (u64 LE), and the
new object's mode, uid and gid (u32 LE) and xattrs (u32 LE length, then pax-like records), so
the result can be hashed exactly as the manifest pins it. Then comes the codec's payload:
- codec 1, `zstd-dict`: a zstd frame compressed with the old file as a raw-content dictionary;
  fastest to apply.
- codec 2, `bsdiff`: bsdiff's control triples, diff and extra blocks, the whole payload one
  zstd frame; smallest on rebuilt binaries.
The server makes every codec it is asked for and keeps the smallest. A delta is only ever a
way to obtain bytes whose hash the manifest already pins: the applier checks sizes, and the
caller checks the hash of the result before using it.
"""

from __future__ import annotations

import io
import stat
import struct
from typing import BinaryIO

import bsdiff4.core
import zstandard

from .errors import FormatError, SizeLimitError
from .fullfile import Meta
from .limits import LIMITS, Limits

MAGIC = b"SWDELTA1"
ZSTD_DICT = 1
BSDIFF = 2
CODECS = {"zstd-dict": ZSTD_DICT, "bsdiff": BSDIFF}
_HEADER = struct.Struct("<8sBQQIIII")
_MAX_WINDOW_LOG = 27


def _window_log(old_len: int, new_len: int) -> int:
    # The window must reach back over the dictionary to the start of the old file.
    return max(10, min(_MAX_WINDOW_LOG, (old_len + new_len).bit_length()))


def _xattrs_dump(xattrs: dict[str, bytes]) -> bytes:
    out = bytearray()
    for name, value in sorted(xattrs.items()):
        raw = name.encode("utf-8", "surrogateescape")
        out += struct.pack("<HI", len(raw), len(value)) + raw + value
    return bytes(out)


def _xattrs_load(blob: bytes) -> dict[str, bytes]:
    out, pos = {}, 0
    while pos < len(blob):
        nlen, vlen = struct.unpack_from("<HI", blob, pos)
        pos += 6
        name, value = blob[pos : pos + nlen], blob[pos + nlen : pos + nlen + vlen]
        if len(name) != nlen or len(value) != vlen:
            raise FormatError("delta xattrs truncated")
        out[name.decode("utf-8", "surrogateescape")] = value
        pos += nlen + vlen
    return out


def _head(codec: int, old: bytes, new: bytes, meta: Meta) -> bytes:
    blob = _xattrs_dump(meta.xattrs)
    return _HEADER.pack(MAGIC, codec, len(old), len(new), meta.mode, meta.uid, meta.gid, len(blob)) + blob


def encode_zstd_dict(old: bytes, new: bytes, meta: Meta, level: int = 19) -> bytes:
    d = zstandard.ZstdCompressionDict(old, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    params = zstandard.ZstdCompressionParameters.from_level(
        level, source_size=len(new), window_log=_window_log(len(old), len(new))
    )
    payload = zstandard.ZstdCompressor(dict_data=d, compression_params=params).compress(new)
    return _head(ZSTD_DICT, old, new, meta) + payload


def encode_bsdiff(old: bytes, new: bytes, meta: Meta, level: int = 19) -> bytes:
    control, diff, extra = bsdiff4.core.diff(old, new)
    raw = struct.pack("<QQ", len(control), len(diff)) + control + diff + extra
    params = zstandard.ZstdCompressionParameters.from_level(
        level, source_size=len(raw), window_log=min(23, max(10, len(raw).bit_length()))
    )
    payload = zstandard.ZstdCompressor(compression_params=params).compress(raw)
    return _head(BSDIFF, old, new, meta) + payload


ENCODERS = {ZSTD_DICT: encode_zstd_dict, BSDIFF: encode_bsdiff}


def codec_name(delta: bytes) -> str:
    """The codec of a delta, from its fixed-size header alone."""
    if len(delta) < _HEADER.size:
        raise FormatError("delta too short")
    magic, number = _HEADER.unpack_from(delta)[:2]
    names = {v: k for k, v in CODECS.items()}
    if magic != MAGIC or number not in names:
        raise FormatError("not a delta of a known codec")
    return names[number]


def header(delta: bytes, limits: Limits = LIMITS) -> tuple[int, int, Meta, int]:
    """(codec, old size, new object's metadata, payload offset) of a delta, checked for form."""
    if len(delta) < _HEADER.size:
        raise FormatError("delta too short")
    magic, codec, old_len, new_len, mode, uid, gid, xlen = _HEADER.unpack_from(delta)
    if magic != MAGIC or codec not in ENCODERS:
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
    if codec == BSDIFF and max(old_len, new_len) > limits.max_bsdiff_bytes:
        raise SizeLimitError("bsdiff delta for a file larger than bsdiff may be used for")
    try:
        xattrs = _xattrs_load(delta[_HEADER.size : _HEADER.size + xlen])
    except (struct.error, UnicodeDecodeError):
        raise FormatError("delta xattrs malformed") from None
    return codec, old_len, Meta(mode, uid, gid, 0, new_len, "", xattrs), _HEADER.size + xlen


def apply(old: bytes, delta: bytes, limits: Limits = LIMITS) -> tuple[Meta, bytes]:
    """The new file's metadata and bytes; raises on any inconsistency, never a wrong length."""
    codec, old_len, meta, offset = header(delta, limits)
    new_len = meta.size
    if old_len != len(old):
        raise FormatError("delta made against another source")
    payload = delta[offset:]
    try:
        if codec == ZSTD_DICT:
            if zstandard.frame_content_size(payload) != new_len:
                raise FormatError("delta payload does not match its target size")
            d = zstandard.ZstdCompressionDict(old, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
            dctx = zstandard.ZstdDecompressor(dict_data=d, max_window_size=1 << _MAX_WINDOW_LOG)
            new = dctx.decompress(payload)
        else:
            cap = 2 * new_len + 24 * (new_len + 1) + 64
            size = zstandard.frame_content_size(payload)
            if size < 0 or size > cap:
                raise FormatError("delta payload of unknown or excessive size")
            raw = zstandard.ZstdDecompressor(max_window_size=1 << 23).decompress(payload)
            new = _bspatch(old, new_len, raw)
    except (zstandard.ZstdError, struct.error, ValueError) as e:
        raise FormatError(f"corrupt delta: {e}") from None
    if len(new) != new_len:
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
    """Like `apply`, but the result is read as a stream where the codec allows it (zstd-dict),
    so a large file is never held whole in memory on the device."""
    codec, old_len, meta, offset = header(delta, limits)
    if codec != ZSTD_DICT:
        meta, new = apply(old, delta, limits)
        return meta, io.BytesIO(new)
    if old_len != len(old):
        raise FormatError("delta made against another source")
    payload = delta[offset:]
    try:
        if zstandard.frame_content_size(payload) != meta.size:
            raise FormatError("delta payload does not match its target size")
        d = zstandard.ZstdCompressionDict(old, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        dctx = zstandard.ZstdDecompressor(dict_data=d, max_window_size=1 << _MAX_WINDOW_LOG)
        reader = dctx.stream_reader(io.BytesIO(payload), read_across_frames=False)
    except zstandard.ZstdError as e:
        raise FormatError(f"corrupt delta: {e}") from None
    return meta, io.BufferedReader(_Exact(reader, meta.size), 1 << 20)  # type: ignore[arg-type]


def _bspatch(old: bytes, new_len: int, raw: bytes) -> bytes:
    clen, dlen = struct.unpack_from("<QQ", raw)
    if clen % 24 or 16 + clen + dlen > len(raw):
        raise ValueError("delta blocks do not match their lengths")
    control = raw[16 : 16 + clen]
    diff = raw[16 + clen : 16 + clen + dlen]
    extra = raw[16 + clen + dlen :]
    return bsdiff4.core.patch(old, new_len, control, diff, extra)
