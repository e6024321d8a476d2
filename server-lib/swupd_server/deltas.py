"""Build stage 3: binary deltas from earlier versions.

For each earlier version a delta pack is made from, every regular file that changed gets a
delta against its old content: the same path, or for a file that appeared under a new name, a
removed file whose name matches with its digits ignored (a library or interpreter moving to a
new versioned directory). Each codec is tried, the smallest result kept, and it is kept only
if it is smaller than the file's compressed fullfile and applying it reproduces the exact
hash. Deltas are computed once per (old hash, new hash) pair and shared by all packs.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field

from swupd.format import delta as codec
from swupd.format import filehash, layout
from swupd.format.durable import write_atomic
from swupd.format.errors import SwupdError, UsageError
from swupd.format.fullfile import Meta
from swupd.format.fullfile import read as read_fullfile
from swupd.format.limits import Limits
from swupd.format.manifest import Entry, Manifest, Type

from . import encode, workers
from .config import BuildConfig
from .fullfiles import FullfileReport
from .history import History
from .manifests import ManifestReport
from .scan import Item

_DIGITS = re.compile(r"\d+")
_NONE = ".none"


@dataclass
class PackPlan:
    """One delta pack to write: a bundle from an old bundle version to its current one."""

    bundle: str
    version: int
    from_version: int
    old: Manifest
    new: Manifest
    # new hash -> old hash, for every changed file a delta was tried for
    pairs: dict[str, str] = field(default_factory=dict)


@dataclass
class DeltaReport:
    sources: list[int] = field(default_factory=list)
    plans: list[PackPlan] = field(default_factory=list)
    tried: int = 0
    renamed: int = 0
    # (old hash, new hash) -> delta file, only for deltas worth using
    paths: dict[tuple[str, str], str] = field(default_factory=dict)
    bytes: int = 0
    by_codec: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        codecs = ", ".join(f"{k} {v}" for k, v in sorted(self.by_codec.items())) or "none"
        return (
            f"deltas: from {self.sources or 'no earlier version'}: {len(self.paths)} of {self.tried} "
            f"tried are used ({self.renamed} across renames), {self.bytes} bytes; codecs: {codecs}"
        )


def source_versions(history: History, cfg: BuildConfig) -> list[int]:
    """The earlier versions to make delta packs from, as asked or the last `cfg.deltas`."""
    same = [v for v in history.versions_of(cfg.format) if v < cfg.version]
    if cfg.delta_versions is None:
        return same[-cfg.deltas :] if cfg.deltas > 0 else []
    missing = [v for v in cfg.delta_versions if v not in same]
    if missing:
        raise UsageError(f"delta source version(s) {', '.join(map(str, missing))} not published in format {cfg.format}")
    return sorted(set(cfg.delta_versions))


def _short(path: str) -> str:
    return _DIGITS.sub("#", path)


def _pairs(old: Manifest, new: Manifest, since: int, cfg: BuildConfig) -> tuple[dict[str, Entry], int]:
    """new hash -> old entry to make a delta from; and how many pairs are renames."""
    lim = cfg.limits
    old_by_path = old.by_path()
    new_paths = {e.path for e in new.entries if e.present}

    def usable(e: Entry) -> bool:
        return e.present and e.type == Type.FILE and 0 < e.size <= lim.max_delta_source_bytes

    removed: dict[str, list[Entry]] = {}
    for e in old.entries:
        if usable(e) and e.path not in new_paths:
            removed.setdefault(_short(e.path), []).append(e)
    pairs: dict[str, Entry] = {}
    renamed = 0
    for e in new.entries:
        if not e.present or e.type != Type.FILE or e.version <= since:
            continue
        if not lim.min_delta_target_bytes <= e.size <= lim.max_delta_source_bytes:
            continue
        prev = old_by_path.get(e.path)
        if prev is not None:
            if usable(prev) and prev.hash != e.hash:
                pairs.setdefault(e.hash, prev)
            continue
        candidates = removed.get(_short(e.path))
        if candidates:
            pairs.setdefault(e.hash, min(candidates, key=lambda c: abs(c.size - e.size)))
            renamed += 1
    return pairs, renamed


def _cached(dest: str) -> tuple[str, int] | None:
    """A result an earlier build already reached for this pair, if any."""
    if os.path.exists(dest + _NONE):
        return "", 0
    try:
        with open(dest, "rb") as f:
            head = f.read(64)
        return codec.codec_name(head), os.path.getsize(dest)
    except (OSError, SwupdError):
        return None


@dataclass(frozen=True, slots=True)
class DeltaJob:
    """One pair for a worker process: the old object's fullfile, the new object's content (a
    file, or bytes the build generated), and where the delta goes."""

    old_fullfile: str
    old_hash: str
    old_size: int
    new_source: str
    new_data: bytes | None
    meta: Meta
    new_hash: str
    dest: str
    limit: int  # a delta is kept only if smaller than the new object's fullfile
    codecs: tuple[str, ...]
    level: int
    limits: Limits


def _make_one(job: DeltaJob) -> tuple[str, int]:
    """Make, verify and store the best delta for one pair; ('', 0) when none pays off.

    Results, including "no delta pays off", are kept in the build cache by hash pair, so a
    rebuild only computes deltas for content it has not seen before."""
    known = _cached(job.dest)
    if known is not None:
        return known
    try:
        with open(job.old_fullfile, "rb") as f:
            _old_meta, old = read_fullfile(f, job.old_hash, job.old_size)
    except (OSError, SwupdError):
        return "", 0
    new_data = job.new_data
    if new_data is None:
        with open(job.new_source, "rb") as f:
            new_data = f.read()
    best, best_name = b"", ""
    for name in job.codecs:
        if name == "zstd-dict" and len(old) < 8:
            continue
        if not codec.usable(codec.CODECS[name], len(old), len(new_data), job.limits):
            continue
        blob = encode.DELTA_ENCODERS[codec.CODECS[name]](old, new_data, job.meta, job.level)
        if not best or len(blob) < len(best):
            best, best_name = blob, name
    if best:
        got_meta, got = codec.apply(old, best)
        digest = filehash.hash_bytes(got, got_meta.mode, got_meta.uid, got_meta.gid, got_meta.xattrs)
    if not best or len(best) >= job.limit or digest != job.new_hash:
        open(job.dest + _NONE, "wb").close()
        return "", 0
    # Not fsynced: a build-cache entry, and a device checks what each delta makes against the
    # signed hash before using it.
    write_atomic(job.dest, best, sync=False)
    return best_name, len(best)


def build(
    report: ManifestReport,
    items: dict[str, Item],
    history: History,
    fullfiles: FullfileReport,
    stage: str,
    cfg: BuildConfig,
) -> DeltaReport:
    out = DeltaReport(sources=source_versions(history, cfg))
    os.makedirs(os.path.dirname(cfg.delta_cache("a", "b")), exist_ok=True)
    jobs: dict[tuple[str, str], DeltaJob] = {}
    planned: set[tuple[str, int]] = set()
    for source in out.sources:
        old_mom = history.mom(source).by_path()
        for entry in report.mom.entries:
            old_entry = old_mom.get(entry.path)
            if not entry.present or old_entry is None or not old_entry.present:
                continue
            if entry.version == old_entry.version or (entry.path, old_entry.version) in planned:
                continue
            planned.add((entry.path, old_entry.version))
            if entry.version < cfg.version and os.path.exists(
                history.path(layout.pack(entry.version, entry.path, old_entry.version))
            ):
                continue
            old = history.manifest(old_entry.version, entry.path)
            new = report.bundles[entry.path].manifest
            pairs, renamed = _pairs(old, new, old_entry.version, cfg)
            out.renamed += renamed
            plan = PackPlan(entry.path, entry.version, old_entry.version, old, new)
            new_by_hash = {e.hash: e for e in new.entries if e.present}
            for new_hash, prev in pairs.items():
                plan.pairs[new_hash] = prev.hash
                key = (prev.hash, new_hash)
                if key in jobs:
                    continue
                old_ff = fullfiles.paths.get(prev.hash) or history.fullfile_path(prev.version, prev.hash)
                target = new_by_hash[new_hash]
                item = items[target.path]
                limit = _fullfile_size(fullfiles, target)
                if old_ff is None or not stat.S_ISREG(item.mode) or limit is None:
                    continue
                dest = cfg.delta_cache(prev.hash, new_hash)
                jobs[key] = DeltaJob(
                    old_ff,
                    prev.hash,
                    prev.size,
                    item.source,
                    item.data,
                    item.meta(cfg.timestamp),
                    new_hash,
                    dest,
                    limit,
                    cfg.delta_codecs,
                    cfg.delta_level,
                    cfg.limits,
                )
            out.plans.append(plan)
    out.tried = len(jobs)
    # Results an earlier build reached are looked up here: a rebuild has mostly such pairs, and
    # sending them through a process pool cost it more than making the new ones
    # (docs/benchmarks.md).
    results: dict[tuple[str, str], tuple[str, int]] = {}
    for key, job in jobs.items():
        known = _cached(job.dest)
        if known is not None:
            results[key] = known
    ordered = sorted(((k, j) for k, j in jobs.items() if k not in results), key=lambda kv: -kv[1].old_size)
    with cfg.progress.stage("deltas", len(ordered), unit="pairs") as advance:
        par = cfg.jobs if len(ordered) > 4 else 1
        made = workers.map(
            _make_one, [j for _, j in ordered], par, done=lambda rs: advance(len(rs), sum(r[1] for r in rs))
        )
    results.update(zip([k for k, _ in ordered], made, strict=True))
    for key, job in jobs.items():
        name, size = results[key]
        if size:
            out.paths[key] = job.dest
            out.bytes += size
            out.by_codec[name] = out.by_codec.get(name, 0) + 1
    return out


def _fullfile_size(fullfiles: FullfileReport, entry: Entry) -> int | None:
    path = fullfiles.paths.get(entry.hash)
    return os.path.getsize(path) if path else None
