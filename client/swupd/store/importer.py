"""Turning downloaded fullfiles and packs into verified objects.

Archives are read member by member with the project's own plain-ustar reader (`ustar.py`),
from a bounded decompressing stream or from bytes in memory; no general tar parser is used.
Only members that are expected are looked at: a fullfile must hold exactly the members its
layout allows, named by the hash the manifest asks for, of the type the manifest says, no
larger than its signed size; a pack only its two directories, fullfiles and deltas. A header
of any other name or type (links, devices, pax or GNU records) ends the reading of the archive
before its data is read. A delta is applied only against a source whose hash is known, and its
result is stored only if it hashes to its name. Nothing here writes outside the object store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from swupd.format import compression, fullfile, layout, ustar
from swupd.format import delta as deltas
from swupd.format.errors import FormatError, HashMismatchError, SizeLimitError
from swupd.format.fullfile import TAR_OVERHEAD
from swupd.format.limits import LIMITS, Limits
from swupd.format.manifest import Entry, Type

from .objects import ObjectStore

# The types a pack's members may have.
_PACK_TYPES = frozenset({ustar.REGULAR, ustar.DIRECTORY})
_TYPES = {Type.FILE: {ustar.REGULAR}, Type.DIRECTORY: {ustar.DIRECTORY}, Type.SYMLINK: {ustar.SYMLINK}}


def fullfile_cap(size: int) -> int:
    """Largest a compressed fullfile of a `size`-byte object may be (incompressible data grows
    slightly under zstd and xz)."""
    return size + size // 64 + TAR_OVERHEAD


def import_fullfile(store: ObjectStore, src: BinaryIO, entry: Entry, limits: Limits = LIMITS) -> None:
    """Verify one fullfile stream against its manifest entry and store the object."""
    types = _TYPES.get(entry.type)
    if types is None:
        raise FormatError(f"no fullfile for {entry.path}, which is not a file, directory or symlink")
    tar = ustar.Reader(compression.open_decompressed(src, entry.size + TAR_OVERHEAD))
    with fullfile.named(f"fullfile for {entry.path}"):
        meta, content = fullfile.read_object(tar, entry.hash, types, entry.size, limits)
        size = len(meta.linkname.encode("utf-8", "surrogateescape")) if entry.type == Type.SYMLINK else meta.size
        if size != entry.size:
            raise SizeLimitError(f"{size} bytes, the manifest says {entry.size}")
        if entry.type != Type.FILE:
            meta.mtime = 0
        store.add(entry.hash, meta, content)
        fullfile.finish(tar, entry.hash)


@dataclass
class PackResult:
    objects: int = 0
    deltas: int = 0
    rejected: list[str] = field(default_factory=list)
    # Each file member that stored an object or was refused, by its index among the pack's
    # files: its name, or its name and the refusal. Several processes' results are put together
    # from these (see parallel.py).
    stored: dict[int, str] = field(default_factory=dict)
    refused: dict[int, tuple[str, str]] = field(default_factory=dict)


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
    name = ""
    try:
        whole = compression.read_small(src, min(cap, limits.max_pack_in_memory))
        if whole is None:
            src.seek(0)
            tar = ustar.Reader(compression.open_decompressed(src, cap))
        else:
            tar = ustar.Reader(whole)
        while (member := tar.next(layout.PACK_MEMBERS, _PACK_TYPES, cap)) is not None:
            name = member.name
            if member.type != ustar.REGULAR:
                continue
            index += 1
            if claim is not None and not claim(index):
                continue
            try:
                if _import_member(store, tar, member, wanted, source_of, limits):
                    out.stored[index] = name
                    if name.startswith(layout.PACK_DELTA_DIR):
                        out.deltas += 1
                    else:
                        out.objects += 1
            except _BAD_MEMBER as e:
                out.rejected.append(f"{name}: {e}")
                out.refused[index] = (name, out.rejected[-1])
    except (FormatError, SizeLimitError) as e:
        where = f" after {name}" if name else ""
        out.rejected.append(f"pack unreadable{where}: {e}")
    return out


def _import_member(
    store: ObjectStore,
    tar: ustar.Reader,
    member: ustar.Header,
    wanted: dict[str, Entry],
    source_of: Callable[[str, int], bytes | None],
    limits: Limits,
) -> bool:
    """Import one pack member if it provides a wanted object this process has not stored yet;
    True if it did. (`wanted` holds only objects missing from the store when the import began;
    another process meeting the same object twice in a pack just replaces it by its equal.)"""
    m = layout.PACK_FULLFILE_MEMBER.match(member.name)
    if m:
        entry = wanted.get(m[1])
        if entry is None or m[1] in store.fresh:
            return False
        if member.size > fullfile_cap(entry.size):
            raise SizeLimitError("larger than its object's fullfile could be")
        import_fullfile(store, tar.content(), entry, limits)
        return True
    m = layout.PACK_DELTA_MEMBER.match(member.name)
    if not m:
        return False
    entry = wanted.get(m[2])
    if entry is None or m[2] in store.fresh or entry.size > limits.max_delta_source_bytes:
        return False
    # The build keeps a delta only if it is smaller than the object's fullfile.
    if member.size > fullfile_cap(entry.size):
        raise SizeLimitError("larger than its object's fullfile could be")
    old = source_of(m[1], limits.max_delta_source_bytes)
    if old is None:
        return False
    blob = tar.read()
    held = [old]
    del old
    _import_delta(store, held, blob, entry, limits)
    return True
