"""Fullfiles: one file, directory or symlink as a single-member tar, then compressed.

The member is named by the object's hash and carries mode, numeric uid/gid, mtime and xattrs
(as `SCHILY.xattr.*` pax records), so unpacking it reproduces exactly what the hash covers.
User and group names are left empty: ids are numeric everywhere, which avoids the mismatches
swupd met when a host mapped names to other ids.
"""

from __future__ import annotations

import io
import stat
import tarfile
from dataclasses import dataclass, field
from typing import BinaryIO

import zstandard

from . import compression
from .errors import FormatError, SizeLimitError

# Tar framing for one member: header, pax records, padding and the two end blocks.
TAR_OVERHEAD = 64 * 1024


@dataclass
class Meta:
    """What a fullfile records about its object besides the content."""

    mode: int
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    size: int = 0
    linkname: str = ""
    xattrs: dict[str, bytes] = field(default_factory=dict)


def tarinfo(name: str, meta: Meta) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(meta.mode)
    info.uid, info.gid = meta.uid, meta.gid
    info.uname = info.gname = ""
    info.mtime = meta.mtime
    if stat.S_ISDIR(meta.mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(meta.mode):
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, meta.linkname, 0o777
    elif stat.S_ISREG(meta.mode):
        info.type, info.size = tarfile.REGTYPE, meta.size
    else:
        raise FormatError(f"unsupported file type for {name}")
    if meta.xattrs:
        info.pax_headers = {
            "SCHILY.xattr." + k: v.decode("utf-8", "surrogateescape") for k, v in sorted(meta.xattrs.items())
        }
    return info


def write_tar(out: BinaryIO, name: str, meta: Meta, content: BinaryIO | None) -> None:
    """Write an uncompressed single-member tar stream to `out`."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar:
        tar.addfile(tarinfo(name, meta), content)


def write(out: BinaryIO, digest: str, meta: Meta, content: BinaryIO | None, codec: str, level: int) -> None:
    """Write a compressed fullfile for `digest` to `out`, streaming the content."""
    if codec == "zstd":
        params = zstandard.ZstdCompressionParameters.from_level(
            level,
            source_size=meta.size + 2048,
            window_log=min(23, max(10, (meta.size + 2048).bit_length())),
        )
        cctx = zstandard.ZstdCompressor(compression_params=params)
        with cctx.stream_writer(out, size=-1, closefd=False) as zw:
            write_tar(zw, digest, meta, content)  # type: ignore[arg-type]
    elif codec in ("xz", "none"):
        buf = io.BytesIO()
        write_tar(buf, digest, meta, content)
        out.write(compression.compress(buf.getvalue(), codec, level))
    else:
        raise ValueError(f"unknown compression {codec!r}")


def read(src: BinaryIO, digest: str, max_size: int) -> tuple[Meta, bytes]:
    """Read a fullfile whole; checks the single member's name and type, not its hash."""
    stream = compression.open_decompressed(src, max_size + TAR_OVERHEAD)
    try:
        with tarfile.open(fileobj=stream, mode="r|", encoding="utf-8", errors="surrogateescape") as tar:
            info = tar.next()
            if info is None or info.name.rstrip("/") != digest:
                raise FormatError(f"fullfile {digest} does not hold its own member")
            meta = Meta(
                mode=_mode(info),
                uid=info.uid,
                gid=info.gid,
                mtime=int(info.mtime),
                size=info.size,
                linkname=info.linkname if info.issym() else "",
                xattrs={
                    k[len("SCHILY.xattr.") :]: v.encode("utf-8", "surrogateescape")
                    for k, v in info.pax_headers.items()
                    if k.startswith("SCHILY.xattr.")
                },
            )
            if info.size > max_size:
                raise SizeLimitError(f"fullfile {digest} larger than its signed size")
            data = b""
            if info.isreg():
                f = tar.extractfile(info)
                data = f.read() if f else b""
            if tar.next() is not None:
                raise FormatError(f"fullfile {digest} holds more than one member")
    except tarfile.TarError as e:
        raise FormatError(f"fullfile {digest} is not a valid tar: {e}") from None
    return meta, data


def _mode(info: tarfile.TarInfo) -> int:
    if info.isdir():
        return stat.S_IFDIR | info.mode
    if info.issym():
        return stat.S_IFLNK | 0o777
    if info.isreg():
        return stat.S_IFREG | info.mode
    raise FormatError(f"fullfile member {info.name} has a forbidden type")
