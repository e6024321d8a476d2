"""Refusing, before anything is downloaded, a transaction the device's disks cannot hold.

Everything is counted from signed sizes (pack sizes are not signed, so a pack is counted as
the objects it would bring). The state directory's file system holds, at the peak, the
downloads, the verified objects made from them, and a staged copy of an object for each use
but its last; a download is counted at its object's size, which a compressed fullfile or a
pack member rarely exceeds. A file system other than the state directory's needs room for a
copy of every file installed there (a rename cannot cross file systems, e.g. to a separate
/boot); on the state directory's own, files reach the tree by rename and take nothing more.
"""

from __future__ import annotations

import os
from collections import Counter

from swupd.format.errors import DiskFullError
from swupd.format.manifest import Entry, Type

from ..apply.plan import Change
from ..store.objects import ObjectStore
from .session import Session

_BLOCK = 4096


def _blocks(size: int) -> int:
    return -(-size // _BLOCK) * _BLOCK


def _free(path: str) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def needs(
    sess: Session, store: ObjectStore, change: Change, local: dict[str, str], install: bool = True
) -> dict[str, int]:
    """Bytes each file system must have free, by a directory on it (the state directory first).
    Without `install` (download only), just what fetching and storing the objects takes."""
    state_path = sess.state.path
    state_dev = os.stat(state_path).st_dev
    objects: dict[str, Entry] = {e.hash: e for e in change.install}
    need = {state_path: 0}
    for digest, e in objects.items():
        if store.has(digest):
            continue
        need[state_path] += _blocks(e.size) * (1 if digest in local else 2)  # (download and) object
    if not install:
        return need
    uses = Counter(e.hash for e in change.install if e.type != Type.DIRECTORY)
    need[state_path] += sum(_blocks(objects[h].size) * (n - 1) for h, n in uses.items())
    dev_of: dict[str, int] = {}
    other: dict[int, list] = {}  # device: [a directory on it, bytes]
    for e in change.install:
        if e.type == Type.DIRECTORY:
            continue
        parent = os.path.dirname(e.path)
        dev = dev_of.get(parent)
        if dev is None:
            host = sess.tree.host_path(parent)
            while not os.path.isdir(host) and host != sess.s.root:
                host = os.path.dirname(host)
            dev = dev_of[parent] = os.stat(host).st_dev
            other.setdefault(dev, [host, 0])
        if dev != state_dev:
            other[dev][1] += _blocks(e.size)
    need.update({host: size for dev, (host, size) in other.items() if dev != state_dev})
    return need


def check(sess: Session, store: ObjectStore, change: Change, local: dict[str, str], install: bool = True) -> None:
    """Raise `DiskFullError` (exit 13), before any download, when a file system lacks room."""
    margin = sess.s.limits.min_free_bytes
    for where, size in needs(sess, store, change, local, install).items():
        free = _free(where)
        if size and free < size + margin:
            raise DiskFullError(
                f"no space left for the update on the file system of {where}: it needs {size + margin} bytes"
                f" (with a margin of {margin}), {free} are free; nothing was downloaded or changed"
            )
