"""`update`, `check-update` and `os-install`."""

from __future__ import annotations

import os
import stat

from swupd.format.errors import RollbackError, UsageError
from swupd.format.manifest import Entry, Manifest, Type

from ..apply.plan import diff, union
from ..store.objects import ObjectStore
from . import space
from .obtain import obtain, pack_source
from .session import Session
from .transaction import TxReport, execute

_KIND = {Type.FILE: stat.S_IFREG, Type.DIRECTORY: stat.S_IFDIR, Type.SYMLINK: stat.S_IFLNK}


class TreeDisk:
    """The plan's view of the tree: hashes and types of what is there now."""

    def __init__(self, sess: Session) -> None:
        self.tree = sess.tree

    def hash(self, path: str) -> str:
        return self.tree.hash(path)

    def is_dir(self, path: str) -> bool:
        st = self.tree.lstat(path)
        return st is not None and stat.S_ISDIR(st.st_mode)

    def holds(self, path: str, entry: Entry) -> bool:
        """True if `path` already is `entry`'s object. An lstat first, so that only an object of
        its type (and, for files and links, of its signed size) costs a hash."""
        st = self.tree.lstat(path)
        if st is None or _KIND.get(entry.type) != stat.S_IFMT(st.st_mode):
            return False
        if entry.type != Type.DIRECTORY and st.st_size != entry.size:
            return False
        return self.tree.hash(path) == entry.hash


def _entries(manifests: dict[str, Manifest]) -> dict:
    return union([m.entries for m in manifests.values()])


def require_current(sess: Session) -> int:
    cur = sess.current_version()
    if not cur:
        raise UsageError(f"cannot tell which version {sess.s.root} runs (no VERSION_ID in os-release)")
    return cur


def check_update(sess: Session) -> tuple[int, int]:
    """(current, latest) versions."""
    cur = require_current(sess)
    return cur, sess.latest().version


def summary(rep: TxReport, downloaded: int) -> str:
    """`downloaded` counts every byte fetched (pointer, manifests, content); the parenthesis
    says how much of it was content and where it came from."""
    o = rep.obtained
    return (
        f"{rep.installed} installed, {rep.removed} removed; {downloaded} bytes downloaded ({o.bytes} in "
        f"{len(o.packs)} pack(s) and {o.fullfiles} fullfile(s), {o.local} copied locally) in {rep.seconds:.1f}s"
    )


def update(sess: Session, version: int | None = None, download_only: bool = False) -> tuple[int, int, TxReport | None]:
    """Update to `version` (default: latest). Returns (from, to, report or None if nothing to do)."""
    cur = require_current(sess)
    latest = sess.latest()
    target = version or latest.version
    if target == cur:
        return cur, cur, None
    if target < cur:
        raise RollbackError(f"version {target} is older than the installed version {cur}")
    if target > latest.version:
        raise UsageError(f"version {target} is not published (latest is {latest.version})")
    old_mom = sess.mom(cur, allow_older=True)
    new_mom = sess.mom(target)
    old = sess.installed_closure(old_mom)
    new_names = {b for b in old if b in {e.path for e in new_mom.entries if e.present}}
    new = sess.closure(new_mom, new_names)
    old_u, new_u = _entries(old), _entries(new)
    change = diff(old_u, new_u, TreeDisk(sess), update=True)
    local = {e.hash: p for p, e in old_u.items() if e.present}
    wanted = {e.hash for e in change.install}
    sources = [
        pack_source(b, m, old[b].version if b in old else 0, wanted)
        for b, m in sorted(new.items())
        if b not in old or old[b].version != m.version
    ]
    # Only the plan is needed from here on: the manifests' memory goes back before downloading.
    del old, new, old_u, new_u
    if download_only:
        store = ObjectStore(sess.state.sub("objects"))
        space.check(sess, store, change, local, install=False)
        obtain(sess, store, {e.hash: e for e in change.install}, sources, local)
        return cur, target, None
    rep = execute(sess, change, target, new_mom.timestamp, sources, local)
    for path in rep.kept_config:
        sess.out.warning(f"{path} was changed locally and is left as it is")
    return cur, target, rep


def _empty_except_state(root: str, statedir: str) -> bool:
    """True if `root` holds nothing but the state directory (and the directories leading to it)."""
    root, statedir = os.path.abspath(root), os.path.abspath(statedir)
    chain = set()
    p = statedir
    while p.startswith(root + os.sep):
        chain.add(p)
        p = os.path.dirname(p)
    for dirpath, dirs, files in os.walk(root):
        if files:
            return False
        for d in dirs:
            if os.path.join(dirpath, d) not in chain:
                return False
        dirs[:] = [d for d in dirs if os.path.join(dirpath, d) != statedir]
    return True


def os_install(sess: Session, version: int | None, bundles: set[str]) -> tuple[int, TxReport]:
    """Install a whole OS into an empty directory."""
    if not _empty_except_state(sess.s.root, sess.state.path):
        raise UsageError(f"{sess.s.root} is not empty; os-install needs an empty directory")
    latest = sess.latest(allow_older=True)
    target = version or latest.version
    mom = sess.mom(target, allow_older=True)
    for b in bundles:
        sess.bundle_entry(mom, b)
    manifests = sess.closure(mom, bundles)
    change = diff({}, _entries(manifests), TreeDisk(sess), update=False)
    wanted = {e.hash for e in change.install}
    sources = [pack_source(b, m, 0, wanted) for b, m in sorted(manifests.items())]
    del manifests
    return target, execute(sess, change, target, mom.timestamp, sources, {})
