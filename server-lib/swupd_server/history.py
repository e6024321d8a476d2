"""What earlier builds left in `www/`: the history a new version is built on.

The published tree is the build side's only state: earlier manifests give each file's
last-changed version, earlier fullfiles give the old contents that deltas are made against.
So a build machine needs nothing but a copy of `www/` to continue a stream.
"""

from __future__ import annotations

import hashlib
import os
from functools import cached_property

from swupd.format import fastparse, layout
from swupd.format import manifest as mf
from swupd.format.durable import write_atomic
from swupd.format.errors import BuildError, FormatError, SwupdError
from swupd.format.fullfile import Meta
from swupd.format.fullfile import read as read_fullfile
from swupd.format.latest import loads as load_latest


class History:
    """Read-only view of an existing `www/` tree.

    With a build cache, each manifest read is also kept there parsed, under the SHA-256 of its
    bytes: a rebuild reads the previous version's and every delta source's manifests, and
    loading one parsed costs far less than parsing it (docs/benchmarks.md)."""

    def __init__(self, www: str, cache_dir: str | None = None) -> None:
        self.www = www
        self.cache_dir = cache_dir
        self._manifests: dict[str, mf.Manifest] = {}

    def path(self, rel: str) -> str:
        return os.path.join(self.www, rel)

    def formats(self) -> list[int]:
        """Formats that have a `latest` pointer."""
        d = self.path("version")
        if not os.path.isdir(d):
            return []
        return sorted(int(n[6:]) for n in os.listdir(d) if n.startswith("format") and n[6:].isdigit())

    def published_max(self) -> int:
        """The highest version any `latest` pointer has reached."""
        return max((self.latest(f) for f in self.formats()), default=0)

    @cached_property
    def versions(self) -> list[int]:
        """Every published version (a Manifest.MoM that a `latest` pointer has reached), ascending."""
        if not os.path.isdir(self.www):
            return []
        top = self.published_max()
        found = []
        for name in os.listdir(self.www):
            if name.isdigit() and int(name) <= top and os.path.isfile(self.path(layout.mom(int(name)))):
                found.append(int(name))
        return sorted(found)

    def versions_of(self, fmt: int) -> list[int]:
        """Published versions of format `fmt`, ascending: the only ones whose content (fullfiles,
        deltas, packs) a version of that format may reuse. A new format may lay out or hash
        content otherwise, and its devices refuse what an older format wrote."""
        return [v for v in self.versions if self.mom(v).format == fmt]

    def latest(self, fmt: int) -> int:
        """The version `version/format<fmt>/latest` points at, 0 if none."""
        try:
            with open(self.path(layout.latest(fmt)), "rb") as f:
                return load_latest(f.read()).version
        except FileNotFoundError:
            return 0
        except FormatError as e:
            raise BuildError(f"{layout.latest(fmt)} in {self.www} is corrupt: {e}") from None

    def highest(self) -> int:
        return self.versions[-1] if self.versions else 0

    def mom(self, version: int) -> mf.Manifest:
        return self._load(layout.mom(version), True)

    def manifest(self, version: int, bundle: str) -> mf.Manifest:
        return self._load(layout.manifest(version, bundle), False)

    def _load(self, rel: str, is_mom: bool) -> mf.Manifest:
        # Published manifests never change, and several stages read the same ones.
        if rel in self._manifests:
            return self._manifests[rel]
        try:
            with open(self.path(rel), "rb") as f:
                data = f.read()
            stamp = hashlib.sha256(data).digest()
            m = self._parsed(rel, stamp)
            if m is None:
                m = mf.loads(data, is_mom=is_mom)
                self._keep(rel, stamp, m)
            self._manifests[rel] = m
            return m
        except OSError as e:
            raise BuildError(f"cannot read {rel} from {self.www}: {e.strerror}") from None
        except SwupdError as e:
            raise BuildError(f"{rel} in {self.www} is corrupt: {e}") from None

    def _parsed_path(self, rel: str) -> str | None:
        return os.path.join(self.cache_dir, "manifests", rel.replace("/", "%")) if self.cache_dir else None

    def _parsed(self, rel: str, stamp: bytes) -> mf.Manifest | None:
        path = self._parsed_path(rel)
        if path is None:
            return None
        try:
            with open(path, "rb") as f:
                return fastparse.kept_loads(f.read(), stamp)
        except OSError:
            return None

    def remember(self, rel: str, data: bytes, m: mf.Manifest) -> None:
        """Keep a manifest this build has just published (`data` are its bytes), parsed, for
        the builds after it (its entries in the order of the file, as parsing gives them)."""
        self._keep(rel, hashlib.sha256(data).digest(), m.with_entries(m.sorted_entries()))

    def _keep(self, rel: str, stamp: bytes, m: mf.Manifest) -> None:
        path = self._parsed_path(rel)
        if path is None:
            return
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            write_atomic(path, fastparse.kept_dumps(m, stamp), sync=False)
        except OSError:
            pass  # a cache only saves time

    def bundle_manifests(self, version: int) -> dict[str, mf.Manifest]:
        """The present bundles of a version with their manifests."""
        return {e.path: self.manifest(e.version, e.path) for e in self.mom(version).entries if e.present}

    def fullfile_path(self, version: int, digest: str) -> str | None:
        p = self.path(layout.fullfile(version, digest))
        return p if os.path.exists(p) else None

    def read_fullfile(self, version: int, digest: str, size: int) -> tuple[Meta, bytes]:
        p = self.fullfile_path(version, digest)
        if p is None:
            raise BuildError(f"history lacks {layout.fullfile(version, digest)}")
        with open(p, "rb") as f:
            return read_fullfile(f, digest, size)
