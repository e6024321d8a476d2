"""A content-addressed store that only ever holds verified objects.

An object is kept as the thing itself, named by its hash: a regular file with its mode, owner
and xattrs, a directory, or a symlink. It enters the store only after hashing to its name (a
streamed file is hashed while it is written to a temporary name; a file whose bytes are at
hand is hashed first and written under its own name, which a crash can leave cut short). Any
object this very process did not store is hashed again before it is used, so a corrupted or
cut-short entry is noticed and dropped instead of installed. The store lives in the root-only
state directory; durability comes from the transaction's file system syncs, not from one
fsync per object.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import stat
import threading
from collections.abc import Iterator
from typing import BinaryIO

from swupd.format import filehash
from swupd.format.durable import atomic_file, os_error
from swupd.format.errors import HashMismatchError
from swupd.format.fullfile import Meta

from .. import faults
from ..apply.tree import set_meta_fd

_CHUNK = 1 << 20


def _io(e: OSError, what: str) -> Exception:
    return os_error(e, f"no space left in the state directory while {what}", f"{what}: {e.strerror}")


class ObjectStore:
    def __init__(self, directory: str) -> None:
        self.dir = directory
        os.makedirs(directory, mode=0o700, exist_ok=True)
        # Objects this process verified itself, which need no second hashing before a move.
        self.fresh: set[str] = set()
        self._shards: set[str] = set()

    def path(self, digest: str) -> str:
        """Objects are spread over 256 subdirectories: a directory that once held a whole OS
        stays large on ext4, and creating files in it slows down (docs/benchmarks.md)."""
        return os.path.join(self.dir, digest[:2], digest)

    def has(self, digest: str) -> bool:
        return os.path.lexists(self.path(digest))

    def _shard(self, digest: str) -> str:
        shard = os.path.join(self.dir, digest[:2])
        if shard not in self._shards:
            os.makedirs(shard, mode=0o700, exist_ok=True)
            self._shards.add(shard)
        return shard

    def _tmp(self, digest: str) -> str:
        return os.path.join(self._shard(digest), f".{digest}.{os.getpid()}.{threading.get_ident()}.tmp")

    @staticmethod
    def _drop(path: str) -> None:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            os.unlink(path)

    def add(self, digest: str, meta: Meta, content: BinaryIO | bytes | None) -> None:
        """Store an object from its metadata and content, if and only if it hashes to `digest`."""
        if isinstance(content, bytes) and stat.S_ISREG(meta.mode):
            self._add_bytes(digest, meta, content)
            return
        try:
            tmp = self._tmp(digest)
        except OSError as e:
            raise _io(e, f"storing object {digest[:16]}…") from None
        with self._dropped_on_failure(tmp, digest):
            if not (stat.S_ISLNK(meta.mode) or stat.S_ISDIR(meta.mode)):
                # Not fsynced: the transaction's file system syncs make objects durable, and
                # one cut short by a crash fails the hash check any later run makes first.
                with atomic_file(self.path(digest), sync=False, tmp=tmp, mode=0o600) as f:
                    # Hashed while written: the metadata below is exactly what the key covers.
                    fd = f.fileno()
                    src = content or io.BytesIO()  # bytes went to _add_bytes
                    got = filehash.hash_stream(_Tee(src, fd), meta.size, meta.mode, meta.uid, meta.gid, meta.xattrs)
                    set_meta_fd(fd, meta)
                    _check(digest, got)
                self.fresh.add(digest)
                return
            self._drop(tmp)  # left by a killed run with the same pid
            if stat.S_ISLNK(meta.mode):
                os.symlink(meta.linkname, tmp)
                os.chown(tmp, meta.uid, meta.gid, follow_symlinks=False)
                _check(digest, filehash.hash_path(tmp))
                os.replace(tmp, self.path(digest))
            else:
                os.mkdir(tmp, 0o700)
                fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    set_meta_fd(fd, meta)
                finally:
                    os.close(fd)
                _check(digest, filehash.hash_path(tmp))
                self._replace_dir(tmp, digest)
            self.fresh.add(digest)

    def _add_bytes(self, digest: str, meta: Meta, content: bytes) -> None:
        """A file whose bytes are at hand (a delta's result) is hashed before anything is
        written, then written under its own name: no temporary file and rename. A file cut
        short by a crash is caught by the check every object not stored by this process gets
        before it is used (see `sound`)."""
        _check(digest, filehash.hash_bytes(content, meta.mode, meta.uid, meta.gid, meta.xattrs))
        try:
            final = os.path.join(self._shard(digest), digest)
            fd = os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            # Stored already, or being stored by another importing process, which vouches
            # for it (an object left by an earlier run was checked before the import began).
            return
        except OSError as e:
            raise _io(e, f"storing object {digest[:16]}…") from None
        try:
            with self._dropped_on_failure(final, digest):
                _write_all(fd, content)
                faults.check("object")
                set_meta_fd(fd, meta)
        finally:
            os.close(fd)
        self.fresh.add(digest)

    @contextlib.contextmanager
    def _dropped_on_failure(self, path: str, digest: str) -> Iterator[None]:
        """Whatever goes wrong while an object is being made, what was made at `path` goes;
        a system error becomes the client's."""
        try:
            yield
        except OSError as e:
            self._drop(path)
            raise _io(e, f"storing object {digest[:16]}…") from None
        except BaseException:
            self._drop(path)
            raise

    def _replace_dir(self, tmp: str, digest: str) -> None:
        final = self.path(digest)
        if os.path.lexists(final):
            self._drop(tmp)
            return
        os.rename(tmp, final)

    def meta(self, digest: str) -> Meta:
        """Metadata of a stored object (for directories, which are made rather than moved)."""
        p = self.path(digest)
        st = os.lstat(p)
        link = os.readlink(p) if stat.S_ISLNK(st.st_mode) else ""
        xattrs = {} if link else filehash.read_xattrs(p)
        return Meta(st.st_mode, st.st_uid, st.st_gid, 0, st.st_size, link, xattrs)

    def copy_out(self, digest: str, dest: str) -> bool:
        """Copy a file or symlink object to host path `dest`, checking its hash on the way.

        Returns False, and forgets the object, if it no longer hashes to its name."""
        src = self.path(digest)
        try:
            st = os.lstat(src)
            self._drop(dest)
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(src)
                if filehash.hash_symlink(target, st.st_uid, st.st_gid) != digest:
                    self._drop(src)
                    return False
                os.symlink(target, dest)
                os.chown(dest, st.st_uid, st.st_gid, follow_symlinks=False)
                return True
            if not stat.S_ISREG(st.st_mode):
                return False
            meta = self.meta(digest)
            out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                with open(src, "rb") as f:
                    digest_now = filehash.hash_stream(
                        _Tee(f, out), st.st_size, st.st_mode, st.st_uid, st.st_gid, meta.xattrs
                    )
                set_meta_fd(out, meta)
            finally:
                os.close(out)
            if digest_now != digest:
                self._drop(src)
                self._drop(dest)
                return False
            return True
        except FileNotFoundError:
            return False
        except OSError as e:
            self._drop(dest)
            raise _io(e, f"staging object {digest[:16]}…") from None

    def sound(self, digest: str) -> bool:
        """True if an object is present and hashes to its name. One this process did not store
        is hashed (and known from then on); a corrupt one is forgotten. The journal moves files
        and links straight from the store into the tree, one rename fewer per file than staging
        them."""
        src = self.path(digest)
        try:
            if digest in self.fresh:
                return os.path.lexists(src)
            got = filehash.hash_path(src)
            if got != digest:
                if got != filehash.ZERO_HASH:  # there, but not what its name says
                    self._drop(src)
                return False
            self.fresh.add(digest)
            return True
        except FileNotFoundError:
            return False
        except OSError as e:
            raise _io(e, f"checking object {digest[:16]}…") from None

    def remove(self, digest: str) -> None:
        self._drop(self.path(digest))


def _check(digest: str, got: str) -> None:
    if got != digest:
        raise HashMismatchError(f"object {digest[:16]}… hashes to {got[:16]}…")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class _Tee:
    """A reader that writes everything it reads to the file descriptor `out`."""

    def __init__(self, src: BinaryIO, out: int) -> None:
        self.src, self.out = src, out

    def read(self, n: int = -1) -> bytes:
        data = self.src.read(n)
        _write_all(self.out, data)
        return data
