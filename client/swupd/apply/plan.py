"""Deciding what a transaction does to the tree, and putting it in journal order.

Two planners share one vocabulary (`Change`) and one set of rules. `plan_update` serves update,
os-install, bundle-add and bundle-remove: it compares what the tree should hold before (`old`,
the union of the installed bundles' manifests) with what it should hold after (`new`), and
trusts the tree to match `old`. `plan_repair` serves verify and repair: it compares every path
of the manifests with what is actually on disk.

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

Entries are compared by value, never by identity alone: the manifest parser hands out one
object for a line two versions share, but a manifest loaded from the parsed cache does not, and
both must plan alike.
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


class Disk(Protocol):
    def hash(self, path: str) -> str: ...
    def is_dir(self, path: str) -> bool: ...
    def holds(self, path: str, entry: Entry) -> bool: ...
    def mount_point(self, path: str) -> bool: ...

    def kind(self, path: str) -> str:
        """ "d", "f" (regular file), "l" (link), "s" (special), or "" (absent or unreachable)."""
        ...


def same_line(a: Entry | None, b: Entry | None) -> bool:
    """`a` and `b` are the same manifest line: `Entry` is a named tuple, so equality compares
    every field, the hash (which covers content, type, mode, owner and xattrs), the type, the
    status flag, the version and the size. A line two versions share is mostly one object (see
    manifest.loads `like`): identity answers those at once, and implies equality."""
    return a is b or a == b


def _same_object(before: Entry | None, after: Entry) -> bool:
    """Both entries are present and name one object: its hash covers content, type, mode,
    owner and xattrs, so the tree, trusted to hold `before`, already holds `after`."""
    return before is not None and before.present and after.present and before.hash == after.hash


def _unchanged(before: Entry | None, current: str) -> bool:
    """The object on disk (hash `current`) is the old version's own, as it shipped."""
    return before is not None and before.present and current == before.hash


def _left_alone(path: str, e: Entry, before: Entry | None, current: str, disk: Disk, ch: Change) -> bool:
    """Whether an object that is not `e`'s (hash `current`, not the zero hash) stays at `path`:
    a mounted file system's root where a directory belongs, anything under a state path, and
    configuration that is not the old version's own (reported in `kept_config`)."""
    if e.type == Type.DIRECTORY and disk.mount_point(path):
        return True  # the mounted file system's root stands there, with its own owner and mode
    if is_state(path):
        return True
    if is_config(path) and not _unchanged(before, current):
        ch.kept_config.append(path)
        return True
    return False


def plan_update(old: dict[str, Entry], new: dict[str, Entry], disk: Disk, *, new_version: bool) -> Change:
    """The change that takes a tree holding `old` (path: entry; empty for os-install) to `new`.

    Invariants:
    - the tree is trusted to hold `old`: a path whose entry is the same line, or names the same
      object, in both costs no look at the disk; drift is `plan_repair`'s to find. Otherwise
      only state and configuration paths are hashed; any other path is asked `disk.holds`
      (an lstat, and a hash only when it changed since the last transaction), which spares
      the download of an object already in place;
    - the plan depends on the entries' values only, never on whether `old` and `new` share
      entry objects;
    - `new_version` (an update, as opposed to adding or removing bundles within one version or
      installing one): every directory of `new` is looked at (one lstat each), not only those
      the change installs into, and boot files that vanished from the manifests stay, as
      ghosted ones do;
    - a path that changes kind (a directory becoming a file or the reverse) is cleared first
      (`pre_remove`), deepest first.
    """
    ch = Change()
    for path, e in new.items():
        before = old.get(path)
        if same_line(before, e) or not e.present or _same_object(before, e):
            continue
        current = disk.hash(path) if is_state(path) or is_config(path) else None
        if current is None:
            # Already in place (placed by hand, or by an earlier run): the hash covers the
            # metadata too, so there is nothing to fetch or stage. With nothing installed
            # (os-install into an empty directory) there is nothing to look at.
            if old and disk.holds(path, e):
                continue
        elif current == e.hash or (current != ZERO_HASH and _left_alone(path, e, before, current, disk, ch)):
            continue
        ch.install.append(e)
        was = before.type if before is not None and before.present else None
        if e.type != Type.DIRECTORY and was == Type.DIRECTORY:
            ch.pre_remove.append((path, e.hash))
        elif e.type == Type.DIRECTORY and was not in (None, Type.DIRECTORY) and disk.kind(path) not in ("d", ""):
            # The version turns a file or link into a directory: the old object goes first.
            ch.pre_remove.append((path, e.hash))
    _directories(old, new, disk, ch, every=new_version)
    removable = []
    for path, before in old.items():
        after = new.get(path)
        if same_line(after, before) or not before.present or is_state(path):
            continue
        if after is not None and (after.present or after.status == Status.GHOSTED):
            continue
        if new_version and after is None and path.startswith(BOOT_PREFIXES):
            continue
        if is_config(path) and disk.hash(path) not in (before.hash, ZERO_HASH):
            ch.kept_config.append(path)
            continue
        removable.append(path)
    _order_removals(new, ch, removable)
    return ch


def plan_repair(expected: dict[str, Entry], disk: Disk) -> Change:
    """The change that makes the tree hold `expected` (path: entry) again, whatever it holds.

    Invariants:
    - nothing is trusted: every path of `expected` is hashed on disk, and every directory is
      looked at, so an object that differs is reinstalled, one that is missing installed, and
      one the manifests record as deleted removed;
    - the device's own data is kept as `plan_update` keeps it, except that any configuration
      that differs from `expected` is the administrator's (there is no old version to tell
      shipped objects by) and is reported, never replaced or removed;
    - the plan depends on the entries' values only.
    """
    ch = Change()
    for path, e in expected.items():
        if not e.present:
            continue
        current = disk.hash(path)
        if current == e.hash or (current != ZERO_HASH and _left_alone(path, e, None, current, disk, ch)):
            continue
        ch.install.append(e)
        if e.type != Type.DIRECTORY and disk.is_dir(path):
            ch.pre_remove.append((path, e.hash))
    _directories({}, expected, disk, ch, every=True)
    removable = []
    for path, e in expected.items():
        if e.status != Status.DELETED or is_state(path) or disk.hash(path) == ZERO_HASH:
            continue
        if is_config(path):
            ch.kept_config.append(path)  # the version dropped it, the administrator kept it
        else:
            removable.append(path)
    _order_removals(expected, ch, removable)
    return ch


def _order_removals(new: dict[str, Entry], ch: Change, removable: list[str]) -> None:
    """Put `removable` into `ch`, deepest first, and note whether boot files change.

    Whatever lies below a path that stops being a directory goes before that path is replaced
    (`pre_remove`). A directory that holds configuration the administrator kept stays where it
    is, unless `new` needs its path for something else: moved aside, the kept file would be
    gone."""
    nondir_now = {p for p, e in new.items() if e.present and e.type != Type.DIRECTORY} if removable else set()
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


def _directories(old: dict[str, Entry], new: dict[str, Entry], disk: Disk, ch: Change, every: bool) -> None:
    """Directories of `new` that the disk lacks (deleted, or replaced by a link, a file or a
    special file) are made again, and everything `new` lists below them installed: a restored
    directory starts empty. Under /etc and the state paths an object standing where a directory
    belongs is the device's (unless it is the old version's own): it stays, and nothing is
    installed below it. `every`: all directories of `new` are looked at, not only those the
    change installs into."""
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


def _depth(path: str) -> int:
    return path.count("/")


def _ancestors(path: str) -> list[str]:
    parts = path.split("/")[1:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]
