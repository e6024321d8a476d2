"""What an update costs a device, in bytes downloaded, from the published tree alone.

The model is a device that has every bundle of the version it runs (none for a fresh install)
and follows the device's own choices (client/swupd/ops/obtain.py): an object it already holds
under any path is not fetched; each other object is asked of the first bundle, by name, that
has it; a bundle whose version changed fetches its manifest as a manifest delta from the
version it holds when one is published, else compressed; it takes the delta pack from the
bundle version it holds when one is published and fetches as fullfiles what that pack lacks;
for what is still missing (all of a bundle new to the device) it takes the bundle's zero pack
of each version the missing objects' entries name, when it needs at least 8 objects of that
version and the pack is no larger than half their size plus 1 KiB each, and fullfiles for the
rest. The MoM and signatures, a few kilobytes per update, are left out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from swupd.format import layout
from swupd.format.manifest import Entry

from . import segments
from .history import History

# The device's rule for taking a zero pack instead of fullfiles (client/swupd/ops/obtain.py).
ZERO_PACK_MIN_OBJECTS = 8


def _zero_pack_pays(size: int, entries: list[Entry]) -> bool:
    return len(entries) >= ZERO_PACK_MIN_OBJECTS and size <= sum(e.size // 2 + 1024 for e in entries)


@dataclass
class BundleCost:
    """The bytes one bundle costs an update, and how the device gets them."""

    bundle: str
    manifest: int = 0
    pack: int = 0
    fullfiles: int = 0
    objects: int = 0
    how: str = ""

    @property
    def total(self) -> int:
        return self.manifest + self.pack + self.fullfiles

    def text(self) -> str:
        parts = [f"manifest {self.manifest}", f"{self.how} {self.pack}" if self.pack else ""]
        parts.append(f"fullfiles {self.fullfiles}" if self.fullfiles else "")
        return f"{self.bundle}: {self.total} bytes for {self.objects} object(s) ({', '.join(filter(None, parts))})"


class Costs:
    """Update costs between the published versions of one `www/` tree."""

    def __init__(self, history: History) -> None:
        self.history = history
        self._held: dict[str, set[str]] = {}

    def _size(self, rel: str) -> int | None:
        try:
            return os.path.getsize(self.history.path(rel))
        except FileNotFoundError:
            return None

    def _pack_holds(self, rel: str) -> set[str]:
        """The objects a published pack provides (by hash), read from its members."""
        held = self._held.get(rel)
        if held is None:
            held = set()
            for frame in segments.frames_of(self.history.path(rel)):
                for name in frame.members:
                    held.add(name.rsplit("/", 1)[-1].removesuffix(".tar"))
            self._held[rel] = held
        return held

    def sources(self, target: int) -> list[int]:
        """0 (a fresh install) and every earlier version of the target's format from which a
        delta pack leads into it."""
        h = self.history
        mom = h.mom(target)
        wanted = {e.path: e.version for e in mom.entries if e.present}
        found = [0]
        for v in h.versions_of(mom.format):
            if v >= target:
                break
            held = {e.path: e.version for e in h.mom(v).entries if e.present}
            if any(
                b in held and held[b] != tv and self._size(layout.pack(tv, b, held[b])) is not None
                for b, tv in wanted.items()
            ):
                found.append(v)
        return found

    def update(self, source: int, target: int) -> list[BundleCost]:
        """What each bundle of `target` costs a device at `source` (0: a fresh install), by name."""
        h = self.history
        new = h.bundle_manifests(target)
        old = h.bundle_manifests(source) if source else {}
        held = {e.hash for m in old.values() for e in m.entries if e.present}
        claimed: set[str] = set()
        out = []
        rests: list[tuple[BundleCost, str, list[Entry], bool]] = []
        for name, m in sorted(new.items()):
            before = old.get(name)
            frm = before.version if before is not None else 0
            cost = BundleCost(name)
            out.append(cost)
            if frm == m.version:
                cost.how = "unchanged"
                continue
            mine = {e.hash: e for e in m.entries if e.present and e.hash not in held and e.hash not in claimed}
            claimed.update(mine)
            cost.objects = len(mine)
            delta = self._size(layout.manifest_delta(m.version, name, frm)) if frm else None
            whole = self._size(layout.manifest_zst(m.version, name))
            cost.manifest = delta or whole or self._size(layout.manifest(m.version, name)) or 0
            rest = list(mine.values())
            pack = self._size(layout.pack(m.version, name, frm)) if frm else None
            if pack is not None:
                cost.pack, cost.how = pack, f"delta pack from {frm}"
                provided = self._pack_holds(layout.pack(m.version, name, frm))
                rest = [e for e in rest if e.hash not in provided]
            rests.append((cost, name, rest, pack is None))
        # Then, as the device does, the zero packs of bundles without a delta pack, version by
        # version; each provides whatever is still missing, for any bundle.
        missing = {e.hash for _, _, rest, _ in rests for e in rest}
        for cost, name, rest, no_delta_pack in rests:
            if not no_delta_pack:
                continue
            by_version: dict[int, list[Entry]] = {}
            for e in rest:
                by_version.setdefault(e.version, []).append(e)
            for version, group in sorted(by_version.items()):
                group = [e for e in group if e.hash in missing]
                rel = layout.pack(version, name, 0)
                zero = self._size(rel)
                if zero is not None and _zero_pack_pays(zero, group):
                    cost.pack += zero
                    cost.how = f"{cost.how} + zero pack of {version}" if cost.how else f"zero pack of {version}"
                    missing -= self._pack_holds(rel)
        for cost, _, rest, _ in rests:
            cost.fullfiles = sum(self._size(layout.fullfile(e.version, e.hash)) or 0 for e in rest if e.hash in missing)
        return out
