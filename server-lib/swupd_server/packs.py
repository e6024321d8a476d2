"""Build stage 4: zero packs and delta packs.

A pack is a zstd-compressed tar of ready-made objects: `staged/<hash>.tar` members are
fullfiles byte for byte, `delta/<old>/<new>` members are deltas, so the device verifies and
caches each exactly as if it had fetched it alone. The outer compression mostly removes tar's
per-member headers, which otherwise cost as much as the deltas of a small update. A zero pack
holds the bundle's small objects first published in its version (fullfiles up to
`BuildConfig.zero_pack_max_fullfile`): a device installing the bundle takes the zero packs of
the versions its objects come from, and larger objects as fullfiles, one request each, so no
version republishes what an earlier one holds and small files still come many to a download.
A delta pack holds, for one earlier bundle version, a delta for every
changed file where one pays off and the fullfile of every other new object up to
`BuildConfig.delta_pack_max_fullfile` (larger ones the device fetches as fullfiles, so no pack
copies another's content in bulk); a delta pack with nothing in it is not written. The tar is
compressed segment by segment (segments.py), so a rebuild copies what did not change.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from typing import BinaryIO

from swupd.format import layout, ustar
from swupd.format.durable import atomic_file
from swupd.format.manifest import Manifest

from . import segments, workers
from .config import BuildConfig
from .deltas import DeltaReport, PackPlan
from .fullfiles import FullfileReport
from .history import History
from .manifests import ManifestReport


@dataclass
class PackInfo:
    bundle: str
    version: int
    from_version: int
    path: str
    bytes: int
    deltas: int
    fullfiles: int


@dataclass
class PackReport:
    packs: list[PackInfo] = field(default_factory=list)
    frames: int = 0
    copied: int = 0

    def summary(self) -> str:
        zero = [p for p in self.packs if p.from_version == 0]
        delta = [p for p in self.packs if p.from_version]
        return (
            f"packs: {len(zero)} zero packs ({sum(p.bytes for p in zero)} bytes), {len(delta)} delta "
            f"packs ({sum(p.bytes for p in delta)} bytes, {sum(p.deltas for p in delta)} deltas); "
            f"{self.copied} of {self.frames} frames copied from earlier packs"
        )


def _copy_range(src: str, offset: int, length: int, out: BinaryIO) -> None:
    """Append `length` bytes of `src` from `offset` to `out`, in the kernel where it can."""
    out.flush()
    with open(src, "rb") as f:
        try:
            while length:
                n = os.copy_file_range(f.fileno(), out.fileno(), length, offset)
                if n <= 0:
                    raise OSError(f"{src} is shorter than its recorded segment")
                offset, length = offset + n, length - n
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            f.seek(offset)
            while length:
                chunk = f.read(min(length, 1 << 20))
                if not chunk:
                    raise OSError(f"{src} is shorter than its recorded segment") from None
                out.write(chunk)
                length -= len(chunk)
    out.seek(0, os.SEEK_END)


def _dirs(mtime: int) -> bytes:
    return b"".join(ustar.header(d, ustar.DIRECTORY, 0o700, 0, 0, 0, mtime) for d in layout.PACK_DIRS)


@dataclass(frozen=True, slots=True)
class _Job:
    """One pack for a worker process to write: its members (name in the pack, file), and the
    same pack of an earlier version whose frames it may copy."""

    stage: str
    rel: str
    members: list[tuple[str, str]]
    mtime: int
    level: int
    www: str
    previous: str | None  # relative to www
    cache_dir: str


def _write(job: _Job) -> tuple[int, int, int]:
    """Write one pack; returns its size and how many frames were copied and compressed."""
    dest = os.path.join(job.stage, job.rel)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    previous = segments.known_frames(job.www, job.previous, job.cache_dir) if job.previous else []
    todo = segments.plan(job.members, previous)
    frames: list[segments.Frame] = []
    # Not fsynced: publishing syncs the staging file system before any of it becomes visible.
    with atomic_file(dest, sync=False) as out:
        head = _dirs(job.mtime)
        segments.write_frame(out, [head], len(head), job.level)
        for fr in todo.copy:
            start = out.tell()
            _copy_range(os.path.join(job.www, job.previous), fr.offset, fr.length, out)  # type: ignore[arg-type]
            frames.append(segments.Frame(start, fr.length, fr.raw, fr.members))
        for seg in todo.fresh:
            start = out.tell()
            spans, pieces = segments.tar_bytes(seg)
            raw = sum(spans.values())
            segments.write_frame(out, pieces, raw, job.level)
            frames.append(segments.Frame(start, out.tell() - start, raw, spans))
        end = ustar.END
        segments.write_frame(out, [end], len(end), job.level)
    segments.remember(job.cache_dir, job.rel, dest, frames)
    return os.path.getsize(dest), len(todo.copy), len(todo.fresh)


def _previous(history: History, fmt: int, version: int, bundle: str, from_version: int) -> str | None:
    """The same bundle's pack from the same version in the newest earlier version of the same
    format that has one (relative to www)."""
    for v in reversed(history.versions_of(fmt)):
        if from_version < v < version:
            rel = layout.pack(v, bundle, from_version)
            if os.path.isfile(history.path(rel)):
                return rel
    return None


def _fullfile(fullfiles: FullfileReport, history: History, version: int, digest: str) -> str:
    return fullfiles.paths.get(digest) or history.path(layout.fullfile(version, digest))


def _zero_members(
    m: Manifest, fullfiles: FullfileReport, history: History, version: int, small: int
) -> list[tuple[str, str]]:
    members, seen = [], set()
    for e in sorted(m.entries, key=lambda e: e.hash):
        if e.present and e.version == version and e.hash not in seen:
            seen.add(e.hash)
            path = _fullfile(fullfiles, history, e.version, e.hash)
            if os.path.getsize(path) <= small:
                members.append((layout.pack_fullfile_member(e.hash), path))
    return members


def _delta_members(
    plan: PackPlan, deltas: DeltaReport, fullfiles: FullfileReport, history: History, small: int
) -> tuple[list[tuple[str, str]], int]:
    """Deltas, and the fullfiles of new objects up to `small` bytes: a larger new object is
    fetched as its own fullfile, so delta packs from several versions never copy it again."""
    # Content the old bundle already has, under any path, is copied on the device, not sent.
    old = {e.hash for e in plan.old.entries if e.present}
    members: dict[str, str] = {}
    ndeltas = 0
    for e in plan.new.entries:
        if not e.present or e.version <= plan.from_version or e.hash in old:
            continue
        source = plan.pairs.get(e.hash)
        delta = deltas.paths.get((source, e.hash)) if source else None
        if delta:
            name = layout.pack_delta_member(source, e.hash)
            if name not in members:
                members[name] = delta
                ndeltas += 1
        else:
            path = _fullfile(fullfiles, history, e.version, e.hash)
            if os.path.getsize(path) <= small:
                members.setdefault(layout.pack_fullfile_member(e.hash), path)
    return sorted(members.items()), ndeltas


def build(
    report: ManifestReport,
    deltas: DeltaReport,
    fullfiles: FullfileReport,
    history: History,
    stage: str,
    cfg: BuildConfig,
) -> PackReport:
    out = PackReport()
    jobs: list[tuple[PackInfo, list[tuple[str, str]], int]] = []
    for name, result in sorted(report.bundles.items()):
        if not result.written:
            continue
        rel = layout.pack(cfg.version, name, 0)
        members = _zero_members(result.manifest, fullfiles, history, cfg.version, cfg.zero_pack_max_fullfile)
        if not members:
            continue
        jobs.append((PackInfo(name, cfg.version, 0, rel, 0, 0, len(members)), members, cfg.zero_pack_level))
    for plan in deltas.plans:
        rel = layout.pack(plan.version, plan.bundle, plan.from_version)
        members, ndeltas = _delta_members(plan, deltas, fullfiles, history, cfg.delta_pack_max_fullfile)
        if not members:
            continue  # the device takes what it needs from the zero pack or the fullfiles
        info = PackInfo(plan.bundle, plan.version, plan.from_version, rel, 0, ndeltas, len(members) - ndeltas)
        jobs.append((info, members, cfg.delta_pack_level))
    # Packs are independent: written side by side, the largest (a zero pack) first.
    args = [
        _Job(
            stage,
            info.path,
            members,
            cfg.timestamp,
            level,
            cfg.www,
            _previous(history, cfg.format, cfg.version, info.bundle, info.from_version),
            cfg.cache_dir,
        )
        for info, members, level in jobs
    ]
    order = sorted(range(len(jobs)), key=lambda i: -len(jobs[i][1]))
    with cfg.progress.stage("packs", len(jobs), unit="packs") as advance:
        todo, par = [args[i] for i in order], min(cfg.jobs, len(jobs))
        made = workers.map(_write, todo, par, done=lambda rs: advance(len(rs), sum(r[0] for r in rs)))
    results = dict(zip(order, made, strict=True))
    for i, (info, _, _) in enumerate(jobs):
        info.bytes, copied, fresh = results[i]
        out.copied += copied
        out.frames += copied + fresh
        out.packs.append(info)
    return out
