"""Importing packs in several processes: the strategy an update with many objects takes.

The work per pack member (applying a delta, hashing, writing the object) is short and mostly
interpreted Python, so threads only contend for the interpreter lock; processes do not. Each
process reads the whole pack (decompressing it and parsing its headers costs little beside the
members' own work) and imports the members it claims: whoever reaches a member first takes it
(see `_Frontier`), so a process held up by one large delta does not leave the others idle at
the end. A child only ever adds verified objects to the store, like the parent, and reports
what it did through a pipe; a child that fails leaves its members missing, which the caller
then fetches as fullfiles, as after any bad member. The results are those of
`packimport.one_process`, which the tests compare it with.
"""

from __future__ import annotations

import fcntl
import gc
import json
import mmap
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from swupd.format import errors, layout
from swupd.format.errors import SwupdError
from swupd.format.limits import LIMITS, Limits

from .importer import PackResult
from .objects import ObjectStore
from .packimport import PackJob, SourceOf, Strategy, import_each, one_process

# Below this many wanted objects a pack is imported in one process: forking costs more.
_MIN_OBJECTS_TO_SPLIT = 64


def processes_for(limits: Limits, objects: int) -> int:
    """How many processes import a pack offering `objects` wanted objects on this machine."""
    if objects < _MIN_OBJECTS_TO_SPLIT or not hasattr(os, "fork") or not hasattr(os, "memfd_create"):
        return 1
    return max(1, min(limits.max_import_processes, len(os.sched_getaffinity(0))))


def strategy_for(limits: Limits, jobs: Sequence[PackJob]) -> Strategy:
    """How to import `jobs` on this machine: split between processes when that pays."""
    n = processes_for(limits, sum(len(j.wanted) for j in jobs))
    return one_process if n == 1 else InProcesses(n)


@dataclass(frozen=True)
class InProcesses:
    """Several packs imported by one set of `processes` processes, all working through each pack
    in turn: one fork and one wait for a whole update, not one per bundle."""

    processes: int

    def __call__(
        self, store: ObjectStore, jobs: Sequence[PackJob], source_of: SourceOf, limits: Limits = LIMITS
    ) -> list[PackResult]:
        if self.processes <= 1:
            return one_process(store, jobs, source_of, limits)
        children: list[tuple[int, int]] = []
        # Objects alive now are left out of garbage collection in both processes, so neither
        # walks (and so copies) the pages the fork shares.
        gc.freeze()
        with _Frontier(len(jobs)) as frontier:
            try:
                for _ in range(1, self.processes):
                    r, w = os.pipe()
                    pid = os.fork()
                    if pid == 0:  # pragma: no cover (runs in the child, which never returns)
                        os.close(r)
                        _child(w, store, jobs, source_of, limits, frontier)
                    os.close(w)
                    children.append((pid, r))
                results = import_each(store, jobs, source_of, limits, frontier.claims)
            finally:
                reports = [_collect(pid, r) for pid, r in children]
                gc.unfreeze()
        for report in reports:
            _merge(results, store, report)
        _settle(results)
        return results


class _Frontier:
    """Which pack members are taken: per pack, the index of the first member nobody has taken,
    in memory shared by the processes, changed under a POSIX record lock (released by the
    kernel if its holder dies, so a killed child cannot stall the others). A process takes a
    few members at a time, and only if it reaches them before anyone else, so members are
    never imported twice."""

    _SLOT = struct.Struct("<q")
    # Members taken at once: a quarter of the locking, at most three members of imbalance.
    _RUN = 4

    def __init__(self, packs: int) -> None:
        self.fd = os.memfd_create("swupd-pack-frontier")
        os.ftruncate(self.fd, self._SLOT.size * packs)
        self.mem = mmap.mmap(self.fd, self._SLOT.size * packs)
        self._pack = 0
        self._mine_to = 0  # this process holds the members below this index, from `_mine_from`
        self._mine_from = 0

    @property
    def pack(self) -> int:
        return self._pack

    @pack.setter
    def pack(self, index: int) -> None:
        self._pack, self._mine_from, self._mine_to = index, 0, 0

    def claims(self, pack: int) -> _Frontier:
        """This frontier, moved to pack number `pack` (see `packimport.Claims`)."""
        self.pack = pack
        return self

    def __enter__(self) -> _Frontier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.mem.close()
        os.close(self.fd)

    def __call__(self, index: int) -> bool:
        if self._mine_from <= index < self._mine_to:
            return True
        at = self._pack * self._SLOT.size
        # Read under the lock too: Python promises no untorn read of memory another process
        # writes, and a torn value could skip a member nobody has taken.
        fcntl.lockf(self.fd, fcntl.LOCK_EX)
        try:
            if self._SLOT.unpack_from(self.mem, at)[0] > index:
                return False
            self._SLOT.pack_into(self.mem, at, index + self._RUN)
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)
        self._mine_from, self._mine_to = index, index + self._RUN
        return True


