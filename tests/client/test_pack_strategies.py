"""Both ways of importing packs, on the same real packs: the same store, the same results; and
the workings of the split one (its processes, their reports, the frontier they share).

The packs are the ones swupd-server published for the test stream: every zero pack of versions
10 and 20 and every delta pack from 10 to 20 (several offer the same objects), and a damaged
copy of one that offers each object twice, one copy of some of them bad. Delta sources are read
from a device installed at version 10, as an update reads them from its tree.
"""

from __future__ import annotations

import io
import json
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
from swupd.format.errors import TreeIOError
from swupd.format.limits import LIMITS, Limits
from swupd.format.manifest import Entry, Type
from swupd.store import parallel
from swupd.store.objects import ObjectStore
from swupd.store.packimport import PackJob, SourceOf, Strategy, import_each, one_process
from swupd.store.parallel import InProcesses, processes_for

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


def _zero_pack_wanted(stream: ck.Stream) -> tuple[str, dict[str, Entry]]:
    """os-core's zero pack of version 10 (its small objects, many to a pack) and the regular
    files it holds, as entries."""
    pack = os.path.join(stream.www, "10", f"{_NAME}os-core-from-0.tar")
    with open(pack, "rb") as f:
        raw = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True).read()
    with tarfile.open(fileobj=io.BytesIO(raw)) as t:
        packed = {m.name.removeprefix("staged/").removesuffix(".tar") for m in t.getmembers() if m.isreg()}
    m = _manifest(stream.www, 10, "os-core")
    return pack, {e.hash: e for e in m.entries if e.type == Type.FILE and e.hash in packed}


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


# The split strategy's own workings: its processes, their reports and the shared frontier.


def test_pack_import_split_over_processes(stream: ck.Stream, tmp_path: Path) -> None:
    """Two processes share a pack: every object arrives once, verified, and the parent learns
    which objects its child verified (so staging need not hash them again)."""
    pack, wanted = _zero_pack_wanted(stream)
    assert processes_for(Limits(max_import_processes=1), 10_000) == 1
    assert processes_for(Limits(), 10) == 1, "a small pack is not worth a fork"
    store = ObjectStore(str(tmp_path / "objects"))
    [result] = InProcesses(2)(store, [PackJob(pack, 1 << 30, wanted)], lambda h, cap: None)
    assert result.rejected == [] and result.objects == len(wanted)
    assert all(store.has(h) for h in wanted)
    assert store.fresh >= set(wanted)


def test_a_pack_unreadable_from_a_header_on_is_reported_once(stream: ck.Stream, tmp_path: Path) -> None:
    """Every process meets a bad header at the same place: the members before it are stored,
    the refusal is reported once."""
    pack, wanted = _zero_pack_wanted(stream)
    with open(pack, "rb") as f:
        raw = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True).read()
    with tarfile.open(fileobj=io.BytesIO(raw)) as t:
        members = [m for m in t.getmembers() if m.isreg()]
    cut = members[len(members) // 2]
    bad = bytearray(raw[cut.offset : cut.offset + 512])
    bad[148:156] = b"0000000\0"  # a wrong checksum
    broken = tmp_path / "pack.tar"
    broken.write_bytes(ck.zstd(raw[: cut.offset] + bytes(bad) + raw[cut.offset + 512 :]))
    store = ObjectStore(str(tmp_path / "objects"))
    [result] = InProcesses(2)(store, [PackJob(str(broken), 1 << 30, wanted)], lambda h, cap: None)
    assert len(result.rejected) == 1 and "checksum" in result.rejected[0], result.rejected
    before = {m.name.removeprefix("staged/").removesuffix(".tar") for m in members[: len(members) // 2]}
    assert result.objects == len(before & set(wanted)) > 0
    assert all(store.has(h) for h in before & set(wanted))


def test_several_packs_imported_by_one_set_of_processes(stream: ck.Stream, tmp_path: Path) -> None:
    """One fork serves every pack of an update: each process takes its share of each pack in
    turn, and every pack's result counts what all processes took from that pack."""
    pack, wanted = _zero_pack_wanted(stream)
    digests = sorted(wanted)
    first = {h: wanted[h] for h in digests[::3]}
    second = {h: wanted[h] for h in digests if h not in first}
    copy = tmp_path / "second.tar"
    copy.write_bytes(Path(pack).read_bytes())
    store = ObjectStore(str(tmp_path / "objects"))
    jobs = [PackJob(pack, 1 << 30, first), PackJob(str(copy), 1 << 30, second)]
    results = InProcesses(2)(store, jobs, lambda h, cap: None)
    assert [r.objects for r in results] == [len(first), len(second)]
    assert all(r.rejected == [] for r in results)
    assert all(store.has(h) for h in wanted) and store.fresh >= set(wanted)


def test_pack_import_failure_in_any_process_is_reported(stream: ck.Stream, tmp_path: Path) -> None:
    """A write failure while importing (here: store shards that are files) fails the import with
    the client's I/O error, and leaves no process behind."""
    pack, wanted = _zero_pack_wanted(stream)
    store = ObjectStore(str(tmp_path / "objects"))
    for prefix in {h[:2] for h in wanted}:
        Path(store.dir, prefix).write_bytes(b"not a directory")
    with pytest.raises(TreeIOError):
        InProcesses(2)(store, [PackJob(pack, 1 << 30, wanted)], lambda h, cap: None)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


def test_pack_import_failure_in_a_child_keeps_its_class(stream: ck.Stream, tmp_path: Path) -> None:
    """A child that meets the failure (here it takes every member) reports it, and the parent
    raises the same error class: a full disk in a child stays a full disk."""
    pack, wanted = _zero_pack_wanted(stream)
    store = ObjectStore(str(tmp_path / "objects"))
    for prefix in {h[:2] for h in wanted}:
        Path(store.dir, prefix).write_bytes(b"not a directory")
    jobs = [PackJob(pack, 1 << 30, wanted)]
    with parallel._Frontier(1) as frontier:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover (the child never returns)
            os.close(r)
            parallel._child(w, store, jobs, lambda h, cap: None, parallel.LIMITS, frontier)
        os.close(w)
        report = parallel._collect(pid, r)
    assert report is not None and report["error"] == "TreeIOError"
    with pytest.raises(TreeIOError):
        parallel._merge([parallel.PackResult()], store, report)


def test_pack_members_are_taken_once_whoever_reaches_them(tmp_path: Path) -> None:
    """The frontier hands each member to exactly one process, whatever order they arrive in."""
    with parallel._Frontier(2) as frontier:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover
            os.close(r)
            taken = [i for i in range(5000) if frontier(i)]
            frontier.pack = 1
            taken += [10_000 + i for i in range(300) if frontier(i)]
            os.write(w, json.dumps(taken).encode())
            os._exit(0)
        os.close(w)
        mine = [i for i in range(5000) if frontier(i)]
        frontier.pack = 1
        mine += [10_000 + i for i in range(300) if frontier(i)]
        with os.fdopen(r, "rb") as f:
            theirs = json.loads(f.read())
        os.waitpid(pid, 0)
    assert sorted(mine + theirs) == list(range(5000)) + [10_000 + i for i in range(300)]
