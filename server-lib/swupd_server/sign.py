"""Build stage 5: signatures over the MoM and the `latest` pointer; the manifests written out.

Only these two are signed (and the introductions of new keys, see keys.py); the MoM pins
every bundle manifest's hash, and manifests pin every file's hash, so a signature over the MoM
authenticates the whole version. Each bundle manifest is also written compressed, for devices
to fetch; its hash is checked after decompression.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from swupd.format import latest as latest_fmt
from swupd.format import layout, signing

from . import encode
from .config import BuildConfig
from .manifests import ManifestReport


@dataclass
class SignReport:
    keyids: list[str]
    latest: latest_fmt.Latest

    def summary(self) -> str:
        return f"signed by {', '.join(self.keyids)}; latest expires {utc(self.latest.expires)}"


def utc(t: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))


def latest_record(cfg: BuildConfig, stream: str) -> latest_fmt.Latest:
    return latest_fmt.Latest(cfg.version, cfg.format, cfg.timestamp, cfg.expires, stream)


def build(report: ManifestReport, stage: str, cfg: BuildConfig, introductions: dict[str, bytes]) -> SignReport:
    """`introductions`: key introductions to publish with this version (keys.plan)."""
    vdir = os.path.join(stage, layout.version_dir(cfg.version))
    os.makedirs(vdir, exist_ok=True)
    for rel, data in introductions.items():
        os.makedirs(os.path.join(stage, os.path.dirname(rel)), exist_ok=True)
        with open(os.path.join(stage, rel), "wb") as f:
            f.write(data)
    with open(os.path.join(stage, layout.mom(cfg.version)), "wb") as f:
        f.write(report.mom_data)
    with open(os.path.join(stage, layout.sig(layout.mom(cfg.version))), "wb") as f:
        f.write(signing.sign(report.mom_data, cfg.signing_keys))
    os.makedirs(os.path.join(stage, layout.manifests_dir(cfg.version)), exist_ok=True)
    for name, result in report.bundles.items():
        if result.written:
            with open(os.path.join(stage, layout.manifest(cfg.version, name)), "wb") as f:
                f.write(result.data)
            with open(os.path.join(stage, layout.manifest_zst(cfg.version, name)), "wb") as f:
                f.write(encode.compress(result.data, "zstd", cfg.manifest_level))
    return SignReport([k.public.keyid for k in cfg.signing_keys], latest_record(cfg, report.mom.stream))
