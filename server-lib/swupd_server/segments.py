"""Packs written as runs of independent zstd frames, so the next build can copy most of them.

A pack is one tar compressed as a sequence of zstd frames; by zstd's rules the frames read as
one stream, and the device needs nothing special. Each frame between the first (the `delta/`
and `staged/` directory entries) and the last (tar's end-of-archive blocks) holds whole members,
up to 4 MiB of tar.

When a bundle changes, its new pack starts from the same pack of the version before: every
frame of that pack whose members the new pack still needs, but for a small share of waste, is
copied byte for byte (`copy_file_range`); the members left over are compressed into new frames
at the end. A rebuild in which one file changed therefore compresses a few kilobytes instead
of the whole pack, and keeps the ratio of the first full compression. A member the device does
not need is skipped by it, so waste costs only bytes, and is bounded: a frame whose waste
passes `WASTE` is not copied, and what it still holds that is needed is compressed anew.

What a pack's frames hold is read from the published pack; the build cache only remembers it
(checked by the pack's size and modification time), so a build's output depends only on the
tree, the configuration and what `www/` holds.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import zstandard
from swupd.format import layout, ustar
from swupd.format.compression import MAX_WINDOW
from swupd.format.errors import FormatError, SizeLimitError

from . import cachefile, encode

MAX_SEGMENT = 4 * 1024 * 1024
WASTE = 0.03  # share of a copied frame's bytes that may be members the pack does not need
_BLOCK = ustar.BLOCK
_MEMBER_MTIME = 0  # the device ignores member times; a constant keeps frames build-independent
_READ = 1 << 20


@dataclass
class Frame:
    """A frame of a published pack that holds whole members."""

    offset: int
    length: int
    raw: int
    members: dict[str, int] = field(default_factory=dict)  # name -> bytes it takes in the tar


def _header(name: str, size: int) -> bytes:
    # Member names are ASCII and fit ustar's prefix and name fields: no pax record to parse.
    return ustar.header(name, ustar.REGULAR, 0o644, 0, 0, size, _MEMBER_MTIME)


def _members_of(raw: bytes) -> dict[str, int] | None:
    """The members of one frame's tar bytes, read as a device reads them, or None unless it is
    whole pack members only. (Only packs of the same format are read: see History.versions_of.)"""
    members: dict[str, int] = {}
    tar, end = ustar.Reader(raw), 0
    try:
        while end < len(raw):
            m = tar.next(layout.PACK_OBJECT_MEMBERS, {ustar.REGULAR}, len(raw))
            if m is None:
                return None
            members[m.name] = ustar.BLOCK + m.size + (-m.size) % _BLOCK
            end += members[m.name]
    except (FormatError, SizeLimitError):
        return None
    return members if members and end == len(raw) else None


def frames_of(path: str) -> list[Frame]:
    """The member frames of a published pack, in order; [] if it cannot be read as such."""
    frames: list[Frame] = []
    try:
        with open(path, "rb") as f:
            dctx = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW)
            pending, offset = b"", 0
            while True:
                obj, out, used = dctx.decompressobj(), [], 0
                data = pending or f.read(_READ)
                if not data:
                    return frames
                while True:
                    out.append(obj.decompress(data))
                    if obj.eof:
                        pending = obj.unused_data
                        used += len(data) - len(pending)
                        break
                    used += len(data)
                    data = f.read(_READ)
                    if not data:
                        return []
                raw = b"".join(out)
                members = _members_of(raw)
                if members is not None:
                    frames.append(Frame(offset, used, len(raw), members))
                offset += used
    except (OSError, zstandard.ZstdError):
        return []


def _stamp(path: str) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{st.st_size}:{st.st_mtime_ns}"


def _cache_file(cache_dir: str, rel: str) -> str:
    # One record per bundle and source version: the newest pack is the one the next build reads.
    return os.path.join(cache_dir, "packframes", os.path.basename(rel) + ".cache")


def known_frames(www: str, rel: str, cache_dir: str) -> list[Frame]:
    """`frames_of` a published pack, from the build cache when it has the same pack (by size
    and modification time, which publishing keeps) and read from the pack otherwise."""
    path = os.path.join(www, rel)
    stamp = _stamp(path)
    if stamp is None:
        return []
    record = cachefile.load(_cache_file(cache_dir, rel))
    if record.get("pack") == rel and record.get("stamp") == stamp:
        try:
            return [Frame(**f) for f in record["frames"]]
        except (KeyError, TypeError):
            pass
    frames = frames_of(path)
    remember(cache_dir, rel, path, frames)
    return frames


def remember(cache_dir: str, rel: str, path: str, frames: list[Frame]) -> None:
    """Record the frames of a pack just written (or read) for the next build."""
    cachefile.save(
        _cache_file(cache_dir, rel), {"pack": rel, "stamp": _stamp(path), "frames": [vars(f) for f in frames]}
    )


@dataclass
class Plan:
    """Frames to copy from the previous pack, then the members to compress anew."""

    copy: list[Frame]
    fresh: list[list[tuple[str, str]]]


def plan(members: list[tuple[str, str]], previous: list[Frame]) -> Plan:
    """Reuse every previous frame that is mostly still wanted; pack the rest in order."""
    wanted = dict(members)
    copy: list[Frame] = []
    for fr in previous:
        needed = [n for n in fr.members if n in wanted]
        waste = sum(span for n, span in fr.members.items() if n not in wanted)
        if needed and waste <= WASTE * fr.raw:
            copy.append(fr)
            for n in needed:
                del wanted[n]
    fresh: list[list[tuple[str, str]]] = []
    size = MAX_SEGMENT
    for name, src in members:
        if name not in wanted:
            continue
        if size >= MAX_SEGMENT:
            fresh.append([])
            size = 0
        fresh[-1].append((name, src))
        size += os.path.getsize(src) + _BLOCK
    return Plan(copy, fresh)


def tar_bytes(segment: list[tuple[str, str]]) -> tuple[dict[str, int], Iterator[bytes]]:
    """The bytes each member takes in the tar, and the segment's bytes as they are read."""
    sizes = [os.path.getsize(src) for _, src in segment]
    headers = [_header(name, size) for (name, _), size in zip(segment, sizes, strict=True)]
    spans = {name: len(h) + s + (-s) % _BLOCK for (name, _), h, s in zip(segment, headers, sizes, strict=True)}
    return spans, _pieces(segment, sizes, headers)


def _pieces(segment: list[tuple[str, str]], sizes: list[int], headers: list[bytes]) -> Iterator[bytes]:
    for (_, src), size, header in zip(segment, sizes, headers, strict=True):
        yield header
        with open(src, "rb") as f:
            left = size
            while left:
                chunk = f.read(min(left, _READ))
                if not chunk:
                    raise OSError(f"{src} shrank while it was packed")
                left -= len(chunk)
                yield chunk
        yield bytes((-size) % _BLOCK)


def write_frame(out: BinaryIO, pieces: Iterator[bytes] | list[bytes], raw: int, level: int) -> None:
    """One zstd frame of exactly `raw` bytes, its size recorded in the frame header, with a
    window no larger than the frame (the device's decoder holds one window)."""
    params = zstandard.ZstdCompressionParameters.from_level(
        level, source_size=raw, window_log=encode.window_log(raw), enable_ldm=True
    )
    with zstandard.ZstdCompressor(compression_params=params).stream_writer(out, size=raw, closefd=False) as zw:
        for piece in pieces:
            zw.write(piece)
