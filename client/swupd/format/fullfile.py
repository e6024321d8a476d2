"""Fullfiles: one file, directory or symlink as a small plain-ustar tar, then compressed.

The object's member is named by its hash and carries mode, numeric uid/gid and mtime, so
unpacking it reproduces what the hash covers. User and group names are left empty: ids are
numeric everywhere, which avoids the mismatches swupd met when a host mapped names to other
ids. What a plain ustar header cannot hold travels in one regular member before it:
`<hash>.xattrs`, the object's xattrs as the records of `xattrs.py`, or `<hash>.target`, a
symlink's target when it is longer than the 100 bytes of ustar's link name. Symlinks carry no
xattrs, so a fullfile has at most two members, and `tar -x` still unpacks it.

Readers take exactly these names, in this order, with the sizes the caller allows (`ustar.py`);
the server writes them (swupd_server/encode.py).
"""

from __future__ import annotations

import contextlib
import stat
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from . import compression, ustar, xattrs
from .errors import FormatError, SizeLimitError
from .limits import LIMITS, Limits

# Tar framing of an object beside its data: headers, a side member (xattrs or a symlink's
# target), padding, the end blocks and the record padding other tar writers add.
TAR_OVERHEAD = LIMITS.max_xattr_bytes + 16 * 1024
# What a fullfile may have after its end blocks: the zeros that pad a tar to whole records.
_MAX_TRAILER = 10240
# ustar's link name field: a longer symlink target travels in a `.target` member.
LINK_FIELD = 100


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


_ALL_TYPES = frozenset({ustar.REGULAR, ustar.DIRECTORY, ustar.SYMLINK})


def read_object(
    tar: ustar.Reader, digest: str, types: Collection[str], max_size: int, limits: Limits = LIMITS
) -> tuple[Meta, BinaryIO | None]:
    """Read a fullfile's members up to the object's data: its metadata, and for a regular file
    its content as a stream of exactly its size (the caller reads it, then calls `finish`).
    `types` are the ustar types the object may have; `max_size` caps a file's bytes and a
    symlink's target. Checks names, types, order and sizes, not the hash. Errors name what is
    wrong, not the fullfile: the caller does."""
    types = frozenset(types)
    obj = {digest, digest + "/"}
    side = {digest + ".xattrs"} if types != {ustar.SYMLINK} else set()
    if ustar.SYMLINK in types and max_size > LINK_FIELD:
        side.add(digest + ".target")
    cap = max(max_size, limits.max_xattr_bytes if digest + ".xattrs" in side else 0)
    h = tar.next(obj | side, types | ({ustar.REGULAR} if side else set()), cap)
    if h is None:
        raise FormatError("holds no member")
    found: dict[str, bytes] = {}
    target = None
    if h.name == digest + ".xattrs":
        if h.type != ustar.REGULAR or not 0 < h.size <= limits.max_xattr_bytes:
            raise SizeLimitError("carries too many xattrs")
        found = xattrs.load(tar.read())
        h = tar.next(obj, types - {ustar.SYMLINK}, max_size)
    elif h.name == digest + ".target":
        if h.type != ustar.REGULAR or not LINK_FIELD < h.size <= min(max_size, limits.max_path_bytes):
            raise FormatError("holds a malformed symlink target")
        target = tar.read()
        if b"\0" in target:
            raise FormatError("holds a malformed symlink target")
        h = tar.next({digest}, {ustar.SYMLINK}, 0)
    if h is None or h.type not in types:
        raise FormatError("does not hold its own member")
    if h.size > max_size:
        raise SizeLimitError("larger than its signed size")
    if h.type == ustar.SYMLINK:
        if target is not None:
            if h.linkname:
                raise FormatError("gives its symlink two targets")
            link = target.decode("utf-8", "surrogateescape")
        else:
            link = h.linkname
        if not link:
            raise FormatError("holds a symlink without a target")
        if len(link.encode("utf-8", "surrogateescape")) > max_size:
            raise SizeLimitError("symlink target longer than its signed size")
        return Meta(stat.S_IFLNK | 0o777, h.uid, h.gid, h.mtime, 0, link), None
    if h.type == ustar.DIRECTORY:
        return Meta(stat.S_IFDIR | stat.S_IMODE(h.mode), h.uid, h.gid, h.mtime, 0, "", found), None
    meta = Meta(stat.S_IFREG | stat.S_IMODE(h.mode), h.uid, h.gid, h.mtime, h.size, "", found)
    return meta, tar.content()


def finish(tar: ustar.Reader, digest: str) -> None:
    """After the object: the end of the archive, and nothing but tar's padding after it."""
    if tar.next((), (), 0) is not None:
        raise FormatError("holds more than one object")
    tar.trailer(_MAX_TRAILER)


def read(src: BinaryIO, digest: str, max_size: int, types: Collection[str] = _ALL_TYPES) -> tuple[Meta, bytes]:
    """Read a fullfile whole; checks its members' names, types and sizes, not its hash."""
    stream = compression.open_decompressed(src, max_size + TAR_OVERHEAD)
    tar = ustar.Reader(stream)
    with named(f"fullfile {digest}"):
        meta, content = read_object(tar, digest, types, max_size)
        data = content.read() if content is not None else b""
        finish(tar, digest)
    return meta, data


@contextlib.contextmanager
def named(what: str) -> Iterator[None]:
    """Errors met reading a fullfile, with the fullfile named in front."""
    try:
        yield
    except (FormatError, SizeLimitError) as e:
        raise type(e)(f"{what}: {e}") from None
