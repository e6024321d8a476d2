"""The settings of one build, gathered so every stage reads the same values."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from swupd.format.limits import LIMITS, Limits
from swupd.format.signing import PrivateKey

from .progress import Progress

DEFAULT_FORMAT = 1
DEFAULT_EXPIRY_DAYS = 90


def default_cache_dir(www: str) -> str:
    """Beside the published tree (never inside it, so it is neither served nor compared)."""
    return os.path.abspath(www).rstrip("/") + ".cache"


def build_timestamp() -> int:
    """SOURCE_DATE_EPOCH when set (reproducible builds), else now."""
    sde = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    return int(sde) if sde.isdigit() else int(time.time())


@dataclass
class BuildConfig:
    """Everything `create-update` needs to know; see `swupd-server create-update --help`."""

    www: str
    rootfs: str
    bundles_file: str
    version: int
    signing_keys: list[PrivateKey]
    # Keys that signed the previous version and introduce new signing keys (a rotation).
    rotate_keys: list[PrivateKey] = field(default_factory=list)
    format: int = DEFAULT_FORMAT
    compat: str = ""
    # The stream's identity ("": the one it has, see streams.py); `change_stream` allows a new
    # identity or compat id part-way through a stream.
    stream: str = ""
    change_stream: bool = False
    delta_versions: list[int] | None = None
    deltas: int = 2
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    strict: bool = False
    fullfile_codec: str = "zstd"
    fullfile_level: int = 6
    delta_codecs: tuple[str, ...] = ("zstd-dict", "bsdiff")
    delta_level: int = 19
    zero_pack_level: int = 1
    delta_pack_level: int = 19
    # New objects without a delta go into delta packs up to this compressed size; larger ones
    # are fetched as fullfiles, so packs from several versions do not each carry them.
    delta_pack_max_fullfile: int = 64 * 1024
    # Zero packs hold the objects new in their version up to this compressed size (most of the
    # files in a small part of the bytes, docs/benchmarks.md); larger ones are fetched as
    # fullfiles, so `www/` holds one copy of big content and packs add little to it.
    zero_pack_max_fullfile: int = 8 * 1024
    # Compressed manifests are what devices fetch: level 9 shrinks them at little cost; level 19
    # saves a little more for much more time, on every rebuild (docs/benchmarks.md).
    manifest_level: int = 9
    # Manifest deltas are small, so the highest level costs little and shrinks them most.
    manifest_delta_level: int = 19
    expiry_days: int = DEFAULT_EXPIRY_DAYS
    timestamp: int = field(default_factory=build_timestamp)
    limits: Limits = LIMITS
    cache_dir: str = ""
    # Live progress of long stages (a terminal only; see progress.py).
    progress: Progress = field(default_factory=Progress)

    def __post_init__(self) -> None:
        if not self.cache_dir:
            self.cache_dir = default_cache_dir(self.www)

    def cache(self, *parts: str) -> str:
        """A path in the build cache: scan stamps, ELF facts and deltas from earlier builds.

        The cache only saves time; losing it changes no output."""
        return os.path.join(self.cache_dir, *parts)

    def delta_cache(self, from_hash: str, to_hash: str) -> str:
        """Cached per format and delta settings: other codecs or limits give other deltas, and
        a version of one format reuses no content of another."""
        import hashlib

        from swupd.format.delta import PAYLOAD_REVISION

        settings = f"{PAYLOAD_REVISION}/{self.delta_codecs}/{self.delta_level}/{self.limits.max_bsdiff_bytes}"
        settings += f"/{self.format}/{self.limits.max_delta_source_bytes}/{self.limits.min_delta_target_bytes}"
        settings += f"/{self.limits.max_zstd_dict_pair_bytes}"
        tag = hashlib.sha256(settings.encode()).hexdigest()[:12]
        return self.cache("deltas", tag, f"{from_hash}-{to_hash}")

    @property
    def expires(self) -> int:
        """Freshness is about when a pointer is published, not when its content was built: a
        reproducible build's SOURCE_DATE_EPOCH may be years old. So `latest` is the one file
        whose bytes depend on the time of publishing."""
        return max(self.timestamp, int(time.time())) + self.expiry_days * 86400
