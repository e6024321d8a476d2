"""Fullfiles, deltas and packs read as docs/format.md describes them.

Only Python's tarfile (to read what the device reads with its own parser), zstandard and
bsdiff4.core's patch: each reader checks the documented limits and forms as it goes.
"""

from __future__ import annotations

import io
import re
import stat
import struct
import tarfile
from dataclasses import dataclass

import bsdiff4.core
import zstandard

from .filehash import FormatViolation, check, parse_xattr_records
from .objects import Obj

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# magic, codec, old size, new size, mode, uid, gid, length of the xattr records
DELTA_HEADER = struct.Struct("<8sBQQIIII")
_STAGED = re.compile(r"staged/([0-9a-f]{64})\.tar\Z")
_DELTA = re.compile(r"delta/([0-9a-f]{64})/([0-9a-f]{64})\Z")


def unzstd(blob: bytes) -> bytes:
    """All frames of a zstd stream, decompressed."""
    check(blob.startswith(ZSTD_MAGIC), "not a zstd stream")
    with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(blob), read_across_frames=True) as r:
        return r.read()


def read_fullfile(blob: bytes, digest: str) -> Obj:
    """A fullfile: a zstd-compressed plain-ustar tar. Its object is the member named by the
    hash; before it, `<hash>.xattrs` (0600, root) holds the xattr records when there are any,
    or `<hash>.target` a symlink's target when it passes 100 bytes."""
    raw = unzstd(blob)
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:", encoding="utf-8", errors="surrogateescape") as tar:
        members = tar.getmembers()
        for m in members:
            check(not m.pax_headers, f"fullfile {digest}: member {m.name!r} has a pax header")
            check(m.uname == "" and m.gname == "", f"fullfile {digest} carries user/group names")
            header = raw[m.offset : m.offset + 512]
            check(header[257:265] == b"ustar\x0000", f"fullfile {digest}: a header that is not plain ustar")
        check(1 <= len(members) <= 2, f"fullfile {digest} holds {len(members)} members")
        m = members[-1]
        check(m.name == digest, f"fullfile {digest} holds member {m.name!r}")
        xattrs: dict[bytes, bytes] = {}
        link = m.linkname.encode("utf-8", "surrogateescape")
        if len(members) == 2:
            side = members[0]
            check(side.isreg() and (side.mode, side.uid, side.gid) == (0o600, 0, 0), f"fullfile {digest}: side member")
            data = tar.extractfile(side).read()  # type: ignore[union-attr]
            if side.name == digest + ".xattrs":
                check(not m.issym() and bool(data), f"fullfile {digest}: xattrs for a symlink, or none")
                xattrs = parse_xattr_records(data, f"fullfile {digest}")
            else:
                check(side.name == digest + ".target", f"fullfile {digest} holds member {side.name!r}")
                check(m.issym() and link == b"" and len(data) > 100, f"fullfile {digest}: misplaced target")
                link = data
        common = {"uid": m.uid, "gid": m.gid, "xattrs": xattrs, "mtime_ns": int(m.mtime) * 1_000_000_000}
        if m.isreg():
            f = tar.extractfile(m)
            data = f.read() if f else b""
            check(len(data) == m.size, f"fullfile {digest} is truncated")
            return Obj("F", m.mode, data=data, **common)
        if m.isdir():
            return Obj("D", m.mode, **common)
        if m.issym():
            check(len(link) <= 100 or len(members) == 2, f"fullfile {digest}: long target in a link name")
            return Obj("L", 0o777, link=link, **common)
    raise FormatViolation(f"fullfile {digest} holds a member of forbidden type {m.type!r}")


@dataclass
class Delta:
    codec: int  # 1: zstd with the old file as dictionary; 2: bsdiff with zstd-compressed blocks
    old_size: int
    new_size: int
    mode: int
    uid: int
    gid: int
    xattrs: dict[bytes, bytes]
    payload: bytes


