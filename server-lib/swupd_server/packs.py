"""Build stage 4: zero packs and delta packs.

A pack is a zstd-compressed tar of ready-made objects: `staged/<hash>.tar` members are
fullfiles byte for byte, `delta/<old>-<new>` members are deltas, so the device verifies and
caches each exactly as if it had fetched it alone. The outer compression mostly removes tar's
per-member headers, which otherwise cost as much as the deltas of a small update. A zero pack holds a
whole bundle; a delta pack holds, for one earlier bundle version, a delta for every changed
file where one pays off and the fullfile of everything else that is new.
"""

from __future__ import annotations

import os
import tarfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import zstandard
from swupd.format import layout
from swupd.format.compression import MAX_WINDOW
from swupd.format.manifest import Manifest

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

    def summary(self) -> str:
        zero = [p for p in self.packs if p.from_version == 0]
        delta = [p for p in self.packs if p.from_version]
        return (
            f"packs: {len(zero)} zero packs ({sum(p.bytes for p in zero)} bytes), {len(delta)} delta "
            f"packs ({sum(p.bytes for p in delta)} bytes, {sum(p.deltas for p in delta)} deltas)"
        )


_MAX_WINDOW_LOG = MAX_WINDOW.bit_length() - 1


def _write(dest: str, members: list[tuple[str, str]], mtime: int, level: int) -> int:
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = dest + ".tmp"
    # The device's decoder holds one window; a pack smaller than 8 MiB gets a window just
    # larger than its tar (members plus a generous 2 KiB of headers each), which loses nothing.
    size = sum(os.path.getsize(src) for _, src in members) + 2048 * (len(members) + 2)
    window_log = max(10, min(_MAX_WINDOW_LOG, size.bit_length()))
    params = zstandard.ZstdCompressionParameters.from_level(level, window_log=window_log, enable_ldm=True)
    with open(tmp, "wb") as raw, zstandard.ZstdCompressor(compression_params=params).stream_writer(raw) as zw:
        with tarfile.open(fileobj=zw, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for d in ("delta", "staged"):
                info = tarfile.TarInfo(d)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o700, mtime
                tar.addfile(info)
            for name, src in members:
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = os.path.getsize(src), 0o644, mtime
                with open(src, "rb") as f:
                    tar.addfile(info, f)
    os.replace(tmp, dest)
    return os.path.getsize(dest)


def _write_job(args: tuple[str, list[tuple[str, str]], int, int]) -> int:
    return _write(*args)


def _fullfile(fullfiles: FullfileReport, history: History, version: int, digest: str) -> str:
    return fullfiles.paths.get(digest) or history.path(layout.fullfile(version, digest))


def _zero_members(m: Manifest, fullfiles: FullfileReport, history: History) -> list[tuple[str, str]]:
    members, seen = [], set()
    for e in sorted(m.entries, key=lambda e: e.hash):
        if e.present and e.hash not in seen:
            seen.add(e.hash)
            members.append((layout.pack_fullfile_member(e.hash), _fullfile(fullfiles, history, e.version, e.hash)))
    return members


def _delta_members(
    plan: PackPlan, deltas: DeltaReport, fullfiles: FullfileReport, history: History
) -> tuple[list[tuple[str, str]], int]:
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
            members.setdefault(layout.pack_fullfile_member(e.hash), _fullfile(fullfiles, history, e.version, e.hash))
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
        members = _zero_members(result.manifest, fullfiles, history)
        jobs.append((PackInfo(name, cfg.version, 0, rel, 0, 0, len(members)), members, cfg.zero_pack_level))
    for plan in deltas.plans:
        rel = layout.pack(plan.version, plan.bundle, plan.from_version)
        members, ndeltas = _delta_members(plan, deltas, fullfiles, history)
        info = PackInfo(plan.bundle, plan.version, plan.from_version, rel, 0, ndeltas, len(members) - ndeltas)
        jobs.append((info, members, cfg.delta_pack_level))
    # Packs are independent: written side by side, the largest (a zero pack) first.
    args = [(os.path.join(stage, info.path), members, cfg.timestamp, level) for info, members, level in jobs]
    order = sorted(range(len(jobs)), key=lambda i: -len(jobs[i][1]))
    if cfg.jobs > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(min(cfg.jobs, len(jobs))) as pool:
            sizes = dict(zip(order, pool.map(_write_job, [args[i] for i in order]), strict=True))
    else:
        sizes = {i: _write_job(args[i]) for i in order}
    for i, (info, _, _) in enumerate(jobs):
        info.bytes = sizes[i]
        out.packs.append(info)
    return out
