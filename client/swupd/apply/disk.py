"""The planners' view of the target tree (see plan.Disk): what is there now, read only."""

from __future__ import annotations

import os
import stat

from swupd.format.manifest import Entry, Type

from .tree import Tree

_KIND = {Type.FILE: stat.S_IFREG, Type.DIRECTORY: stat.S_IFDIR, Type.SYMLINK: stat.S_IFLNK}


class TreeDisk:
    """Hashes and types of what the tree holds now. `version_file` is the state directory's
    record of the installed version, which every transaction writes last: its change time says
    when the tree was last settled (see `holds`)."""

    def __init__(self, tree: Tree, version_file: str) -> None:
        self.tree = tree
        # When the last transaction recorded its version (see `holds`); 0 when none has.
        try:
            self.settled = os.stat(version_file).st_ctime_ns
        except OSError:
            self.settled = 0

    def hash(self, path: str) -> str:
        return self.tree.hash(path)

    def is_dir(self, path: str) -> bool:
        return self.kind(path) == "d"

    def mount_point(self, path: str) -> bool:
        return self.tree.mount_point(path)

    def kind(self, path: str) -> str:
        st = self.tree.lstat(path)
        if st is None:
            return ""
        if stat.S_ISDIR(st.st_mode):
            return "d"
        if stat.S_ISREG(st.st_mode):
            return "f"
        return "l" if stat.S_ISLNK(st.st_mode) else "s"

    def holds(self, path: str, entry: Entry) -> bool:
        """True if `path` already is `entry`'s object. An lstat first, so that only an object of
        its type (and, for files and links, of its signed size) changed since the last
        transaction costs a hash: one untouched since then is what that transaction left, the
        installed version's object, as the plan trusts (a rebuilt binary often keeps its size,
        and hashing all those was a large share of an update, docs/benchmarks.md). Passing over
        one that does hold the new object only costs its download."""
        st = self.tree.lstat(path)
        if st is None or _KIND.get(entry.type) != stat.S_IFMT(st.st_mode) or st.st_ctime_ns <= self.settled:
            return False
        if entry.type != Type.DIRECTORY and st.st_size != entry.size:
            return False
        return self.tree.hash(path) == entry.hash
