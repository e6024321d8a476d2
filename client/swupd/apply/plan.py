"""Deciding what a transaction does to the tree, and putting it in journal order.

The same engine serves update, os-install, bundle-add, bundle-remove and repair: it compares
what the tree should hold before (`old`, the union of the installed bundles' manifests, or what
is actually on disk when repairing) with what it should hold after (`new`).

Rules that protect the device's own data:
- state paths (/var, /home, /root, /srv, ...) are created when missing but never overwritten
  or removed;
- /etc belongs to the administrator: an object there that is neither the old version's nor the
  new one's (changed, or put where a new version starts to ship a path; when repairing, any
  object that differs) is neither overwritten nor removed, and is reported (`kept_config`);
- ghosted entries (old kernels and modules) are never removed;
- a directory on which another file system is mounted (the EFI system partition at /efi, a data
  partition) is in place as it is: its owner and mode are that file system's;
- a directory that still holds files no manifest knows is moved aside, not deleted;
- a directory of `new` that is not one on disk (deleted, or replaced by a link or a file) is
  made again and everything `new` lists below it is installed, changed or not; under /etc and
  the state paths, whatever stands there instead is the device's and is kept, and nothing is
  installed below it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import itemgetter
from typing import Protocol

from swupd.format.filehash import ZERO_HASH
from swupd.format.manifest import Entry, Status, Type
from swupd.format.paths import BOOT_PREFIXES

STATE_PREFIXES = (
    "/var/",
    "/home/",
    "/root/",
    "/srv/",
    "/tmp/",
    "/run/",
    "/mnt/",
    "/media/",
    "/proc/",
    "/sys/",
    "/dev/",
    "/lost+found/",
    "/usr/src/debug/",
    "/usr/local/",
)
CONFIG_PREFIX = "/etc/"


_STATE_TOPS = frozenset(p.rstrip("/") for p in STATE_PREFIXES)


def is_state(path: str) -> bool:
    """A directory whose content belongs to the device, not to the OS, or below one."""
    return path.startswith(STATE_PREFIXES) or path in _STATE_TOPS


def is_config(path: str) -> bool:
    """/etc or below: the administrator's."""
    return path.startswith(CONFIG_PREFIX) or path == "/etc"


def union(manifests: list[list[Entry]]) -> dict[str, Entry]:
    """One entry per path over several bundles: a present entry wins over a deleted one, and
    among present ones the newest (all present ones agree within one version)."""
    if not manifests:
        return {}
    # The largest as a whole (a manifest lists each path once), the others entry by entry.
    largest = max(manifests, key=len)
    out: dict[str, Entry] = dict(zip(map(itemgetter(0), largest), largest, strict=True))
    for entries in manifests:
        if entries is largest:
            continue
        for e in entries:
            prev = out.get(e.path)
            if prev is None or (e.present, e.version) > (prev.present, prev.version):
                out[e.path] = e
    return out


@dataclass
class Change:
    """What the planner decided about the tree."""

    install: list[Entry] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    pre_remove: list[tuple[str, str]] = field(default_factory=list)
    kept_config: list[str] = field(default_factory=list)
    boot_changed: bool = False

    @property
    def empty(self) -> bool:
        return not (self.install or self.remove or self.pre_remove)


def _depth(path: str) -> int:
    return path.count("/")


class Disk(Protocol):
    def hash(self, path: str) -> str: ...
    def is_dir(self, path: str) -> bool: ...
    def holds(self, path: str, entry: Entry) -> bool: ...
    def mount_point(self, path: str) -> bool: ...

    def kind(self, path: str) -> str:
        """ "d", "f" (regular file), "l" (link), "s" (special), or "" (absent or unreachable)."""
        ...


def _unchanged(before: Entry | None, current: str | None) -> bool:
    """The object on disk is the old version's own, as it shipped."""
    return before is not None and before.present and current == before.hash


