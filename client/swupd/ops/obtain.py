"""Getting every object a transaction needs into the verified store, fewest bytes first.

In order: objects already in the store; content the tree already holds under another path
(copied and re-hashed, not downloaded); delta packs from the installed bundle versions; the
zero packs of the versions the missing objects come from (each holds a bundle's small objects
first published in its version), each when it is smaller than the fullfiles it replaces; single
fullfiles for whatever is still missing. Every download is capped by signed sizes, and every
object is verified before it is stored, so a hostile or broken server can cause an error but
never a wrong file.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field

from swupd.format import layout
from swupd.format.errors import (
    DiskFullError,
    FormatError,
    HashMismatchError,
    NetworkError,
    NotFoundError,
    SizeLimitError,
    SwupdError,
    TreeIOError,
)
from swupd.format.filehash import fd_xattrs
from swupd.format.fullfile import Meta
from swupd.format.manifest import Entry, Manifest

from .. import faults
from ..apply.tree import read_fd
from ..store.importer import fullfile_cap, import_fullfile
from ..store.objects import ObjectStore
from ..store.packimport import PackJob
from ..store.parallel import strategy_for
from .session import Session

log = logging.getLogger(__name__)

_PACK_MEMBER_OVERHEAD = 4096
_SLACK = 1 << 20


@dataclass
class PackSource:
    """A bundle whose objects a pack could provide: from `from_version` (0: zero pack).

    Holds only what the transaction wants from the bundle, so the manifests themselves can be
    released before anything is downloaded."""

    bundle: str
    version: int
    from_version: int
    entries: dict[str, Entry]


def pack_source(bundle: str, manifest: Manifest, from_version: int, wanted: set[str]) -> PackSource:
    mine = {e.hash: e for e in manifest.entries if e.hash in wanted and e.present}
    return PackSource(bundle, manifest.version, from_version, mine)


@dataclass
class ObtainReport:
    local: int = 0
    packs: list[str] = field(default_factory=list)
    from_packs: int = 0
    fullfiles: int = 0
    bytes: int = 0
    rejected: list[str] = field(default_factory=list)


def _import_local(store: ObjectStore, sess: Session, path: str, entry: Entry) -> bool:
    """Copy an object the tree already has into the store (verified by hash on the way in)."""
    tree = sess.tree
    try:
        with tree.parent(path) as (pfd, name):
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                target = os.fsdecode(os.readlink(name, dir_fd=pfd))
                store.add(entry.hash, Meta(st.st_mode, st.st_uid, st.st_gid, linkname=target), None)
            elif stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=pfd)
                with os.fdopen(fd, "rb") as f:
                    meta = Meta(st.st_mode, st.st_uid, st.st_gid, int(st.st_mtime), st.st_size, "", fd_xattrs(fd))
                    store.add(entry.hash, meta, None if stat.S_ISDIR(st.st_mode) else f)
            else:
                return False
        return True
    except (OSError, SwupdError):
        return False


def _source_reader(store: ObjectStore, sess: Session, local: dict[str, str]):
    def source_of(digest: str, cap: int) -> bytes | None:
        try:
            try:
                fd = os.open(store.path(digest), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:  # not stored (or not a file)
                fd = -1
            if fd >= 0:
                try:
                    st = os.fstat(fd)
                    if stat.S_ISREG(st.st_mode) and st.st_size <= cap:
                        return read_fd(fd, cap + 1, st.st_size)
                finally:
                    os.close(fd)
            if digest in local:
                return sess.tree.read(local[digest], cap + 1)
        except (OSError, SwupdError):
            return None
        return None

    return source_of


def obtain(
    sess: Session, store: ObjectStore, wanted: dict[str, Entry], sources: list[PackSource], local: dict[str, str]
) -> ObtainReport:
    rep = ObtainReport()
    # What the store holds from earlier runs is checked now, so a file a crash cut short is
    # fetched again instead of failing the transaction later.
    missing = {h: e for h, e in wanted.items() if not store.sound(h)}
    for digest, entry in list(missing.items()):
        if digest in local and _import_local(store, sess, local[digest], entry):
            rep.local += 1
            del missing[digest]
    download = sess.state.sub("download")
    source_of = _source_reader(store, sess, local)
    # Each wanted object is asked of the first bundle that has it, so no two packs import it.
    plans: list[tuple[PackSource, dict[str, Entry]]] = []
    claimed: set[str] = set()
    for src in sources:
        mine = {h: e for h, e in src.entries.items() if h in missing and h not in claimed}
        if mine:
            claimed.update(mine)
            plans.append((src, mine))
    # Every delta pack is downloaded, then all are imported together (one set of processes).
    fetched, fallback = [], []
    for src, mine in plans:
        got = None
        if src.from_version:
            rel = layout.pack(src.version, src.bundle, src.from_version)
            cap = sum(fullfile_cap(e.size) + _PACK_MEMBER_OVERHEAD for e in mine.values()) + _SLACK
            got = _fetch(sess, rel, cap, mine, download, rep)
        if got:
            fetched.append(got)
        else:
            fallback.append((src, mine))
    _import(sess, store, fetched, source_of, rep)
    _forget_stored(store, missing)
    # Where no delta pack could be had: the zero packs of the versions the objects come from,
    # each when it is smaller than the fullfiles, one at a time (a small disk holds one).
    for src, mine in fallback:
        by_version: dict[int, dict[str, Entry]] = {}
        for h, e in mine.items():
            if h in missing:
                by_version.setdefault(e.version, {})[h] = e
        for version, group in sorted(by_version.items()):
            group = {h: e for h, e in group.items() if h in missing}
            _zero_pack(sess, store, src.bundle, version, group, missing, download, source_of, rep)
            _forget_stored(store, missing)
    if missing:
        log.info("%d objects as single fullfiles", len(missing))
        _fullfiles(sess, store, missing, download, rep)
    faults.check("downloaded")
    return rep


def _zero_pack(sess, store, bundle, version, group, missing, download, source_of, rep) -> None:
    """Import what `bundle`'s zero pack of `version` holds of the missing objects, if it has one
    smaller than the fullfiles of `group` (the missing objects whose entries in the bundle
    changed in that version), which it should hold; it may hold others that are missing too
    (content another bundle shares)."""
    if len(group) < 8:
        return
    rel = layout.pack(version, bundle, 0)
    zsize = sess.exists(rel)
    estimate = sum(e.size // 2 + 1024 for e in group.values())
    if zsize is None or zsize > estimate:
        why = "it has none" if zsize is None else f"its zero pack has {zsize} bytes"
        log.info("%s: %d objects of version %d as fullfiles (%s)", bundle, len(group), version, why)
        return
    log.info("%s: zero pack of version %d (%d bytes) for up to %d objects", bundle, version, zsize, len(group))
    # No more than the estimate from the signed sizes is downloaded (the pack may also hold
    # small objects of that version the device does not need).
    if got := _fetch(sess, rel, estimate + _SLACK, missing, download, rep):
        _import(sess, store, [got], source_of, rep)


def _forget_stored(store: ObjectStore, missing: dict[str, Entry]) -> None:
    # Objects this process or its import processes stored are known without a system call;
    # anything else there (left by an import process that died) is checked.
    for h in [h for h in missing if h in store.fresh or store.sound(h)]:
        del missing[h]


def _fetch(sess, rel, cap, mine, download, rep) -> tuple[str, PackJob] | None:
    """Download one pack; None if the server has none or it cannot be used."""
    dest = os.path.join(download, rel.replace("/", "_"))
    try:
        # Not fsynced: every member is verified when imported, and the pack is gone after.
        size = sess.fetcher.fetch_file(
            f"{sess.s.contenturl}/{rel}", dest, cap, _progress(sess, "Downloading pack"), durable=False
        )
    except NotFoundError:
        return None
    except (DiskFullError, TreeIOError):
        raise
    except SwupdError as e:
        if sess.fetcher.patience.reason:  # the run gave up on the server: fullfiles would fare no better
            raise
        sess.out.step_ended()  # its bar goes with it, rather than standing below the warning
        sess.out.warning(f"pack {rel} unusable ({e}); using fullfiles")
        return None
    rep.bytes += size
    rep.packs.append(rel)
    log.info("%s: %d bytes for %d objects", rel, size, len(mine))
    return rel, PackJob(dest, cap * 4, mine)


def _import(sess, store, fetched: list[tuple[str, PackJob]], source_of, rep) -> None:
    if not fetched:
        return
    try:
        jobs = [job for _, job in fetched]
        results = strategy_for(sess.s.limits, jobs)(store, jobs, source_of, sess.s.limits)
    finally:
        for _, job in fetched:
            if os.path.exists(job.path):
                os.unlink(job.path)
    for (rel, _), result in zip(fetched, results, strict=True):
        rep.from_packs += result.objects + result.deltas
        rep.rejected += result.rejected
        for msg in result.rejected:
            sess.out.warning(f"{rel}: {msg}")


def _fullfiles(sess: Session, store: ObjectStore, missing: dict[str, Entry], download: str, rep: ObtainReport) -> None:
    jobs, where = [], {}
    for digest, e in missing.items():
        rel = layout.fullfile(e.version, digest)
        dest = os.path.join(download, f"{digest}.tar")
        jobs.append((f"{sess.s.contenturl}/{rel}", dest, fullfile_cap(e.size)))
        where[jobs[-1][0]] = (digest, dest)
    done: dict[str, int] = {}
    total = sum(e.size // 2 + 512 for e in missing.values())

    def progress(url: str, got: int, _total: int | None) -> None:
        done[url] = got
        sess.out.progress("Downloading files", min(sum(done.values()), total), total, nbytes=True)

    failures: list[BaseException] = []
    # A fullfile that fails its checks is fetched once more from its first byte: it may have
    # been resumed from a `.part` that an earlier run, or an earlier attempt, got wrong.
    for last in (False, True):
        results = sess.fetcher.fetch_many(jobs, progress, durable=False)
        again = []
        for url, error in results.items():
            digest, dest = where[url]
            if error is not None:
                failures.append(error)
                continue
            try:
                rep.bytes += os.path.getsize(dest)
                with open(dest, "rb") as f:
                    import_fullfile(store, f, missing[digest], sess.s.limits)
                rep.fullfiles += 1
            except (DiskFullError, TreeIOError) as e:
                failures.append(e)
            except (HashMismatchError, FormatError, SizeLimitError) as e:
                if not last:
                    again.append(url)
                elif isinstance(e, HashMismatchError):
                    said = f"{url} does not hash to the manifest's value (bad server data?)"
                    failures.append(HashMismatchError(said))
                else:
                    failures.append(e)
            except SwupdError as e:
                failures.append(e)
            finally:
                if os.path.exists(dest):
                    os.unlink(dest)
        jobs = [job for job in jobs if job[0] in again]
        if not jobs:
            break
    reason = sess.fetcher.patience.reason
    if failures and reason:  # the cause, not each file's symptom
        raise NetworkError(f"{len(failures)} file(s) not fetched: {reason}; giving up on the server")
    if failures:
        first = failures[0]
        if isinstance(first, SwupdError):
            raise type(first)(f"{first} ({len(failures)} file(s) could not be obtained)")
        raise first


def _progress(sess: Session, step: str):
    def report(done: int, total: int | None) -> None:
        sess.out.progress(step, done, total, nbytes=True)

    return report