def parse_delta(blob: bytes) -> Delta:
    """A delta's header and xattr records, checked against the documented bounds."""
    check(len(blob) >= DELTA_HEADER.size, "delta shorter than its header")
    magic, codec, old_size, new_size, mode, uid, gid, xlen = DELTA_HEADER.unpack_from(blob)
    check(magic == b"SWDELTA1", "delta without the SWDELTA1 magic")
    check(codec in (1, 2), f"delta of unknown codec {codec}")
    check(stat.S_ISREG(mode), "delta target is not a regular file")
    # What a device holds while applying one is bounded (docs/format.md, "Deltas").
    if codec == 1:
        check(old_size + new_size <= 10 << 20, "zstd-dict delta for files of over 10 MiB together")
    else:
        check(max(old_size, new_size) <= 8 << 20, "bsdiff delta for a file of over 8 MiB")
    end = DELTA_HEADER.size + xlen
    check(end <= len(blob), "delta xattr records truncated")
    xattrs = parse_xattr_records(blob[DELTA_HEADER.size : end], "delta")
    return Delta(codec, old_size, new_size, mode, uid, gid, xattrs, blob[end:])


def apply_delta(old: bytes, blob: bytes) -> Obj:
    """The file a delta makes of `old`."""
    d = parse_delta(blob)
    check(len(old) == d.old_size, f"delta made against {d.old_size} bytes, applied to {len(old)}")
    if d.codec == 1:
        size = zstandard.get_frame_parameters(d.payload).content_size
        check(size == d.new_size, "zstd-dict frame size differs from the target size")
        dictionary = zstandard.ZstdCompressionDict(old, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        new = zstandard.ZstdDecompressor(dict_data=dictionary, max_window_size=1 << 30).decompress(d.payload)
    else:
        check(len(d.payload) >= 24, "bsdiff payload without its frame lengths")
        lengths = struct.unpack_from("<QQQ", d.payload)
        check(24 + sum(lengths) == len(d.payload), "bsdiff frames do not add up to the payload")
        blocks, pos = [], 24
        for n in lengths:
            frame = d.payload[pos : pos + n]
            check(zstandard.get_frame_parameters(frame).window_size <= 1 << 20, "bsdiff frame window over 1 MiB")
            blocks.append(zstandard.ZstdDecompressor().decompressobj().decompress(frame))
            pos += n
        control, diff, extra = blocks
        check(len(control) % 24 == 0, "bsdiff control block not made of 24-byte records")
        new = bsdiff4.core.patch(old, d.new_size, control, diff, extra)
    check(len(new) == d.new_size, "delta produced the wrong size")
    return Obj("F", stat.S_IMODE(d.mode), d.uid, d.gid, new, xattrs=d.xattrs)


def pack_frames(blob: bytes) -> list[bytes]:
    """A pack's zstd frames, each checked for a window of at most 8 MiB and no larger than
    the frame's content, decompressed."""
    frames, pos = [], 0
    while pos < len(blob):
        params = zstandard.get_frame_parameters(blob[pos : pos + 18])
        obj = zstandard.ZstdDecompressor(max_window_size=1 << 30).decompressobj()
        out = obj.decompress(blob[pos:])
        check(obj.eof, "pack ends inside a zstd frame")
        window = params.window_size
        check(window <= min(8 << 20, max(len(out), 1024)), f"pack frame of {len(out)} bytes, window {window}")
        frames.append(out)
        pos = len(blob) - len(obj.unused_data)
    return frames


def read_pack(path: str) -> dict[str, bytes]:
    """Members of a pack by name: a tar, compressed whole or as zstd frames."""
    with open(path, "rb") as f:
        blob = f.read()
    if blob.startswith(ZSTD_MAGIC):
        blob = b"".join(pack_frames(blob))
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:") as tar:
        for m in tar:
            check(not m.pax_headers, f"pack {path}: member {m.name!r} has a pax header (the spec says ustar)")
            header = blob[m.offset : m.offset + 512]
            check(header[257:265] == b"ustar\x0000", f"pack {path}: a header that is not plain ustar")
            if m.isdir():
                check(m.name in ("delta", "staged"), f"pack {path}: unexpected directory {m.name!r}")
                continue
            check(m.isreg(), f"pack {path}: member {m.name!r} is not a regular file")
            check(bool(_STAGED.match(m.name) or _DELTA.match(m.name)), f"pack {path}: bad member name {m.name!r}")
            check(m.name not in out, f"pack {path}: member {m.name!r} twice")
            f = tar.extractfile(m)
            out[m.name] = f.read() if f else b""
    return out


def staged_hash(name: str) -> str | None:
    """The hash a pack member `staged/<hash>.tar` holds the fullfile of, else None."""
    m = _STAGED.match(name)
    return m.group(1) if m else None


def delta_hashes(name: str) -> tuple[str, str] | None:
    """(from, to) of a pack member `delta/<from>/<to>`, else None."""
    m = _DELTA.match(name)
    return (m.group(1), m.group(2)) if m else None