def diff(old: dict[str, Entry], new: dict[str, Entry], disk: Disk, verify: bool = False, update: bool = True) -> Change:
    """Compare `old` with `new`. With `verify`, every path of `new` is compared with the disk;
    otherwise the tree is trusted to match `old` (verify catches drift), except for its
    directories: with `update` or `verify` every directory of `new` is looked at (one lstat
    each), otherwise those the change installs into. With `update`, boot files that vanished
    from the manifests are kept, as ghosted ones are."""
    ch = Change()
    for path, e in new.items():
        before = old.get(path)
        # The same entry object: a line both versions' manifests share (see manifest.loads).
        if before is e and not verify:
            continue
        if not e.present:
            continue
        if not verify and before is not None and before.present and before.hash == e.hash:
            continue
        guarded = is_state(path) or is_config(path)
        current = disk.hash(path) if (verify or guarded) else None
        if current == e.hash:
            continue
        if e.type == Type.DIRECTORY and current not in (None, ZERO_HASH) and disk.mount_point(path):
            continue  # the mounted file system's root stands there, with its own owner and mode
        # Already in place (placed by hand, or by an earlier run): the hash covers the metadata
        # too, so there is nothing to fetch or stage. With nothing installed (os-install into an
        # empty directory) there is nothing to look at.
        if current is None and old and disk.holds(path, e):
            continue
        if current not in (None, ZERO_HASH):
            if is_state(path):
                continue
            if is_config(path) and not _unchanged(before, current):
                ch.kept_config.append(path)
                continue
        ch.install.append(e)
        was = before.type if before is not None and before.present else None
        if e.type != Type.DIRECTORY and (was == Type.DIRECTORY or (verify and disk.is_dir(path))):
            ch.pre_remove.append((path, e.hash))
        elif e.type == Type.DIRECTORY and was not in (None, Type.DIRECTORY) and disk.kind(path) not in ("d", ""):
            # The version turns a file or link into a directory: the old object goes first.
            ch.pre_remove.append((path, e.hash))
    _directories(old, new, disk, ch, every=update or verify)
    removable = []
    for path, before in old.items():
        after = new.get(path)
        if after is before or not before.present or (after is not None and after.present) or is_state(path):
            continue
        if after is not None and after.status == Status.GHOSTED:
            continue
        if update and after is None and path.startswith(BOOT_PREFIXES):
            continue
        if is_config(path) and disk.hash(path) not in (before.hash, ZERO_HASH):
            ch.kept_config.append(path)
            continue
        removable.append(path)
    if verify:
        for path, e in new.items():
            if e.status == Status.DELETED and path not in old and not is_state(path):
                if disk.hash(path) == ZERO_HASH:
                    continue
                if is_config(path):
                    ch.kept_config.append(path)  # the version dropped it, the administrator kept it
                else:
                    removable.append(path)
    # Whatever lies below a path that stops being a directory goes before that path is replaced.
    nondir_now = {p for p, e in new.items() if e.present and e.type != Type.DIRECTORY} if removable else set()
    # A directory that holds configuration the administrator kept stays where it is (unless the
    # new version needs its path for something else): moved aside, the kept file would be gone.
    holding = {a for p in ch.kept_config for a in _ancestors(p)} if removable else set()
    for path in sorted(set(removable) - (holding - nondir_now), key=_depth, reverse=True):
        if any(a in nondir_now for a in _ancestors(path)):
            ch.pre_remove.append((path, ""))
        else:
            ch.remove.append(path)
    ch.pre_remove.sort(key=lambda pe: _depth(pe[0]), reverse=True)
    ch.boot_changed = any(e.path.startswith(BOOT_PREFIXES) for e in ch.install) or any(
        p.startswith(BOOT_PREFIXES) for p in ch.remove
    )
    return ch


def _directories(old: dict[str, Entry], new: dict[str, Entry], disk: Disk, ch: Change, every: bool) -> None:
    """Directories of `new` that the disk lacks (deleted, or replaced by a link, a file or a
    special file) are made again, and everything `new` lists below them installed: a restored
    directory starts empty. Under /etc and the state paths an object standing where a directory
    belongs is the device's (unless it is the old version's own): it stays, and nothing is
    installed below it."""
    if every:
        dirs = [p for p, e in new.items() if e.present and e.type == Type.DIRECTORY]
    else:
        wanted = {a for e in ch.install for a in _ancestors(e.path)}
        wanted.update(e.path for e in ch.install if e.type == Type.DIRECTORY)
        dirs = [p for p in wanted if (w := new.get(p)) is not None and w.present and w.type == Type.DIRECTORY]
    restored: set[str] = set()
    blocked: set[str] = set()
    for d in sorted(dirs, key=_depth):
        if d == "/" or ((restored or blocked) and any(a in restored or a in blocked for a in _ancestors(d))):
            continue  # decided with the directory above it
        kind = disk.kind(d)
        if kind == "d":
            continue
        guarded = is_state(d) or (is_config(d) and not _unchanged(old.get(d), disk.hash(d)))
        if kind and guarded:
            blocked.add(d)
            if not is_state(d) and d not in ch.kept_config:
                ch.kept_config.append(d)
        else:
            restored.add(d)
    if blocked:
        below = tuple(b + "/" for b in blocked)
        ch.install = [e for e in ch.install if e.path not in blocked and not e.path.startswith(below)]
    if restored:
        have = {e.path for e in ch.install}
        below = tuple(r + "/" for r in restored)
        ch.install += [
            e for p, e in new.items() if e.present and p not in have and (p in restored or p.startswith(below))
        ]


def _ancestors(path: str) -> list[str]:
    parts = path.split("/")[1:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]
