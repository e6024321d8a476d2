"""The client's state directory: lock, trust records, caches and the journal.

Layout (`--statedir`, default `ROOT/var/lib/swupd`, mode 0700, owned by root or the euid, with
every directory above it checked as ownership.py says):
  lock                   one swupd at a time
  trust.json             the rollback floor and the stream pin (see TrustRecord)
  version                the version the last completed transaction installed
  objects/<ab>/<hash>    verified objects, in 256 subdirectories (see store/objects.py)
  manifests/<V>/...      verified manifests and MoM signatures (parsed/: the same kept parsed)
  download/              downloads in progress (resumable)
  stage/                 objects staged for the pending transaction
  journal                the pending transaction, if any
The directory itself is 0700; 01700 (the sticky bit, which means nothing to a directory only its
owner can enter) marks one found open to others whose content has not been checked yet.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import stat
from dataclasses import asdict, dataclass

from swupd.format.durable import atomic_file, os_error
from swupd.format.errors import LockedError, TreeIOError

from . import faults, ownership


def write_atomic(path: str, data: bytes, durable: bool = True) -> None:
    """Replace `path` with `data` so that a crash leaves either the old or the new bytes.

    `durable=False` is for caches whose content is checked whenever it is read (manifests
    against the signed MoM, the MoM against its signature): a torn copy is fetched again, and
    during an update the transaction's file system sync makes them durable anyway."""
    try:
        with atomic_file(path, sync=durable) as f:
            f.write(data)
    except OSError as e:
        raise os_error(e, f"no space left writing {path}", f"cannot write {path}: {e.strerror}") from None


@dataclass
class TrustRecord:
    """What the device has verified, kept across runs. Every field only ever rises, or is set
    once and then only replaced by what a verified transaction installed.

    `highest_version` and `pointer_timestamp` are the order (see format/latest.py) of the newest
    `latest` pointer whose version was verified whole: no pointer below it is accepted.
    `latest_timestamp` is the newest signed time verified, the floor of the expiry clock.
    `stream` and `compat` are those of the version last installed: what every later version
    must carry when the device's configuration names none."""

    highest_version: int = 0
    latest_timestamp: int = 0
    pointer_timestamp: int = 0
    stream: str = ""
    compat: str = ""

    def merged(self, new: TrustRecord) -> TrustRecord:
        if new.highest_version > self.highest_version:
            version, pointer = new.highest_version, new.pointer_timestamp
        elif new.highest_version == self.highest_version:
            version, pointer = self.highest_version, max(self.pointer_timestamp, new.pointer_timestamp)
        else:
            version, pointer = self.highest_version, self.pointer_timestamp
        return TrustRecord(
            version,
            max(self.latest_timestamp, new.latest_timestamp),
            pointer,
            new.stream or self.stream,
            new.compat or self.compat,
        )


UNCHECKED = stat.S_ISVTX


