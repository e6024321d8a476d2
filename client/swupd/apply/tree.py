"""Operations on the target tree that never leave it.

Single operations are not fsynced: the transaction makes them durable together with one
`syncfs` before it forgets its journal (see ops/transaction.py), which is what makes a large
update fast without weakening crash safety.


Every path from a manifest is opened component by component from a descriptor of the root,
each directory with O_NOFOLLOW, and the final operation uses the `*at` system calls on the
parent's descriptor. A symlink anywhere above the object, planted by an attacker, left by a
user or made by a new version that turned a directory into a link, can therefore never redirect
a write, a rename or a deletion outside ROOT.

A regular file that is replaced or removed first loses its setuid and setgid bits and its
`security.capability` (`disarm`, a journal action that the checks before the journal plan for
each such file): a hard link kept elsewhere, or a descriptor still open, then holds an inode
that grants nothing, not a vulnerable privileged program.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager

from swupd.format import filehash
from swupd.format.durable import os_error
from swupd.format.errors import TreeIOError
from swupd.format.fullfile import Meta

CAPABILITY = "security.capability"
_PRIVILEGE_BITS = stat.S_ISUID | stat.S_ISGID


def _err(e: OSError, what: str) -> Exception:
    return os_error(e, f"no space left while {what}", f"{what}: {e.strerror}")


def set_meta_fd(fd: int, meta: Meta) -> None:
    """Owner, mode and xattrs of an open file or directory (mode last: chown clears setuid).
    Other xattrs go, also on a file just made: it may have inherited a default ACL."""
    os.fchown(fd, meta.uid, meta.gid)
    for name in os.listxattr(fd):
        if name not in filehash.EXCLUDED_XATTRS and name not in meta.xattrs:
            os.removexattr(fd, name)
    for name, value in meta.xattrs.items():
        os.setxattr(fd, name, value)
    os.fchmod(fd, stat.S_IMODE(meta.mode))


def read_fd(fd: int, limit: int, size: int | None = None) -> bytes:
    """Up to `limit` bytes of an open regular file, straight from its descriptor: one read
    of the file's size (a short read of a regular file is its end), no file object. `size` is
    the file's, when the caller has just looked."""
    if size is None:
        size = os.fstat(fd).st_size
    if size and size < limit:
        data = os.read(fd, size + 1)
        if len(data) <= size:
            return data
        parts = [data]  # it grew: go on, up to the limit
    else:
        parts = []
    total = sum(map(len, parts))
    while total < limit and (data := os.read(fd, min(limit - total, 1 << 20))):
        parts.append(data)
        total += len(data)
    return b"".join(parts)


