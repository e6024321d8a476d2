"""Making what devices decode: compressed objects, fullfiles, file deltas and manifest deltas.

Only the build side encodes, so this lives here and never ships to a device; the layouts and
the bounds a device holds them to are the format's (`swupd.format.compression`, `fullfile`,
`delta`, `manifestdelta`), and every encoder stays within them.
"""

from __future__ import annotations

import io
import lzma
import stat
from typing import BinaryIO

import bsdiff4.core
import zstandard
from swupd.format import delta, manifestdelta, ustar, xattrs
from swupd.format.compression import MAX_WINDOW_LOG
from swupd.format.errors import FormatError
from swupd.format.fullfile import LINK_FIELD, Meta
from swupd.format.limits import LIMITS, Limits


def window_log(size: int, most: int = MAX_WINDOW_LOG) -> int:
    """A zstd window just large enough for `size` bytes (zstd's least is 2^10), at most 2^`most`:
    a device's decoder holds one window, so none is larger than what it covers."""
    return max(10, min(most, size.bit_length()))


def compress(data: bytes, codec: str = "zstd", level: int = 19, max_window_log: int = MAX_WINDOW_LOG) -> bytes:
    """Compress `data` whole (used for small objects and per-file payloads), with a window no
    larger than the data or than `max_window_log` allows."""
    if codec == "zstd":
        params = zstandard.ZstdCompressionParameters.from_level(
            level, source_size=len(data), window_log=window_log(len(data), max_window_log)
        )
        return zstandard.ZstdCompressor(compression_params=params).compress(data)
    if codec == "xz":
        # Presets 7 to 9 differ from 6 only by dictionaries past 8 MiB, which devices refuse.
        return lzma.compress(data, preset=min(level, 6))
    if codec == "none":
        return data
    raise ValueError(f"unknown compression {codec!r}")


def _side(out: BinaryIO, name: str, data: bytes, mtime: int) -> None:
    out.write(ustar.header(name, ustar.REGULAR, 0o600, 0, 0, len(data), mtime))
    out.write(data + ustar.padding(len(data)))


def fullfile_tar(out: BinaryIO, name: str, meta: Meta, content: BinaryIO | None) -> None:
    """Write an uncompressed fullfile tar stream to `out`, streaming a file's content."""
    mode, mtime = stat.S_IMODE(meta.mode), meta.mtime
    if meta.xattrs:
        if stat.S_ISLNK(meta.mode):
            raise FormatError(f"symlink {name} with xattrs")
        _side(out, name + ".xattrs", xattrs.dump(meta.xattrs), mtime)
    if stat.S_ISDIR(meta.mode):
        out.write(ustar.header(name + "/", ustar.DIRECTORY, mode, meta.uid, meta.gid, 0, mtime))
    elif stat.S_ISLNK(meta.mode):
        target = meta.linkname.encode("utf-8", "surrogateescape")
        link = meta.linkname
        if len(target) > LINK_FIELD:
            _side(out, name + ".target", target, mtime)
            link = ""
        out.write(ustar.header(name, ustar.SYMLINK, 0o777, meta.uid, meta.gid, 0, mtime, link))
    elif stat.S_ISREG(meta.mode):
        out.write(ustar.header(name, ustar.REGULAR, mode, meta.uid, meta.gid, meta.size, mtime))
        left = meta.size
        while left and content is not None and (chunk := content.read(min(left, 1 << 20))):
            out.write(chunk)
            left -= len(chunk)
        if left or (content is not None and content.read(1)):
            raise FormatError(f"content of {name} is not the {meta.size} bytes announced")
        out.write(ustar.padding(meta.size))
    else:
        raise FormatError(f"unsupported file type for {name}")
    out.write(ustar.END)


def fullfile(out: BinaryIO, digest: str, meta: Meta, content: BinaryIO | None, codec: str, level: int) -> None:
    """Write a compressed fullfile for `digest` to `out`, streaming the content."""
    if codec == "zstd":
        params = zstandard.ZstdCompressionParameters.from_level(
            level,
            source_size=meta.size + 2048,
            window_log=window_log(meta.size + 2048),
        )
        cctx = zstandard.ZstdCompressor(compression_params=params)
        with cctx.stream_writer(out, size=-1, closefd=False) as zw:
            fullfile_tar(zw, digest, meta, content)  # type: ignore[arg-type]
    elif codec in ("xz", "none"):
        buf = io.BytesIO()
        fullfile_tar(buf, digest, meta, content)
        out.write(compress(buf.getvalue(), codec, level))
    else:
        raise ValueError(f"unknown compression {codec!r}")


def delta_zstd_dict(old: bytes, new: bytes, meta: Meta, level: int = 19) -> bytes:
    d = zstandard.ZstdCompressionDict(old, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    params = zstandard.ZstdCompressionParameters.from_level(
        # The window reaches back over the dictionary to the start of the old file.
        level,
        source_size=len(new),
        window_log=window_log(len(old) + len(new), delta.MAX_WINDOW_LOG),
    )
    payload = zstandard.ZstdCompressor(dict_data=d, compression_params=params).compress(new)
    return delta.pack_header(delta.ZSTD_DICT, len(old), len(new), meta) + payload


def delta_bsdiff(old: bytes, new: bytes, meta: Meta, level: int = 19) -> bytes:
    control, diff, extra = bsdiff4.core.diff(old, new)
    # A small window keeps the device's streaming decoder small; the diff block is mostly
    # zeros and the extra block new bytes, so a larger window gains almost nothing.
    frames = [compress(b, "zstd", level, delta.BSDIFF_WINDOW_LOG) for b in (control, diff, extra)]
    head = delta.pack_header(delta.BSDIFF, len(old), len(new), meta)
    return head + delta.FRAMES.pack(*map(len, frames)) + b"".join(frames)


# By codec number (`delta.CODECS`).
DELTA_ENCODERS = {delta.ZSTD_DICT: delta_zstd_dict, delta.BSDIFF: delta_bsdiff}


def manifest_delta(old: bytes, new: bytes, level: int = 19, limits: Limits = LIMITS) -> bytes:
    """A zstd frame of `new` with `old` as its raw-content dictionary (format/manifestdelta.py)."""
    if not manifestdelta.usable(len(old), len(new), limits):
        raise ValueError("manifests too large for a delta")
    d = zstandard.ZstdCompressionDict(old, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    params = zstandard.ZstdCompressionParameters.from_level(
        level, source_size=len(new), window_log=manifestdelta.window_log(len(old), len(new))
    )
    return zstandard.ZstdCompressor(dict_data=d, compression_params=params).compress(new)
