"""Turning downloaded fullfiles and packs into verified objects.

Archives are read member by member from a bounded decompressing stream; `extractall` is never
used. Only members that are expected are looked at: a fullfile must hold exactly one member,
named by the hash the manifest asks for, of the type the manifest says, no larger than its
signed size; links, devices and anything else in an archive header are refused, never created.
A delta is applied only against a source whose hash is known, and its result is stored only if
it hashes to its name. Nothing here writes outside the object store.
"""

from __future__ import annotations

import io
import re
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from swupd.format import compression
from swupd.format import delta as deltas
from swupd.format.errors import FormatError, HashMismatchError, SizeLimitError
from swupd.format.fullfile import TAR_OVERHEAD, Meta
from swupd.format.limits import LIMITS, Limits
from swupd.format.manifest import Entry, Type

from .objects import ObjectStore

_STAGED = re.compile(r"staged/([0-9a-f]{64})\.tar\Z")
_DELTA = re.compile(r"delta/([0-9a-f]{64})/([0-9a-f]{64})\Z")
_PLAIN = (tarfile.REGTYPE, tarfile.AREGTYPE)  # members with their data right after the header
_TYPES = {Type.FILE: tarfile.REGTYPE, Type.DIRECTORY: tarfile.DIRTYPE, Type.SYMLINK: tarfile.SYMTYPE}


def fullfile_cap(size: int) -> int:
    """Largest a compressed fullfile of a `size`-byte object may be (incompressible data grows
    slightly under zstd and xz)."""
    return size + size // 64 + TAR_OVERHEAD


def import_fullfile(store: ObjectStore, src: BinaryIO, entry: Entry, limits: Limits = LIMITS) -> None:
    """Verify one fullfile stream against its manifest entry and store the object."""
    stream = compression.open_decompressed(src, entry.size + TAR_OVERHEAD)
    try:
        with tarfile.open(fileobj=stream, mode="r|", encoding="utf-8", errors="surrogateescape") as tar:
            info = tar.next()
            if info is None or info.name.rstrip("/") != entry.hash:
                raise FormatError(f"fullfile for {entry.path} does not hold its own member")
            if info.type != _TYPES.get(entry.type) and not (entry.type == Type.FILE and info.type == tarfile.AREGTYPE):
                raise FormatError(f"fullfile for {entry.path} holds a {info.type!r} member, expected {entry.type.name}")
            if info.isreg() and info.size != entry.size:
                raise SizeLimitError(f"fullfile for {entry.path} is {info.size} bytes, the manifest says {entry.size}")
            xattrs = {
                k[len("SCHILY.xattr.") :]: v.encode("utf-8", "surrogateescape")
                for k, v in info.pax_headers.items()
                if k.startswith("SCHILY.xattr.")
            }
            if sum(len(k) + len(v) for k, v in xattrs.items()) > limits.max_xattr_bytes:
                raise SizeLimitError(f"fullfile for {entry.path} carries too many xattrs")
            if info.issym():
                meta = Meta(stat.S_IFLNK | 0o777, info.uid, info.gid, 0, 0, info.linkname)
                store.add(entry.hash, meta, None)
            elif info.isdir():
                store.add(entry.hash, Meta(stat.S_IFDIR | info.mode, info.uid, info.gid, xattrs=xattrs), None)
            else:
                meta = Meta(stat.S_IFREG | info.mode, info.uid, info.gid, int(info.mtime), info.size, "", xattrs)
                store.add(entry.hash, meta, tar.extractfile(info))
            if tar.next() is not None:
                raise FormatError(f"fullfile for {entry.path} holds more than one member")
    except tarfile.TarError as e:
        raise FormatError(f"fullfile for {entry.path} is not a valid tar: {e}") from None


@dataclass
class PackResult:
    objects: int = 0
    deltas: int = 0
    rejected: list[str] = field(default_factory=list)


_BAD_MEMBER = (FormatError, HashMismatchError, SizeLimitError)


# Delta results up to this size are made whole (one call; hashed before anything is written);
# larger ones are streamed, so the largest file is not held twice over.
_WHOLE_RESULT = 1 << 20


