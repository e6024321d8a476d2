"""Reading a root file system into hashed items.

Walks the tree without following symlinks, records type, mode, ownership, size and hashed
xattrs of every object, and hashes regular files in worker processes. Only metadata is kept in
memory; contents are streamed. Device nodes, sockets and FIFOs cannot be expressed in the
format and are refused by name rather than dropped.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from swupd.format import filehash, osrelease, ustar
from swupd.format import xattrs as xattr_records
from swupd.format.errors import BuildError, FormatError, UsageError
from swupd.format.fullfile import Meta
from swupd.format.limits import LIMITS
from swupd.format.manifest import Type
from swupd.format.paths import check_path, parents

from . import cachefile, workers
from .progress import Progress

# Recorded with the scan stamps: hashes kept under another way of hashing (xattrs once entered
# the hash NUL-terminated) are not reused.
_HASHING = "xattr-records"


@dataclass
class Item:
    """One object of the tree: where its bytes come from and what its hash is."""

    path: str
    mode: int
    uid: int
    gid: int
    size: int
    mtime: int
    linkname: str = ""
    source: str = ""
    data: bytes | None = None
    xattrs: dict[str, bytes] = field(default_factory=dict)
    hash: str = ""
    # Inode, size, times, mode and owner as one string: the scan cache compares it whole.
    stamp: str = ""

    @property
    def type(self) -> Type:
        if stat.S_ISDIR(self.mode):
            return Type.DIRECTORY
        if stat.S_ISLNK(self.mode):
            return Type.SYMLINK
        return Type.FILE

    @property
    def entry_size(self) -> int:
        """Size as the manifest records it: bytes of a file, length of a link target."""
        if stat.S_ISDIR(self.mode):
            return 0
        if stat.S_ISLNK(self.mode):
            return len(os.fsencode(self.linkname))
        return self.size

    def meta(self, clamp: int) -> Meta:
        # Times before 1970 as 0: ustar's time field is unsigned, and the hash leaves times out.
        mtime = max(0, min(self.mtime, clamp))
        return Meta(self.mode, self.uid, self.gid, mtime, self.size, self.linkname, self.xattrs)


def _stamp(st: os.stat_result) -> str:
    fields = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode, st.st_uid, st.st_gid)
    return " ".join(map(str, fields))


def _walk(root: str) -> tuple[list[Item], list[str]]:
    items: list[Item] = []
    special: list[str] = []
    stack = [("", root)]
    while stack:
        rel, host = stack.pop()
        try:
            entries = sorted(os.scandir(host), key=lambda e: os.fsencode(e.name))
        except OSError as e:
            raise BuildError(f"cannot read directory {host}: {e.strerror}") from None
        for de in entries:
            path = f"{rel}/{de.name}"
            st = de.stat(follow_symlinks=False)
            mode = st.st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
                special.append(path)
                continue
            try:
                check_path(path)
            except FormatError as e:
                raise BuildError(f"unusable path in rootfs: {e}") from None
            if max(st.st_uid, st.st_gid) > ustar.MAX_ID or st.st_size > ustar.MAX_SIZE:
                raise BuildError(f"{path}: owner ids or size beyond what a fullfile's ustar header holds")
            item = Item(path, mode, st.st_uid, st.st_gid, st.st_size, int(st.st_mtime), source=de.path)
            item.stamp = _stamp(st)
            if stat.S_ISLNK(mode):
                item.linkname = os.fsdecode(os.readlink(de.path))
                item.size = 0
            elif stat.S_ISDIR(mode):
                item.size = 0
                stack.append((path, de.path))
            items.append(item)
    return items, special


@dataclass(frozen=True, slots=True)
class HashJob:
    """One object for a worker process to hash: where it is and what the hash covers besides
    its bytes."""

    source: str
    mode: int
    uid: int
    gid: int
    size: int
    linkname: str

    @classmethod
    def of(cls, item: Item) -> HashJob:
        return cls(item.source, item.mode, item.uid, item.gid, item.size, item.linkname)


def _hash_one(job: HashJob) -> tuple[str, dict[str, bytes]]:
    source, mode, uid, gid, size, linkname = job.source, job.mode, job.uid, job.gid, job.size, job.linkname
    if stat.S_ISLNK(mode):
        return filehash.hash_symlink(linkname, uid, gid), {}
    xattrs = filehash.read_xattrs(source)
    if stat.S_ISDIR(mode):
        return filehash.hash_directory(mode, uid, gid, xattrs), xattrs
    with open(source, "rb") as f:
        return filehash.hash_stream(f, size, mode, uid, gid, xattrs), xattrs


def rehash(item: Item) -> None:
    """Hash an item whose content is given in memory."""
    if item.data is not None:
        item.size = len(item.data)
        item.hash = filehash.hash_bytes(item.data, item.mode, item.uid, item.gid, item.xattrs)
    else:
        item.hash, item.xattrs = _hash_one(HashJob.of(item))


def _save_stamps(path: str | None, items: list[Item]) -> None:
    # Each stamp is one string, compared whole when the cache is read on the next build.
    data = {
        i.path: [i.stamp, i.hash, {k: v.hex() for k, v in i.xattrs.items()}] if i.xattrs else [i.stamp, i.hash]
        for i in items
        if i.stamp
    }
    data[""] = _HASHING
    cachefile.save(path, data)


def scan(root: str, jobs: int, cache_path: str | None = None, progress: Progress | None = None) -> dict[str, Item]:
    """All objects below `root` (the root directory itself excluded), hashed, by path.

    With `cache_path`, an object whose inode, size, mtime, ctime, mode and owner are exactly as
    recorded by the previous scan keeps its recorded hash (as git's index does); any change to
    content or xattrs changes ctime, so nothing stale is reused."""
    if not os.path.isdir(root):
        raise UsageError(f"rootfs is not a directory: {root}")
    items, special = _walk(root)
    if special:
        shown = ", ".join(special[:10]) + (f" and {len(special) - 10} more" if len(special) > 10 else "")
        raise BuildError(f"rootfs holds device nodes, sockets or FIFOs, which updates cannot carry: {shown}")
    known = cachefile.load(cache_path)
    if known.get("") != _HASHING:
        known = {}
    todo = []
    for item in items:
        rec = known.get(item.path)
        if isinstance(rec, list) and 2 <= len(rec) <= 3 and rec[0] == item.stamp:
            item.hash = rec[1]
            item.xattrs = {k: bytes.fromhex(v) for k, v in rec[2].items()} if len(rec) == 3 else {}
        else:
            todo.append(item)
    _hash_items(todo, jobs, progress or Progress())
    for item in items:
        # A device takes at most this much of them in a fullfile (and in a delta).
        if item.xattrs and len(xattr_records.dump(item.xattrs)) > LIMITS.max_xattr_bytes:
            raise BuildError(f"{item.path}: xattrs beyond the {LIMITS.max_xattr_bytes} bytes a fullfile carries")
    _save_stamps(cache_path, items)
    return {i.path: i for i in items}


def _hash_items(items: list[Item], jobs: int, progress: Progress) -> None:
    args = [HashJob.of(i) for i in items]
    try:
        with progress.stage("scan: hashing", len(args)) as advance:
            par = jobs if len(items) > 256 else 1
            results = workers.map(_hash_one, args, par, chunksize=64, done=lambda rs: advance(len(rs)))
    except OSError as e:
        raise BuildError(f"cannot read {e.filename}: {e.strerror}") from None
    for item, (digest, xattrs) in zip(items, results, strict=True):
        item.hash, item.xattrs = digest, xattrs


def stamp_os_release(items: dict[str, Item], root: str, version: int, clamp: int) -> Item:
    """Make `/usr/lib/os-release` a regular file whose VERSION_ID is the published version.

    The input's text is kept byte for byte but for that line, by the rules `prepare-rootfs`
    writes images with (`swupd.format.osrelease`), so the file a device boots with is the one
    its manifest lists; `/etc/os-release`, when it is a regular file, gets the same content.
    """
    data = osrelease.with_version_id(osrelease.read_text(root), version).encode("utf-8", "surrogateescape")
    etc = items.get(osrelease.ETC_OS_RELEASE)
    targets = osrelease.stamped(etc is not None and stat.S_ISREG(etc.mode))
    for path in targets:
        add_generated(items, path, data, clamp)
    return items[osrelease.OS_RELEASE]


def add_generated(items: dict[str, Item], path: str, data: bytes, clamp: int) -> Item:
    """Put a file made by the build into the tree, keeping the mode and owner of one it replaces,
    and creating missing parent directories (0755, root)."""
    for parent in parents(path):
        if parent not in items:
            d = Item(parent, stat.S_IFDIR | 0o755, 0, 0, 0, clamp)
            rehash(d)
            items[parent] = d
        elif not stat.S_ISDIR(items[parent].mode):
            raise BuildError(f"cannot add {path}: {parent} is not a directory in the rootfs")
    old = items.get(path)
    if old is not None and stat.S_ISDIR(old.mode):
        raise BuildError(f"cannot add {path}: it is a directory in the rootfs")
    uid, gid, mode = (old.uid, old.gid, old.mode) if old and stat.S_ISREG(old.mode) else (0, 0, 0o100644)
    item = Item(path, mode, uid, gid, len(data), clamp, data=data)
    rehash(item)
    items[path] = item
    return item