class Tree:
    """The target root; paths are absolute manifest paths."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self._dirs: dict[str, int] = {}
        self._stale = False
        try:
            self.fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as e:
            raise TreeIOError(f"cannot open target root {self.root}: {e.strerror}") from None

    def close(self) -> None:
        self.forget_dirs()
        os.close(self.fd)

    def __enter__(self) -> Tree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def host_path(self, path: str) -> str:
        """For messages and for tools that take a path; never used for writes."""
        return os.path.join(self.root, path.lstrip("/"))

    _CACHE = 128

    def forget_dirs(self) -> None:
        """Drop the cached directory descriptors (after anything that may replace a directory)."""
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()

    def _open_dir(self, rel: str, path: str) -> int:
        """A descriptor of directory `rel` (no leading /), opened component by component."""
        if not rel:
            return self.fd
        cached = self._dirs.get(rel)
        if cached is not None:
            return cached
        head, _, part = rel.rpartition("/")
        pfd = self._open_dir(head, path)
        try:
            fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=pfd)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise TreeIOError(f"/{rel} is not a directory (a symlink or file), refusing {path}") from None
            if e.errno == errno.ENOENT:
                raise FileNotFoundError(errno.ENOENT, "missing parent", "/" + rel) from None
            raise _err(e, f"opening /{rel}") from None
        if len(self._dirs) >= self._CACHE:
            os.close(self._dirs.pop(next(iter(self._dirs))))
        self._dirs[rel] = fd
        return fd

    @contextmanager
    def parent(self, path: str) -> Iterator[tuple[int, str]]:
        """(descriptor of the parent directory, base name); refuses symlinked components.

        Directory descriptors are cached, so a walk of thousands of files opens each directory
        once; any removal or replacement of a directory drops the cache."""
        yield self.at(path)

    def at(self, path: str) -> tuple[int, str]:
        """What `parent` yields, for callers that walk many paths (the descriptor stays the
        tree's: never closed by the caller)."""
        if self._stale:
            self.forget_dirs()
            self._stale = False
        head, _, name = path.strip("/").rpartition("/")
        return self._open_dir(head, path), name

    def lstat(self, path: str) -> os.stat_result | None:
        try:
            with self.parent(path) as (fd, name):
                return os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except TreeIOError:
            return None

    def mount_point(self, path: str) -> bool:
        """True if another file system is mounted on the directory at `path` (its owner and mode
        are then that file system's, such as the EFI system partition's at /efi)."""
        try:
            with self.parent(path) as (fd, name):
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                return stat.S_ISDIR(st.st_mode) and st.st_dev != os.fstat(fd).st_dev
        except (OSError, TreeIOError):
            return False

    def hash(self, path: str) -> str:
        """The swupd hash of what is at `path` now; the zero hash if nothing (reachable) is."""
        try:
            with self.parent(path) as (pfd, name):
                st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    return filehash.hash_symlink(os.fsdecode(os.readlink(name, dir_fd=pfd)), st.st_uid, st.st_gid)
                if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
                    return "special"
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=pfd)
                try:
                    xattrs = filehash.fd_xattrs(fd)
                    if stat.S_ISDIR(st.st_mode):
                        return filehash.hash_directory(st.st_mode, st.st_uid, st.st_gid, xattrs)
                    with os.fdopen(os.dup(fd), "rb") as f:
                        return filehash.hash_stream(f, st.st_size, st.st_mode, st.st_uid, st.st_gid, xattrs)
                finally:
                    os.close(fd)
        except (FileNotFoundError, TreeIOError):
            return filehash.ZERO_HASH
        except OSError as e:
            raise _err(e, f"reading {path}") from None

    def read(self, path: str, limit: int) -> bytes:
        """At most `limit` bytes of the file at `path`."""
        with self.parent(path) as (pfd, name):
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=pfd)
            try:
                return read_fd(fd, limit)
            finally:
                os.close(fd)

    def move_in(self, source: str, path: str) -> None:
        """Atomically replace `path` with the staged object at host path `source`.

        Across file systems (a separate /boot, say) the object is first copied next to its
        target as `.update.<name>` and fsynced, so the final step is still one rename."""
        with self.parent(path) as (fd, name):
            try:
                os.rename(source, name, dst_dir_fd=fd)
            except OSError as e:
                if e.errno != errno.EXDEV:
                    raise _err(e, f"installing {path}") from None
                self._copy_across(source, fd, name, path)

    def _copy_across(self, source: str, dfd: int, name: str, path: str) -> None:
        tmp = _fitted(dfd, f".update.{name}")
        st = os.lstat(source)
        try:
            _unlink_any(dfd, tmp)
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(source), tmp, dir_fd=dfd)
                os.chown(tmp, st.st_uid, st.st_gid, dir_fd=dfd, follow_symlinks=False)
            else:
                meta = Meta(st.st_mode, st.st_uid, st.st_gid, xattrs=_xattrs(source))
                out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dfd)
                try:
                    with open(source, "rb") as src:
                        while chunk := src.read(1 << 20):
                            os.write(out, chunk)
                    set_meta_fd(out, meta)
                    os.fsync(out)
                finally:
                    os.close(out)
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
            os.unlink(source)
        except OSError as e:
            raise _err(e, f"installing {path}") from None

    def mkdir(self, path: str, meta: Meta) -> None:
        """Make `path` a directory with `meta`, replacing a non-directory there."""
        with self.parent(path) as (pfd, name):
            try:
                st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):
                    os.unlink(name, dir_fd=pfd)
                    os.mkdir(name, 0o700, dir_fd=pfd)
                    self._stale = True
            except FileNotFoundError:
                os.mkdir(name, 0o700, dir_fd=pfd)
            except OSError as e:
                raise _err(e, f"creating {path}") from None
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=pfd)
            try:
                set_meta_fd(fd, meta)
            except OSError as e:
                raise _err(e, f"setting attributes of {path}") from None
            finally:
                os.close(fd)

    def remove(self, path: str, aside: str) -> str | None:
        """Remove a file, link or empty directory. A directory that still holds something (a
        user's files) is renamed to `.deleted.<aside>.<name>` and that name returned."""
        try:
            with self.parent(path) as (pfd, name):
                st = _lstat_at(pfd, name)
                if st is None:
                    return None
                if stat.S_ISDIR(st.st_mode):
                    self._stale = True
                    try:
                        os.rmdir(name, dir_fd=pfd)
                    except OSError as e:
                        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                            raise
                        return _move_aside(pfd, name, aside)
                else:
                    os.unlink(name, dir_fd=pfd)
        except (FileNotFoundError, TreeIOError):
            # Nothing reachable there: a missing or non-directory component means no such object.
            return None
        except OSError as e:
            raise _err(e, f"removing {path}") from None
        return None

    def disarm(self, path: str, keep_hash: str) -> None:
        """Take setuid, setgid and capabilities off the regular file at `path` before it is
        replaced or removed; nothing if it is gone, not a regular file, or already hashes to
        `keep_hash` (the object that replaces it, moved in before a crash)."""
        if keep_hash and self.hash(path) == keep_hash:
            return
        try:
            with self.parent(path) as (pfd, name):
                if not stat.S_ISREG(os.stat(name, dir_fd=pfd, follow_symlinks=False).st_mode):
                    return
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY, dir_fd=pfd)
                try:
                    _disarm_fd(fd)
                finally:
                    os.close(fd)
        except (FileNotFoundError, TreeIOError):
            return
        except OSError as e:
            raise _err(e, f"disarming {path}") from None

    def aside(self, path: str, tag: str) -> str | None:
        """Rename a file, link or special file at `path` to `.deleted.<tag>.<name>` and return
        that name; nothing when the path is absent or already a directory (made by the action
        this one clears the way for, before a crash)."""
        try:
            with self.parent(path) as (pfd, name):
                st = _lstat_at(pfd, name)
                if st is None or stat.S_ISDIR(st.st_mode):
                    return None
                return _move_aside(pfd, name, tag)
        except (FileNotFoundError, TreeIOError):
            return None
        except OSError as e:
            raise _err(e, f"moving {path} aside") from None


