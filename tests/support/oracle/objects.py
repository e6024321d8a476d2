"""Objects as the file hash sees them, read from and written to this machine's file system.

A tree is read into `Obj`s keyed by manifest-style path ("/usr/bin/x"): the tests compare what
a build or a device left on disk with what it should hold, and hash it with the documented
formula (`filehash.swupd_hash`), never with the product's code.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from dataclasses import dataclass, field

from .filehash import UNHASHED_XATTRS, FormatViolation, check, swupd_hash

AnyPath = str | bytes


@dataclass
class Obj:
    """A file (F), directory (D), symlink (L) or anything else (?, which no manifest can hold).

    Equality is what the hash covers plus the kind; the modification time is kept aside, for
    the comparisons that want it.
    """

    kind: str
    mode: int  # permission bits only (stat.S_IMODE), setuid, setgid and sticky included
    uid: int
    gid: int
    data: bytes = b""
    link: bytes = b""
    xattrs: dict[bytes, bytes] = field(default_factory=dict)
    mtime_ns: int = field(default=0, compare=False)

    @property
    def mtime(self) -> int:
        """The modification time in whole seconds (what a tar header holds)."""
        return self.mtime_ns // 1_000_000_000

    @property
    def st_mode(self) -> int:
        return {"F": stat.S_IFREG, "D": stat.S_IFDIR, "L": stat.S_IFLNK}[self.kind] | self.mode

    @property
    def size(self) -> int:
        """The size a manifest records: bytes of a file, length of a link target, 0 otherwise."""
        return {"F": len(self.data), "L": len(self.link)}.get(self.kind, 0)

    def hash(self) -> str:
        check(self.kind in ("F", "D", "L"), f"a special file has no hash: {self.describe()}")
        if self.kind == "L":
            return swupd_hash("L", 0, self.uid, self.gid, self.link)
        return swupd_hash(self.kind, self.st_mode, self.uid, self.gid, self.data, self.xattrs)

    def describe(self) -> str:
        what = {"F": f"{len(self.data)} bytes", "D": "dir", "L": f"-> {self.link!r}"}.get(self.kind, "special")
        return f"{self.kind} {self.mode:o} {self.uid}:{self.gid} {what} xattrs={sorted(self.xattrs)}"


def read_xattrs(path: AnyPath) -> dict[bytes, bytes]:
    """The hashed xattrs of `path` (not following a final symlink); none where the file
    system has no xattrs at all."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return {}
        raise
    out = {}
    for name in names:
        raw = os.fsencode(name)
        if raw not in UNHASHED_XATTRS:
            out[raw] = os.getxattr(path, name, follow_symlinks=False)
    return out


def read_obj(path: AnyPath) -> Obj:
    """The object at `path` on this machine (not following a final symlink)."""
    st = os.lstat(path)
    mode, owner = stat.S_IMODE(st.st_mode), (st.st_uid, st.st_gid)
    if stat.S_ISLNK(st.st_mode):
        return Obj("L", 0o777, *owner, link=os.fsencode(os.readlink(path)), mtime_ns=st.st_mtime_ns)
    xattrs = read_xattrs(path)
    if stat.S_ISDIR(st.st_mode):
        return Obj("D", mode, *owner, xattrs=xattrs, mtime_ns=st.st_mtime_ns)
    if not stat.S_ISREG(st.st_mode):
        return Obj("?", mode, *owner, xattrs=xattrs, mtime_ns=st.st_mtime_ns)
    with open(path, "rb") as f:
        return Obj("F", mode, *owner, f.read(), xattrs=xattrs, mtime_ns=st.st_mtime_ns)


def read_tree(root: AnyPath, skip: tuple[AnyPath, ...] = ()) -> dict:
    """Every object below `root` (not the root itself) by absolute manifest-style path.

    Paths are of root's type: bytes for bytes (the manifests' own), str for str (names that are
    not UTF-8 decoded with surrogateescape, as os.walk does). `skip` prunes directories by
    absolute host path.
    """
    out: dict = {}
    pruned = {os.path.abspath(s) for s in skip}
    sep = b"/" if isinstance(root, bytes) else "/"
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in pruned]
        for name in dirnames + filenames:
            host = os.path.join(dirpath, name)
            out[sep + os.path.relpath(host, root)] = read_obj(host)
    return out


def install(obj: Obj, root: AnyPath, path: bytes) -> None:
    """Place `obj` at manifest path `path` below `root`, replacing what is there."""
    dest = os.fsencode(root) + path
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    if os.path.lexists(dest):
        existing_dir = os.path.isdir(dest) and not os.path.islink(dest)
        if not (obj.kind == "D" and existing_dir):
            remove(dest)
    if obj.kind == "L":
        os.symlink(obj.link, dest)
        os.lchown(dest, obj.uid, obj.gid)
        return
    if obj.kind == "D":
        if not os.path.isdir(dest):
            os.mkdir(dest)
        for name in os.listxattr(dest, follow_symlinks=False):
            if os.fsencode(name) not in UNHASHED_XATTRS:
                os.removexattr(dest, name, follow_symlinks=False)
    elif obj.kind == "F":
        with open(dest, "wb") as f:
            f.write(obj.data)
    else:
        raise FormatViolation(f"cannot install {obj.describe()}")
    # chown first: it clears setuid and setgid bits, which chmod then sets.
    os.chown(dest, obj.uid, obj.gid)
    os.chmod(dest, obj.mode)
    for name, value in obj.xattrs.items():
        os.setxattr(dest, name, value, follow_symlinks=False)


def remove(path: bytes) -> None:
    """Remove a file, a link or a whole directory, even one whose modes forbid it."""
    if os.path.isdir(path) and not os.path.islink(path):
        for dirpath, dirnames, _ in os.walk(path):
            for d in dirnames:
                os.chmod(os.path.join(dirpath, d), 0o700)
        shutil.rmtree(path)
    else:
        os.unlink(path)


def copy_tree(src: AnyPath, dest: AnyPath) -> None:
    """Copy a tree keeping everything the hash covers (mode, owner, xattrs, link targets)."""
    objs = read_tree(os.fsencode(src))
    os.makedirs(dest, exist_ok=True)
    for path in sorted(objs):
        install(objs[path], dest, path)
    # Directory modes last, in case one is not writable.
    for path in sorted(objs, reverse=True):
        if objs[path].kind == "D":
            os.chmod(os.fsencode(dest) + path, objs[path].mode)