class StateDir:
    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self._lock_fd: int | None = None

    def sub(self, *parts: str) -> str:
        return os.path.join(self.path, *parts)

    def ensure(self) -> None:
        """Resolve and check the directory and every one above it (see ownership.py), create
        what is missing and close it to others: 0700, owned by root or the euid. One found open
        to others may hold what they put there, so then everything in it is checked first."""
        self.path = ownership.resolve(self.path, "state directory", own_mode=False)
        try:
            ownership.make_dirs(self.path, 0o700, what="state directory")
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            try:
                st = os.fstat(fd)
                if not ownership.trusted_owner(st.st_uid):
                    raise ownership.refuse("state directory", self.path, self.path, f"is owned by uid {st.st_uid}")
                # Closed and marked in one change of mode, then looked into: nothing can be
                # added while it is checked, and a run that dies at any point leaves the next
                # one checking, until one finds everything the client's.
                mode = stat.S_IMODE(st.st_mode)
                if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                    mode = 0o700 | UNCHECKED
                    os.fchmod(fd, mode)
                    faults.check("closed")
                if mode & UNCHECKED:
                    self._check_contents()
                if mode != 0o700:
                    os.fchmod(fd, 0o700)
            finally:
                os.close(fd)
            for d in ("objects", "manifests", "download", "stage"):
                os.makedirs(self.sub(d), mode=0o700, exist_ok=True)
        except OSError as e:
            raise TreeIOError(f"cannot create state directory {self.path}: {e.strerror}") from None

    def _check_contents(self) -> None:
        """Refuse a state directory that was open to others if anything in it is not the
        client's: not owned by root or the euid, open to others, a symlink, or a file with
        other hard links (the client makes none: one would let a file elsewhere be written
        through the names it rewrites, such as `trust.json.tmp` or a download's `.part`).
        Objects (below objects/ and stage/) are the exception: they carry the owner and mode
        the signed manifests give them, are checked against their hash, which covers both,
        when used, and are only ever renamed, never written through."""
        for dirpath, dirs, files in os.walk(self.path):
            if os.path.dirname(os.path.relpath(dirpath, self.path)) in ("objects", "stage"):
                dirs[:] = []
                continue
            for name in dirs + files:
                p = os.path.join(dirpath, name)
                st = os.lstat(p)
                why = "is a symbolic link" if stat.S_ISLNK(st.st_mode) else ownership.problem(st)
                if not why and not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
                    why = "has other hard links"
                if why:
                    raise ownership.refuse("state directory", self.path, p, why)

    def lock(self) -> None:
        self.ensure()
        fd = os.open(self.sub("lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockedError(f"another swupd is running (lock {self.sub('lock')})") from None
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def trust(self) -> TrustRecord:
        try:
            with open(self.sub("trust.json"), encoding="utf-8") as f:
                data = json.load(f)
            newest = int(data.get("latest_timestamp", 0))
            return TrustRecord(
                int(data.get("highest_version", 0)),
                newest,
                # Records written before pointers were ordered kept one time for both uses.
                int(data.get("pointer_timestamp", newest)),
                str(data.get("stream", "")),
                str(data.get("compat", "")),
            )
        except (OSError, ValueError, TypeError, AttributeError):
            return TrustRecord()

    def save_trust(self, record: TrustRecord, durable: bool = True) -> None:
        """Raise the rollback floor (see TrustRecord.merged); `durable=False` only where a file
        system sync follows before anything relies on it (the transaction's records)."""
        current = self.trust()
        merged = current.merged(record)
        if merged != current:
            write_atomic(self.sub("trust.json"), json.dumps(asdict(merged)).encode(), durable)

    def manifest_dir(self, version: int) -> str:
        d = self.sub("manifests", str(version))
        os.makedirs(d, mode=0o700, exist_ok=True)
        return d

    def clean(self, keep: set[str], everything: bool = False) -> tuple[int, int]:
        """Drop cached objects, downloads and every kept manifest but those in `keep` (paths
        relative to the manifests directory); (files, bytes) freed."""
        files = size = 0

        def drop(p: str) -> None:
            nonlocal files, size
            try:
                if os.path.isdir(p) and not os.path.islink(p):
                    for root, _, names in os.walk(p):
                        for n in names:
                            files += 1
                            size += os.lstat(os.path.join(root, n)).st_size
                    shutil.rmtree(p)
                else:
                    size += os.lstat(p).st_size
                    files += 1
                    os.unlink(p)
            except OSError:
                pass

        for d in ("objects", "download"):
            for n in os.listdir(self.sub(d)) if os.path.isdir(self.sub(d)) else []:
                drop(self.sub(d, n))
            # Recreated empty: a directory that once held many entries stays slow to add to.
            shutil.rmtree(self.sub(d), ignore_errors=True)
            os.makedirs(self.sub(d), mode=0o700, exist_ok=True)
        # The object store's subdirectories, made now rather than by the next update.
        for i in range(256):
            os.makedirs(self.sub("objects", f"{i:02x}"), mode=0o700, exist_ok=True)
        mdir = self.sub("manifests")
        for root, _, names in os.walk(mdir, topdown=False):
            for n in names:
                rel = os.path.relpath(os.path.join(root, n), mdir)
                if everything or rel not in keep:
                    drop(os.path.join(root, n))
            if root != mdir:
                with contextlib.suppress(OSError):
                    os.rmdir(root)  # only when emptied
        return files, size