def privileged(fd: int, st: os.stat_result) -> bool:
    """An open regular file that grants privilege when run: setuid, setgid or capabilities."""
    if not stat.S_ISREG(st.st_mode):
        return False
    if st.st_mode & _PRIVILEGE_BITS:
        return True
    try:
        os.getxattr(fd, CAPABILITY)
    except OSError as e:
        if e.errno in (errno.ENODATA, errno.ENOTSUP):
            return False
        raise
    return True


def _disarm_fd(fd: int) -> None:
    st = os.fstat(fd)
    if st.st_mode & _PRIVILEGE_BITS:
        os.fchmod(fd, stat.S_IMODE(st.st_mode) & ~_PRIVILEGE_BITS)
    try:
        os.removexattr(fd, CAPABILITY)
    except OSError as e:
        if e.errno not in (errno.ENODATA, errno.ENOTSUP):
            raise


def _lstat_at(dfd: int, name: str) -> os.stat_result | None:
    """The status of `name` itself (a link is not followed), or None when nothing is there."""
    try:
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _move_aside(dfd: int, name: str, tag: str) -> str:
    """Rename `name` to the first free `.deleted.<tag>[-n].<name>` in the same directory, the
    name cut short where the whole would pass the file system's limit on a name (a journal
    action that can never succeed would leave the tree half updated)."""
    for n in range(1000):
        kept = _fitted(dfd, f".deleted.{tag}.{name}" if n == 0 else f".deleted.{tag}-{n}.{name}")
        try:
            os.stat(kept, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            os.rename(name, kept, src_dir_fd=dfd, dst_dir_fd=dfd)
            return kept
    raise OSError(errno.EEXIST, "no free name to move it aside")


def _fitted(dfd: int, name: str) -> str:
    """`name` cut short to the longest name the file system of directory `dfd` takes: names
    made from a manifest's (a 255-byte one is valid) must not fail an action after the commit."""
    try:
        longest = os.fpathconf(dfd, "PC_NAME_MAX")
    except OSError:
        longest = 255
    while len(os.fsencode(name)) > longest:
        name = name[:-1]
    return name


def _unlink_any(dfd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dfd)
    except FileNotFoundError:
        pass


def _xattrs(path: str) -> dict[str, bytes]:
    return filehash.read_xattrs(path)
