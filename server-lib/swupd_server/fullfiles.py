"""Build stage 2: content-addressed fullfiles for every object new in this version.

A fullfile is written once per hash and version directory; content that an earlier version of
the same format already published under the same hash is linked, not compressed again. Compression runs in
worker processes and streams, so large files never sit whole in memory.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass, field

from swupd.format import fullfile, layout

from . import encode, workers
from .config import BuildConfig
from .history import History
from .manifests import ManifestReport
from .scan import Item


@dataclass
class FullfileReport:
    written: int = 0
    linked: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    # hash -> path of its fullfile (in the staging tree or in www/), for deltas and packs
    paths: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        ratio = self.bytes_out / self.bytes_in if self.bytes_in else 0.0
        return (
            f"fullfiles: {self.written} compressed ({self.bytes_in} -> {self.bytes_out} bytes, "
            f"{ratio:.2f}), {self.linked} reused"
        )


def _write_one(job: tuple[str, str, fullfile.Meta, str, bytes | None, str, int]) -> int:
    dest, digest, meta, source, data, codec, level = job
    tmp = dest + ".tmp"
    with open(tmp, "wb") as out:
        if stat.S_ISREG(meta.mode):
            if data is not None:
                import io

                encode.fullfile(out, digest, meta, io.BytesIO(data), codec, level)
            else:
                with open(source, "rb") as src:
                    encode.fullfile(out, digest, meta, src, codec, level)
        else:
            encode.fullfile(out, digest, meta, None, codec, level)
    os.replace(tmp, dest)
    return os.path.getsize(dest)


def _link_or_copy(src: str, dest: str) -> None:
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def existing_index(history: History, fmt: int) -> dict[str, str]:
    """hash -> an already published fullfile of format `fmt` with that hash."""
    index: dict[str, str] = {}
    for v in history.versions_of(fmt):
        d = history.path(layout.files_dir(v))
        if os.path.isdir(d):
            for name in os.listdir(d):
                if name.endswith(".tar"):
                    index.setdefault(name[:-4], os.path.join(d, name))
    return index


def build(
    report: ManifestReport, items: dict[str, Item], history: History, stage: str, cfg: BuildConfig
) -> FullfileReport:
    out = FullfileReport()
    existing = existing_index(history, cfg.format)
    os.makedirs(os.path.join(stage, layout.files_dir(cfg.version)), exist_ok=True)
    jobs, seen = [], set()
    for result in report.bundles.values():
        if not result.written:
            continue
        for e in result.manifest.entries:
            if not e.present or e.version != cfg.version or e.hash in seen:
                continue
            seen.add(e.hash)
            item = items[e.path]
            dest = os.path.join(stage, layout.fullfile(cfg.version, e.hash))
            if e.hash in existing:
                _link_or_copy(existing[e.hash], dest)
                out.linked += 1
            else:
                meta = item.meta(cfg.timestamp)
                jobs.append((dest, e.hash, meta, item.source, item.data, cfg.fullfile_codec, cfg.fullfile_level))
                out.bytes_in += item.size
            out.paths[e.hash] = dest
    jobs.sort(key=lambda j: -j[2].size)  # big files first keeps all workers busy to the end
    with cfg.progress.stage("fullfiles", len(jobs)) as advance:
        par = cfg.jobs if len(jobs) > 16 else 1
        sizes = workers.map(_write_one, jobs, par, chunksize=8, done=lambda rs: advance(len(rs), sum(rs)))
    out.written = len(jobs)
    out.bytes_out = sum(sizes)
    for digest, path in existing.items():
        out.paths.setdefault(digest, path)
    return out
