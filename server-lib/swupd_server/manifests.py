"""Build stage 1: bundle manifests and the Manifest.MoM.

Each entry keeps the version in which it last changed: an object whose hash is the same as in
the previous build keeps its old version (and its old fullfile); anything new or different gets
the new version. Objects that disappeared get a deleted entry, carried forward within a format
so devices many versions behind still remove them; deletions under the boot paths
(`swupd.format.paths.BOOT_PREFIXES`: kernels, modules, the EFI system partition) are
*ghosted* (the device keeps the running kernel's files). A bundle whose content did not change
is not rewritten and keeps its old manifest and version.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from swupd.format import filehash, layout
from swupd.format import manifest as mf
from swupd.format.manifest import Entry, Manifest, Status, Type
from swupd.format.paths import BOOT_PREFIXES

from . import bundles as bl
from . import streams
from .config import BuildConfig
from .history import History
from .scan import Item


@dataclass
class BundleResult:
    manifest: Manifest
    data: bytes
    written: bool
    added: int = 0
    changed: int = 0
    deleted: int = 0


@dataclass
class ManifestReport:
    previous: int
    mom: Manifest
    mom_data: bytes
    bundles: dict[str, BundleResult] = field(default_factory=dict)
    old_bundles: dict[str, Manifest] = field(default_factory=dict)

    def summary(self) -> str:
        written = [n for n, b in self.bundles.items() if b.written]
        return (
            f"manifests: {len(self.bundles)} bundles, {len(written)} changed "
            f"({', '.join(written) or 'none'}), previous version {self.previous or 'none'}"
        )


def _members(claimed: dict[str, set[str]], bundles: dict[str, bl.Bundle], name: str) -> set[str]:
    """A bundle's own paths: what it claims minus what os-core and its includes provide."""
    members = set(claimed[name])
    if name != bl.OS_CORE:
        for inc in [bl.OS_CORE, *bl.closure(bundles, name)]:
            members -= claimed[inc]
    return members


def _entry(item: Item, version: int) -> Entry:
    return Entry(item.path, item.type, item.hash, version, item.entry_size)


def _bundle_entries(
    members: set[str],
    items: dict[str, Item],
    old: Manifest | None,
    old_full: dict[str, Entry],
    cfg: BuildConfig,
    same_format: bool,
) -> tuple[list[Entry], int, int, int]:
    v = cfg.version
    old_by_path = old.by_path() if old else {}
    entries, added, changed, deleted = [], 0, 0, 0
    for path in members:
        item = items[path]
        prev = old_by_path.get(path)
        if prev is not None and prev.present and prev.hash == item.hash:
            entries.append(_entry(item, prev.version))
            continue
        if prev is None:
            elsewhere = old_full.get(path)
            if elsewhere is not None and elsewhere.hash == item.hash:
                entries.append(_entry(item, elsewhere.version))
                continue
        entries.append(_entry(item, v))
        if prev is not None and prev.present:
            changed += 1
        else:
            added += 1
    for path, prev in old_by_path.items():
        if path in members:
            continue
        if prev.present:
            ghost = path.startswith(BOOT_PREFIXES)
            status = Status.GHOSTED if ghost else Status.DELETED
            entries.append(Entry(path, Type.NONE, filehash.ZERO_HASH, v, 0, status))
            deleted += 1
        elif prev.status == Status.DELETED and same_format:
            entries.append(prev)
    return entries, added, changed, deleted


def _key(entries: list[Entry]) -> set[tuple]:
    return {(e.path, e.type, e.hash, e.version, e.status) for e in entries}


def build(
    items: dict[str, Item],
    bundles: dict[str, bl.Bundle],
    claimed: dict[str, set[str]],
    history: History,
    cfg: BuildConfig,
) -> ManifestReport:
    previous = history.latest(cfg.format)
    old_mom = history.mom(previous) if previous else None
    old_bundles = history.bundle_manifests(previous) if previous else {}
    same_format = old_mom is not None and old_mom.format == cfg.format
    old_full: dict[str, Entry] = {}
    for m in old_bundles.values():
        for e in m.entries:
            if e.present and (e.path not in old_full or e.version > old_full[e.path].version):
                old_full[e.path] = e
    old_mom_entries = old_mom.by_path() if old_mom else {}
    results: dict[str, BundleResult] = {}
    mom_entries: list[Entry] = []
    for name in sorted(bundles):
        members = _members(claimed, bundles, name)
        old = old_bundles.get(name)
        entries, added, changed, deleted = _bundle_entries(members, items, old, old_full, cfg, same_format)
        includes = [] if name == bl.OS_CORE else list(dict.fromkeys([bl.OS_CORE, *bundles[name].includes]))
        if old is not None and same_format and old.includes == includes and _key(old.entries) == _key(entries):
            data = _read_old(history, old_mom_entries[name])
            results[name] = BundleResult(old, data, written=False)
            mom_entries.append(old_mom_entries[name])
            continue
        m = Manifest(
            format=cfg.format,
            version=cfg.version,
            previous=old.version if old else 0,
            timestamp=cfg.timestamp,
            entries=entries,
            includes=includes,
        )
        data = mf.dumps(m)
        results[name] = BundleResult(m, data, True, added, changed, deleted)
        mom_entries.append(Entry(name, Type.MANIFEST, filehash.hash_manifest(data), cfg.version, len(data)))
    for name, e in old_mom_entries.items():
        if name in bundles:
            continue
        if e.present:
            mom_entries.append(Entry(name, Type.NONE, filehash.ZERO_HASH, cfg.version, 0, Status.DELETED))
        elif same_format:
            mom_entries.append(e)
    mom = Manifest(
        format=cfg.format,
        version=cfg.version,
        previous=previous,
        timestamp=cfg.timestamp,
        entries=mom_entries,
        compat=cfg.compat,
        stream=cfg.stream or streams.derive(cfg.version, mom_entries),
    )
    return ManifestReport(previous, mom, mf.dumps(mom), results, old_bundles)


def _read_old(history: History, entry: Entry) -> bytes:
    with open(history.path(layout.manifest(entry.version, entry.path)), "rb") as f:
        return f.read()
