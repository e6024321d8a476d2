"""Both ways of importing packs, on the same real packs: the same store, the same results.

The packs are the ones swupd-server published for the test stream: every zero pack of versions
10 and 20 and every delta pack from 10 to 20 (several offer the same objects), and a damaged
copy of one that offers each object twice, one copy of some of them bad. Delta sources are read
from a device installed at version 10, as an update reads them from its tree.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import clientkit as ck
import pytest
import zstandard
from clientkit import Device
from swupd.format import filehash
from swupd.format import manifest as mf
from swupd.format.limits import LIMITS
from swupd.format.manifest import Type
from swupd.store import parallel
from swupd.store.objects import ObjectStore
from swupd.store.packimport import PackJob, SourceOf, Strategy, import_each, one_process
from swupd.store.parallel import InProcesses

_NAME = "pack-"


def _manifest(www: str, version: int, bundle: str) -> mf.Manifest:
    """A bundle's manifest as published for `version` (it may come from an earlier version)."""
    mom = mf.loads(Path(www, str(version), "Manifest.MoM").read_bytes(), is_mom=True)
    e = mom.by_path()[bundle]
    return mf.loads(Path(www, str(e.version), f"Manifest.{bundle}").read_bytes())


def _jobs(www: str) -> list[PackJob]:
    """Every pack of versions 10 and 20, each with what a device would want from it: the
    bundle's objects new since the version the pack is from."""
    jobs = []
    for version in (10, 20):
        for p in sorted(Path(www, str(version)).glob(f"{_NAME}*-from-*.tar")):
            bundle, from_version = p.name.removeprefix(_NAME).removesuffix(".tar").rsplit("-from-", 1)
            m = _manifest(www, version, bundle)
            wanted = {e.hash: e for e in m.entries if e.present and e.version > int(from_version)}
            jobs.append(PackJob(str(p), 1 << 30, wanted))
    return jobs


def _damaged(job: PackJob, dest: Path) -> PackJob:
    """`job`'s pack with every member twice; of every seventh object the first copy, and of
    every third the second, holds another member's bytes (so some objects come from their
    second copy, and a process may meet a bad copy of an object another has stored)."""
    with open(job.path, "rb") as f:
        raw = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True).read()
    with tarfile.open(fileobj=io.BytesIO(raw)) as tin, tarfile.open(dest, "w", format=tarfile.USTAR_FORMAT) as tout:
        files = [m for m in tin.getmembers() if m.isreg()]
        for copy in (0, 1):
            for i, m in enumerate(files):
                bad = i % 7 == 0 if copy == 0 else i % 3 == 0
                donor = files[(i + 1) % len(files)] if bad else m
                header = tin.getmember(m.name)
                header.size = donor.size
                tout.addfile(header, tin.extractfile(donor))
    return PackJob(str(dest), 1 << 30, job.wanted)


def _sources(device: Device, www: str) -> SourceOf:
    """source_of for delta members: the bytes of the version 10 object with that hash, as the
    installed tree holds them."""
    paths: dict[str, str] = {}
    for bundle in ck.ALL_BUNDLES:
        for e in _manifest(www, 10, bundle).entries:
            if e.present and e.type == Type.FILE:
                paths.setdefault(e.hash, os.path.join(device.root, e.path.lstrip("/")))

    def source_of(digest: str, cap: int) -> bytes | None:
        path = paths.get(digest)
        if path is None or os.path.getsize(path) > cap:
            return None
        return Path(path).read_bytes()

    return source_of


def _contents(store: ObjectStore) -> dict[str, tuple]:
    """Every object in the store: its kind, mode, owner, xattrs and bytes (or target). (The store
    leaves times alone: they are the tree's to set.)"""
    out = {}
    for shard in sorted(os.listdir(store.dir)):
        for name in sorted(os.listdir(os.path.join(store.dir, shard))):
            path = os.path.join(store.dir, shard, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                body: bytes | str = os.readlink(path)
            elif stat.S_ISDIR(st.st_mode):
                body = ""
            else:
                body = Path(path).read_bytes()
            xattrs = {} if stat.S_ISLNK(st.st_mode) else {n: os.getxattr(path, n) for n in sorted(os.listxattr(path))}
            out[f"{shard}/{name}"] = (st.st_mode, st.st_uid, st.st_gid, xattrs, body)
    return out


def _all_jobs(stream: ck.Stream, tmp_path: Path) -> list[PackJob]:
    jobs = _jobs(stream.www)
    largest = max(jobs, key=lambda j: os.path.getsize(j.path))
    return [_damaged(largest, tmp_path / "damaged.tar"), *jobs]


@pytest.mark.parametrize("processes", [2, 3])
def test_split_import_stores_and_reports_what_one_process_does(
    stream: ck.Stream, v10_all: Device, tmp_path: Path, processes: int
) -> None:
    jobs = _all_jobs(stream, tmp_path)
    source_of = _sources(v10_all, stream.www)
    strategies: dict[str, Strategy] = {"one process": one_process, "in processes": InProcesses(processes)}
    got = {}
    for name, strategy in strategies.items():
        store = ObjectStore(str(tmp_path / name.replace(" ", "-")))
        results = strategy(store, jobs, source_of)
        summary = [(r.objects, r.deltas, r.rejected) for r in results]
        got[name] = (summary, _contents(store), sorted(store.fresh))
    plain, split = got["one process"], got["in processes"]
    assert split[0] == plain[0]
    assert split[1] == plain[1]
    assert split[2] == plain[2]
    # The comparison is worth something: real work of both kinds, all of it verified.
    assert sum(r[0] for r in plain[0]) > 0 and sum(r[1] for r in plain[0]) > 0
    assert plain[0][0][2] and all(r[2] == [] for r in plain[0][1:]), "only the damaged pack has refusals"
    assert not any("unreadable" in r for r in plain[0][0][2]), "the damaged pack is read to its end"
    store = ObjectStore(str(tmp_path / "one-process"))
    assert set(plain[2]) == {k.split("/")[1] for k in plain[1]}
    assert all(filehash.hash_path(store.path(h)) == h for h in plain[2])


def test_what_processes_did_is_counted_as_one_process_meets_it(
    stream: ck.Stream, v10_all: Device, tmp_path: Path
) -> None:
    """Two processes' views of one store, taking alternate runs of four members, one after the
    other (a schedule the split import may take): the second stores again, or refuses a bad
    copy of, objects the first stored, and not knowing it, counts them. Put together, the
    results are those of one process."""
    jobs = _all_jobs(stream, tmp_path)
    source_of = _sources(v10_all, stream.www)
    plain_store = ObjectStore(str(tmp_path / "plain"))
    plain = one_process(plain_store, jobs, source_of)
    first, second = ObjectStore(str(tmp_path / "split")), ObjectStore(str(tmp_path / "split"))

    def runs(mine: int):
        return lambda pack: lambda member: member // 4 % 2 == mine

    got = import_each(first, jobs, source_of, LIMITS, runs(0))
    theirs = import_each(second, jobs, source_of, LIMITS, runs(1))
    counted_twice = sum(r.objects + r.deltas for r in got + theirs) - sum(r.objects + r.deltas for r in plain)
    assert counted_twice > 0, "the schedule meets what the results must be put together from"
    parallel._merge(got, first, parallel._report(theirs, second.fresh))
    parallel._settle(got)
    assert [(r.objects, r.deltas, r.rejected) for r in got] == [(r.objects, r.deltas, r.rejected) for r in plain]
    assert first.fresh == plain_store.fresh
    assert _contents(first) == _contents(plain_store)
