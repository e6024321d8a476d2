"""Checking every target of a transaction before its journal is written.

The journal is the commit point: once it exists, every action in it must be possible, or the
tree stays half old and half new with a journal that fails on every later run. So between
staging and the journal, each target and each directory above it is looked at, with the tree's
no-follow primitives, as the actions will find them:
- a directory where a file or link is installed is removed first by an `rm` action (moved aside
  as `.deleted.<time>.<name>` when it holds anything; skipped on replay once the new object
  stands there);
- a file or special file where a directory is made is moved aside by an `aside` action (a link
  is simply replaced: it holds nothing, and what it points to is never touched);
- a privileged program (setuid, setgid, file capabilities) that is replaced or removed is
  disarmed first by a `disarm` action;
- a parent that is not a directory and that no action makes one, an unreadable directory, a
  read-only file system, an immutable or append-only object that an action must change, or a
  mount point (whatever it is mounted from) that an action must remove, replace or move aside
  stops the transaction before anything has changed.
"""

from __future__ import annotations

import fcntl
import os
import re
import stat
import struct
from typing import Any

from swupd.format.errors import TreeIOError

from .tree import Tree, privileged

FS_IOC_GETFLAGS = 0x80086601
_LOCKED = 0x00000010 | 0x00000020  # FS_IMMUTABLE_FL, FS_APPEND_FL

# What a directory is when the actions reach it.
_ON_DISK = "on disk"  # a directory now
_MADE = "made"  # made by a mkdir action: it starts empty
_NONE = "none"  # not a directory, and no action makes it one

_NOTHING_CHANGED = "nothing was changed"


def _mount_points(root: str) -> set[str]:
    """Host paths below `root` where something is mounted. A bind mount from the same file
    system keeps the device number of the directory it is in (and a file can be one), so
    only the kernel's own list tells them all."""
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        return set()
    below = root.rstrip("/") + "/"
    out = set()
    for line in lines:
        fields = line.split(b" ")
        if len(fields) > 4:
            point = os.fsdecode(re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m[1], 8)]), fields[4]))
            if point.startswith(below):
                out.add(point)
    return out


class _Walk:
    def __init__(self, tree: Tree, made: set[str]) -> None:
        self.tree = tree
        self.made = made
        self.dirs: dict[str, str] = {"/": _ON_DISK}
        self.writable: set[str] = set()
        self.mounts = _mount_points(tree.root)

    def lstat(self, path: str) -> os.stat_result | None:
        """The object at `path`, whose parent is a directory on disk."""
        try:
            pfd, name = self.tree.at(path)
            return os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise TreeIOError(f"cannot read {path}: {e.strerror}; {_NOTHING_CHANGED}") from None

    def dir(self, d: str) -> str:
        s = self.dirs.get(d)
        if s is None:
            if self.dir(d.rpartition("/")[0] or "/") == _ON_DISK:
                st = self.lstat(d)
                if st is not None and stat.S_ISDIR(st.st_mode):
                    s = _ON_DISK
            if s is None:
                s = _MADE if d in self.made else _NONE
            self.dirs[d] = s
        return s

    def check_writable(self, d: str) -> None:
        """A directory on disk that actions add to or take from."""
        if d in self.writable:
            return
        try:
            with self.tree.parent(d.rstrip("/") + "/.") as (fd, _):
                if os.fstatvfs(fd).f_flag & os.ST_RDONLY:
                    raise TreeIOError(f"{d} is on a read-only file system; {_NOTHING_CHANGED}")
                if _flags(fd) & _LOCKED:
                    raise TreeIOError(f"{d} is immutable or append-only; {_NOTHING_CHANGED}")
        except OSError as e:
            raise TreeIOError(f"cannot read {d}: {e.strerror}; {_NOTHING_CHANGED}") from None
        self.writable.add(d)

    def inspect(self, path: str, st: os.stat_result) -> bool:
        """A file or directory that an action replaces, removes or changes: refused if it is
        immutable or append-only; True if it is a privileged program (see tree.privileged)."""
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            return False  # links carry no flags; special files are never opened
        try:
            pfd, name = self.tree.at(path)
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY, dir_fd=pfd)
            try:
                locked = _flags(fd) & _LOCKED
                armed = privileged(fd, st)
            finally:
                os.close(fd)
        except OSError as e:
            raise TreeIOError(f"cannot read {path}: {e.strerror}; {_NOTHING_CHANGED}") from None
        if locked:
            raise TreeIOError(f"{path} is immutable or append-only; {_NOTHING_CHANGED}")
        return armed

    def check_removable(self, path: str, st: os.stat_result) -> None:
        """What an action removes, replaces or moves aside must not be a mount point."""
        if self.tree.host_path(path) in self.mounts or (
            stat.S_ISDIR(st.st_mode) and st.st_dev != os.fstat(self.tree.at(path)[0]).st_dev
        ):
            raise TreeIOError(f"{path} is a mount point; {_NOTHING_CHANGED}")


def _flags(fd: int) -> int:
    """The inode flags (chattr); 0 where the file system has none."""
    try:
        return struct.unpack("i", fcntl.ioctl(fd, FS_IOC_GETFLAGS, bytes(8))[:4])[0]
    except OSError:
        return 0


def check(tree: Tree, actions: list[list[Any]], hashes: dict[str, str]) -> list[list[Any]]:
    """The journal's actions, with what clears the way inserted where needed; raises
    TreeIOError if a target cannot be reached or changed. `hashes` gives each installed
    path's new hash."""
    walk = _Walk(tree, {a[1] for a in actions if a[0] == "mkdir"})
    cleared: set[str] = set()  # paths an earlier rm action takes away
    out: list[list[Any]] = []
    for action in actions:
        kind = action[0]
        if kind in ("mv", "mkdir"):
            path = action[2] if kind == "mv" else action[1]
            parent = path.rpartition("/")[0] or "/"
            where = walk.dir(parent)
            if where == _NONE:
                raise TreeIOError(
                    f"cannot install {path}: {parent} is not a directory and no manifest makes it one; "
                    f"{_NOTHING_CHANGED}"
                )
            st = walk.lstat(path) if where == _ON_DISK else None
            if where == _ON_DISK:
                walk.check_writable(parent)
            if st is not None and path not in cleared:
                armed = walk.inspect(path, st)
                if kind == "mv" or not stat.S_ISDIR(st.st_mode):
                    walk.check_removable(path, st)  # replaced, or moved aside
                if kind == "mv" and stat.S_ISDIR(st.st_mode):
                    out.append(["rm", path, hashes[path]])
                    cleared.add(path)
                elif kind == "mv" and armed:
                    out.append(["disarm", path, hashes[path]])
                elif kind == "mkdir" and not (stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                    out.append(["aside", path])  # the user's file: kept as it is, under another name
                    cleared.add(path)
        elif kind == "rm":
            path = action[1]
            parent = path.rpartition("/")[0] or "/"
            if path not in cleared and walk.dir(parent) == _ON_DISK:
                st = walk.lstat(path)
                if st is not None:
                    walk.check_writable(parent)
                    walk.check_removable(path, st)
                    if walk.inspect(path, st):
                        out.append(["disarm", path, action[2]])
            cleared.add(path)
        out.append(action)
    return out
