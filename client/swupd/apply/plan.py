"""Deciding what a transaction does to the tree, and putting it in journal order.

The same engine serves update, os-install, bundle-add, bundle-remove and repair: it compares
what the tree should hold before (`old`, the union of the installed bundles' manifests, or what
is actually on disk when repairing) with what it should hold after (`new`).

Rules that protect the device's own data:
- state paths (/var, /home, /root, /srv, ...) are created when missing but never overwritten
  or removed;
- a file under /etc that differs from the old manifest was changed by the administrator: it is
  neither overwritten nor removed (reported instead);
- ghosted entries (old kernels and modules) are never removed;
- a directory that still holds files no manifest knows is moved aside, not deleted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import itemgetter
from typing import Protocol

from swupd.format.filehash import ZERO_HASH
from swupd.format.manifest import Entry, Status, Type

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
BOOT_PREFIXES = ("/boot/", "/usr/lib/kernel/", "/usr/lib/modules/", "/lib/modules/", "/efi/")


def is_state(path: str) -> bool:
    """Below a directory whose content belongs to the device, not to the OS."""
    return path.startswith(STATE_PREFIXES)


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


def diff(old: dict[str, Entry], new: dict[str, Entry], disk: Disk, verify: bool = False, update: bool = True) -> Change:
    """Compare `old` with `new`. With `verify`, every path of `new` is compared with the disk;
    otherwise the tree is trusted to match `old` (verify catches drift). With `update`, boot
    files that vanished from the manifests are kept, as ghosted ones are."""
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
        guarded = is_state(path) or path.startswith(CONFIG_PREFIX)
        current = disk.hash(path) if (verify or guarded) else None
        if current == e.hash:
            continue
        # Already in place (placed by hand, or by an earlier run): the hash covers the metadata
        # too, so there is nothing to fetch or stage. With nothing installed (os-install into an
        # empty directory) there is nothing to look at.
        if current is None and old and disk.holds(path, e):
            continue
        if current not in (None, ZERO_HASH):
            if is_state(path):
                continue
            if path.startswith(CONFIG_PREFIX) and not verify and before is not None and current != before.hash:
                ch.kept_config.append(path)
                continue
        ch.install.append(e)
        if e.type != Type.DIRECTORY and (
            (before is not None and before.present and before.type == Type.DIRECTORY) or (verify and disk.is_dir(path))
        ):
            ch.pre_remove.append((path, e.hash))
    # A directory the manifests list but the disk lacks (deleted, or replaced by a link or a
    # file) is restored before anything is installed below it.
    planned = {e.path for e in ch.install}
    for anc in sorted({a for e in ch.install for a in _ancestors(e.path)}, key=_depth):
        want = new.get(anc)
        if anc in planned or want is None or not want.present or want.type != Type.DIRECTORY:
            continue
        if not disk.is_dir(anc):
            ch.install.append(want)
            planned.add(anc)
    removable = []
    for path, before in old.items():
        after = new.get(path)
        if after is before or not before.present or (after is not None and after.present) or is_state(path):
            continue
        if after is not None and after.status == Status.GHOSTED:
            continue
        if update and after is None and path.startswith(BOOT_PREFIXES):
            continue
        if path.startswith(CONFIG_PREFIX) and disk.hash(path) not in (before.hash, ZERO_HASH):
            ch.kept_config.append(path)
            continue
        removable.append(path)
    if verify:
        for path, e in new.items():
            if e.status == Status.DELETED and path not in old and not is_state(path):
                if not path.startswith(CONFIG_PREFIX) and disk.hash(path) != ZERO_HASH:
                    removable.append(path)
    # Whatever lies below a path that stops being a directory goes before that path is replaced.
    nondir_now = {p for p, e in new.items() if e.present and e.type != Type.DIRECTORY} if removable else set()
    for path in sorted(set(removable), key=_depth, reverse=True):
        if any(a in nondir_now for a in _ancestors(path)):
            ch.pre_remove.append((path, ""))
        else:
            ch.remove.append(path)
    ch.pre_remove.sort(key=lambda pe: _depth(pe[0]), reverse=True)
    ch.boot_changed = any(e.path.startswith(BOOT_PREFIXES) for e in ch.install) or any(
        p.startswith(BOOT_PREFIXES) for p in ch.remove
    )
    return ch


def _ancestors(path: str) -> list[str]:
    parts = path.split("/")[1:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]