def _child(
    w: int, store: ObjectStore, jobs: Sequence[PackJob], source_of: SourceOf, limits: Limits, frontier: _Frontier
) -> None:
    """Import what this process takes of every pack and write a JSON report to `w`; never
    returns."""
    status = 0
    try:
        before = set(store.fresh)
        try:
            got = import_each(store, jobs, source_of, limits, frontier.claims)
            report = _report(got, store.fresh - before)
        except SwupdError as e:
            report = {"error": type(e).__name__, "message": str(e)}
        except OSError as e:
            report = {"error": "TreeIOError", "message": f"importing a pack: {e.strerror}"}
        with os.fdopen(w, "wb") as out:
            out.write(json.dumps(report).encode())
    except BaseException:
        status = 1
    finally:
        os._exit(status)


def _report(results: list[PackResult], fresh: set[str]) -> dict:
    """What a child tells the parent: what each pack's members came to, and the objects it
    verified."""
    packs = [
        {"rejected": r.rejected, "stored": r.stored, "refused": {k: list(v) for k, v in r.refused.items()}}
        for r in results
    ]
    return {"packs": packs, "fresh": sorted(fresh)}


def _collect(pid: int, r: int) -> dict | None:
    """A child's report, once it has exited; None if it died without one."""
    chunks = []
    with os.fdopen(r, "rb") as f:
        while chunk := f.read(1 << 16):
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    try:
        report = json.loads(b"".join(chunks))
    except ValueError:
        return None
    return report if isinstance(report, dict) and os.waitstatus_to_exitcode(status) == 0 else None


def _merge(results: list[PackResult], store: ObjectStore, report: dict | None) -> None:
    if report is None:
        results[0].rejected.append("a pack import process died; its objects are fetched as fullfiles")
        return
    if "error" in report:
        cls = getattr(errors, str(report["error"]), None)
        if not (isinstance(cls, type) and issubclass(cls, SwupdError)):
            cls = SwupdError
        raise cls(str(report.get("message", "pack import failed")))
    for result, got in zip(results, report["packs"], strict=True):
        # A member is reported by the process that took it; an archive that cannot be read on
        # is met by every process, and reported once.
        result.rejected += [str(x) for x in got["rejected"] if str(x) not in result.rejected]
        result.stored.update({int(k): str(v) for k, v in got["stored"].items()})
        result.refused.update({int(k): (str(v[0]), str(v[1])) for k, v in got["refused"].items()})
    store.fresh.update(str(x) for x in report["fresh"])


def _settle(results: list[PackResult]) -> None:
    """Count and report what all processes did as one process would have: it meets the
    members pack by pack, in order, and passes over one whose object has arrived before it (so
    counts it nowhere and refuses it never). Processes that do not share what they stored may
    each take the same object from different members; only its first member counts."""
    arrived: set[str] = set()
    for result in results:
        refusals = {message for _, message in result.refused.values()}
        others = [r for r in result.rejected if r not in refusals]
        met = [(i, name, "") for i, name in result.stored.items()]
        met += [(i, name, message) for i, (name, message) in result.refused.items()]
        met.sort()
        result.objects = result.deltas = 0
        result.rejected = []
        for _, name, refusal in met:
            digest = name.removesuffix(".tar").rsplit("/", 1)[-1]
            if digest in arrived:
                continue
            if refusal:
                result.rejected.append(refusal)
                continue
            arrived.add(digest)
            if name.startswith(layout.PACK_DELTA_DIR):
                result.deltas += 1
            else:
                result.objects += 1
        result.rejected += others
