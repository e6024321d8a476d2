"""Importing the packs an update downloaded: the interface every way of doing it has, and the
plain way.

A strategy takes the packs of a whole update at once and returns one result per pack, in the
order given; whatever way it works, it stores the same verified objects and reports the same
results. `one_process` imports every member of every pack in turn, in this process: the
reference the others are compared with. `parallel.InProcesses` splits the members between
processes, which an update with many objects gains from (parallel.py says why and how).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from swupd.format.limits import LIMITS, Limits
from swupd.format.manifest import Entry

from .importer import PackResult, import_pack
from .objects import ObjectStore

# source_of(hash, cap): the bytes of a local object with that hash (a delta's source), or None.
SourceOf = Callable[[str, int], bytes | None]
# claims(pack index) -> claim(member index): whether this process imports that member.
Claims = Callable[[int], Callable[[int], bool]]


@dataclass(frozen=True)
class PackJob:
    """One downloaded pack to import: its file, decompression cap and the objects wanted from it."""

    path: str
    cap: int
    wanted: dict[str, Entry]


class Strategy(Protocol):
    """A way to import the packs of an update into `store`: one result per job, in order."""

    def __call__(
        self, store: ObjectStore, jobs: Sequence[PackJob], source_of: SourceOf, limits: Limits = LIMITS
    ) -> list[PackResult]: ...


def one_process(
    store: ObjectStore, jobs: Sequence[PackJob], source_of: SourceOf, limits: Limits = LIMITS
) -> list[PackResult]:
    """Every member of every pack, in this process."""
    return import_each(store, jobs, source_of, limits)


def import_each(
    store: ObjectStore, jobs: Sequence[PackJob], source_of: SourceOf, limits: Limits, claims: Claims | None = None
) -> list[PackResult]:
    """Each pack in turn; with `claims`, only the members it grants this process."""
    results = []
    for i, job in enumerate(jobs):
        with open(job.path, "rb") as f:
            claim = claims(i) if claims is not None else None
            results.append(import_pack(store, f, job.cap, job.wanted, source_of, limits, claim))
    return results
