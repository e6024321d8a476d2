"""Build stage: manifest deltas, so an updating device does not fetch whole bundle manifests.

For every bundle manifest written in this version and every delta source version (the same
sources as the delta packs), the device holds the bundle's manifest of the version that
source's MoM names; a delta from that manifest to the new one is published beside the
compressed manifest (layout.manifest_delta, format/manifestdelta.py). It is kept only when it
is smaller than the compressed manifest, which the device fetches otherwise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from swupd.format import layout, manifestdelta

from . import encode
from .config import BuildConfig
from .history import History
from .manifests import ManifestReport


@dataclass
class ManifestDeltaReport:
    made: int = 0
    bytes: int = 0
    whole_bytes: int = 0  # the same manifests compressed whole

    def summary(self) -> str:
        return f"{self.made} manifest deltas, {self.bytes} bytes (whole: {self.whole_bytes} bytes)"


def build(
    report: ManifestReport, sources: list[int], history: History, stage: str, cfg: BuildConfig
) -> ManifestDeltaReport:
    out = ManifestDeltaReport()
    done: set[tuple[str, int]] = set()
    for source in sources:
        old_mom = history.mom(source).by_path()
        for name, result in sorted(report.bundles.items()):
            old_entry = old_mom.get(name)
            if not result.written or old_entry is None or not old_entry.present:
                continue
            if old_entry.version >= cfg.version or (name, old_entry.version) in done:
                continue
            done.add((name, old_entry.version))
            if not manifestdelta.usable(old_entry.size, len(result.data), cfg.limits):
                continue
            with open(history.path(layout.manifest(old_entry.version, name)), "rb") as f:
                old = f.read()
            blob = encode.manifest_delta(old, result.data, cfg.manifest_delta_level, cfg.limits)
            whole = os.path.getsize(os.path.join(stage, layout.manifest_zst(cfg.version, name)))
            if len(blob) >= whole:
                continue
            dest = os.path.join(stage, layout.manifest_delta(cfg.version, name, old_entry.version))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "wb") as f:
                f.write(blob)
            out.made += 1
            out.bytes += len(blob)
            out.whole_bytes += whole
    return out