def _import_delta(store: ObjectStore, held: list[bytes], blob: bytes, entry: Entry, limits: Limits) -> None:
    if entry.size <= _WHOLE_RESULT:
        meta, whole = deltas.apply(held.pop(), blob, limits)
        if meta.size != entry.size:
            raise SizeLimitError("delta result differs from the signed size")
        store.add(entry.hash, meta, whole)
        return
    # The result stream keeps what it still needs of the old bytes (zstd-dict a copy as its
    # dictionary); `held` hands them over.
    meta, new = deltas.open_result(held.pop(), blob, limits)
    if meta.size != entry.size:
        raise SizeLimitError("delta result differs from the signed size")
    store.add(entry.hash, meta, new)


def import_pack(
    store: ObjectStore,
    src: BinaryIO,
    cap: int,
    wanted: dict[str, Entry],
    source_of: Callable[[str, int], bytes | None],
    limits: Limits = LIMITS,
    claim: Callable[[int], bool] | None = None,
) -> PackResult:
    """Store every wanted object a pack provides; `source_of(hash, cap)` returns the bytes of a
    local object with that hash (for deltas) or None. A bad member is skipped and reported, so
    what it should have provided is fetched as a fullfile afterwards. `src` is a seekable file.
    A pack that unpacks to at most `limits.max_pack_in_memory` is unpacked whole and its
    members sliced out, which costs less than streaming them; a larger one is streamed.

    With `claim`, a file member (counted from 0) is looked at only if `claim(index)` is true,
    so several processes can split a pack (see store/parallel.py); threads would not help,
    since the work per member is short and mostly interpreted and they would only contend for
    the interpreter lock."""
    out = PackResult()
    index = -1
    try:
        whole = compression.read_small(src, min(cap, limits.max_pack_in_memory))
        if whole is None:
            src.seek(0)
            stream = compression.open_decompressed(src, cap)
            tar = tarfile.open(fileobj=stream, mode="r|", encoding="utf-8", errors="surrogateescape")
        else:
            tar = tarfile.open(fileobj=io.BytesIO(whole), mode="r:", encoding="utf-8", errors="surrogateescape")
        with tar:
            for info in tar:
                if info.type not in _PLAIN:
                    continue
                index += 1
                if claim is not None and not claim(index):
                    continue
                name = info.name
                try:
                    if _import_member(store, tar, info, whole, wanted, source_of, limits):
                        if name.startswith("delta/"):
                            out.deltas += 1
                        else:
                            out.objects += 1
                except _BAD_MEMBER as e:
                    out.rejected.append(f"{name}: {e}")
    except tarfile.TarError as e:
        out.rejected.append(f"pack is not a valid tar: {e}")
    except (FormatError, SizeLimitError) as e:
        out.rejected.append(f"pack unreadable: {e}")
    return out


def _content(tar: tarfile.TarFile, info: tarfile.TarInfo, whole: bytes | None) -> BinaryIO:
    """A member's data: sliced from the unpacked pack when there is one, else streamed."""
    if whole is None:
        return tar.extractfile(info) or io.BytesIO()
    end = info.offset_data + info.size
    if end > len(whole):
        raise FormatError("cut short")
    return io.BytesIO(whole[info.offset_data : end])


def _import_member(
    store: ObjectStore,
    tar: tarfile.TarFile,
    info: tarfile.TarInfo,
    whole: bytes | None,
    wanted: dict[str, Entry],
    source_of: Callable[[str, int], bytes | None],
    limits: Limits,
) -> bool:
    """Import one pack member if it provides a wanted object this process has not stored yet;
    True if it did. (`wanted` holds only objects missing from the store when the import began;
    another process meeting the same object twice in a pack just replaces it by its equal.)"""
    m = _STAGED.match(info.name)
    if m:
        entry = wanted.get(m[1])
        if entry is None or m[1] in store.fresh or info.size > fullfile_cap(entry.size):
            return False
        import_fullfile(store, _content(tar, info, whole), entry, limits)
        return True
    m = _DELTA.match(info.name)
    if not m:
        return False
    entry = wanted.get(m[2])
    if entry is None or m[2] in store.fresh or entry.size > limits.max_delta_source_bytes:
        return False
    if info.size > 2 * entry.size + TAR_OVERHEAD:
        raise FormatError("larger than its target could need")
    old = source_of(m[1], limits.max_delta_source_bytes)
    if old is None:
        return False
    blob = _content(tar, info, whole).read()
    held = [old]
    del old
    _import_delta(store, held, blob, entry, limits)
    return True
