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
import os
import re
import stat
import tarfile
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
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
_DELTA = re.compile(r"delta/([0-9a-f]{64})-([0-9a-f]{64})\Z")
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


# Members up to this size are imported side by side (decompression, hashing and writing run
# outside the interpreter lock); larger ones one at a time, so memory stays bounded.
_PARALLEL_BYTES = 1 << 20
_BAD_MEMBER = (FormatError, HashMismatchError, SizeLimitError)


class _Importer:
    """Runs member imports on a few threads, keeping results in member order."""

    def __init__(self, out: PackResult, workers: int) -> None:
        self.out = out
        self.workers = workers
        self.pool = ThreadPoolExecutor(workers) if workers > 1 else None
        self.pending: deque[tuple[str, str, Future[None]]] = deque()

    def _count(self, name: str, kind: str, job: Callable[[], None] | Future[None]) -> None:
        try:
            job.result() if isinstance(job, Future) else job()
        except _BAD_MEMBER as e:
            self.out.rejected.append(f"{name}: {e}")
        else:
            if kind == "delta":
                self.out.deltas += 1
            else:
                self.out.objects += 1

    def settle(self, keep: int = 0) -> None:
        while len(self.pending) > keep:
            self._count(*self.pending.popleft())

    def run(self, name: str, kind: str, job: Callable[[], None], small: bool) -> None:
        if self.pool is None or not small:
            self.settle()
            self._count(name, kind, job)
            return
        self.pending.append((name, kind, self.pool.submit(job)))
        self.settle(2 * self.workers)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def _delta_job(store: ObjectStore, old: bytes, blob: bytes, entry: Entry, limits: Limits) -> Callable[[], None]:
    # The result stream keeps what it still needs of the old bytes (zstd-dict a copy as its
    # dictionary); the job lets go of them, so the largest file is not held twice over.
    held = [old]

    def job() -> None:
        meta, new = deltas.open_result(held.pop(), blob, limits)
        if meta.size != entry.size:
            raise SizeLimitError("delta result differs from the signed size")
        store.add(entry.hash, meta, new)

    return job


def import_pack(
    store: ObjectStore,
    src: BinaryIO,
    cap: int,
    wanted: dict[str, Entry],
    source_of: Callable[[str, int], bytes | None],
    limits: Limits = LIMITS,
    workers: int | None = None,
) -> PackResult:
    """Store every wanted object a pack provides; `source_of(hash, cap)` returns the bytes of a
    local object with that hash (for deltas) or None. A bad member is skipped and reported, so
    what it should have provided is fetched as a fullfile afterwards. The archive is read in
    order on this thread; small members are verified and stored on `workers` threads."""
    out = PackResult()
    runner = _Importer(out, workers or min(4, os.cpu_count() or 1))
    # An object a pack offers twice (a member carried over from an earlier pack and a new one)
    # is taken from the first; a second import of it could run beside the first.
    taken: set[str] = set()
    stream = compression.open_decompressed(src, cap)
    try:
        with tarfile.open(fileobj=stream, mode="r|", encoding="utf-8", errors="surrogateescape") as tar:
            for info in tar:
                if not info.isreg():
                    continue
                m = _STAGED.match(info.name)
                if m:
                    entry = wanted.get(m[1])
                    if entry is None or m[1] in taken or store.has(m[1]) or info.size > fullfile_cap(entry.size):
                        continue
                    taken.add(m[1])
                    member = tar.extractfile(info)
                    small = info.size <= _PARALLEL_BYTES
                    data: BinaryIO = io.BytesIO(member.read()) if small and member else member  # type: ignore[assignment]
                    runner.run(info.name, "object", lambda d=data, e=entry: import_fullfile(store, d, e, limits), small)
                    continue
                m = _DELTA.match(info.name)
                if m:
                    entry = wanted.get(m[2])
                    if entry is None or m[2] in taken or store.has(m[2]):
                        continue
                    if entry.size > limits.max_delta_source_bytes:
                        continue
                    if info.size > 2 * entry.size + TAR_OVERHEAD:
                        out.rejected.append(f"{info.name}: larger than its target could need")
                        continue
                    small = entry.size <= _PARALLEL_BYTES
                    if not small:
                        runner.settle()  # the old file and the result of a large delta alone
                    old = source_of(m[1], limits.max_delta_source_bytes)
                    if old is None:
                        continue
                    f = tar.extractfile(info)
                    job = _delta_job(store, old, f.read() if f else b"", entry, limits)
                    del old
                    taken.add(m[2])
                    runner.run(info.name, "delta", job, small)
            runner.settle()
    except tarfile.TarError as e:
        runner.settle()
        out.rejected.append(f"pack is not a valid tar: {e}")
    except (FormatError, SizeLimitError) as e:
        runner.settle()
        out.rejected.append(f"pack unreadable: {e}")
    finally:
        runner.close()
    return out
