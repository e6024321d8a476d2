"""The planners decide by the entries' values, not by their identity: the plan is the same
whether the manifest parser shares one entry object between two versions' manifests (a line
both hold, see manifest.loads `like`) or every entry is a copy of its own, as entries loaded
from the parsed cache are.

Each case is a random pair of versions of a small OS (seeded, so a failure repeats), with the
kinds of change an update meets: content, mode and type changes, directories deleted or turned
into files, boot files ghosted or dropped, paths added; the older version is written to a real
tree, which then drifts (configuration edited, files lost or damaged, a new version's object
already in place)."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from swupd.apply.disk import TreeDisk
from swupd.apply.plan import Change, plan_repair, plan_update, union
from swupd.apply.tree import Tree
from swupd.format import manifest as mf
from swupd.format.filehash import ZERO_HASH, hash_bytes, hash_directory, hash_symlink
from swupd.format.manifest import Entry, Manifest, Status, Type

OLD, NEW = 10, 20
BUNDLES = ("os-core", "alpha", "beta")
TOPS = ("/usr", "/usr/bin", "/usr/lib", "/usr/share", "/etc", "/var", "/var/lib", "/boot", "/usr/lib/modules")
SEEDS = range(12)

# An object: ("d", mode), ("f", content, mode) or ("l", target).
Spec = dict[str, tuple]


@dataclass
class Pair:
    """Two versions of every bundle's manifest, as text, and the tree the older one left."""

    disk: TreeDisk
    old: dict[str, bytes] = field(default_factory=dict)
    new: dict[str, bytes] = field(default_factory=dict)

    def close(self) -> None:
        self.disk.tree.close()


def _depth(path: str) -> int:
    return path.count("/")


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


def random_tree(rng: random.Random, size: int) -> Spec:
    """About `size` objects below a few top directories, nested a few levels deep."""
    spec: Spec = {t: ("d", 0o755) for t in TOPS}
    dirs = list(TOPS)
    while len(spec) < size:
        parent = rng.choice(dirs)
        r = rng.random()
        path = f"{parent}/n{len(spec)}"
        if r < 0.12 and _depth(path) < 6:
            spec[path] = ("d", rng.choice((0o755, 0o750)))
            dirs.append(path)
        elif r < 0.2:
            spec[path] = ("l", f"t{rng.randrange(5)}")
        else:
            spec[path] = ("f", rng.randbytes(rng.randrange(1, 24)), rng.choice((0o644, 0o755, 0o600)))
    return spec


def _hash(obj: tuple) -> str:
    if obj[0] == "d":
        return hash_directory(0o040000 | obj[1])
    if obj[0] == "l":
        return hash_symlink(obj[1])
    return hash_bytes(obj[1], 0o100000 | obj[2])


def _entry(path: str, obj: tuple, version: int) -> Entry:
    kind = {"d": Type.DIRECTORY, "f": Type.FILE, "l": Type.SYMLINK}[obj[0]]
    size = len(obj[1]) if obj[0] == "f" else len(os.fsencode(obj[1])) if obj[0] == "l" else 0
    return Entry(path, kind, _hash(obj), version, size)


def _gone(path: str, version: int, status: Status = Status.DELETED) -> Entry:
    return Entry(path, Type.NONE, ZERO_HASH, version, 0, status)


def next_version(rng: random.Random, spec: Spec) -> tuple[Spec, set[str], set[str]]:
    """The newer version's objects, and the paths it deletes and ghosts; a boot file it neither
    holds, deletes nor ghosts is one it drops from its manifests."""
    new: Spec = {}
    deleted: set[str] = set()
    ghosted: set[str] = set()
    gone_dirs: list[str] = []
    for path in sorted(spec, key=_depth):
        obj = spec[path]
        if path in TOPS:
            new[path] = obj
            continue
        if any(path.startswith(d + "/") for d in gone_dirs):
            deleted.add(path)
            continue
        r = rng.random()
        if r < 0.6:
            new[path] = obj
        elif r < 0.68:
            new[path] = ("f", rng.randbytes(8), 0o644) if obj[0] != "d" else ("d", 0o700)
        elif r < 0.74:
            new[path] = ("l", "elsewhere") if obj[0] == "f" else ("f", b"was a link\n", 0o644)
            if obj[0] == "d":
                gone_dirs.append(path)
        elif r < 0.82:
            deleted.add(path)
            gone_dirs += [path] if obj[0] == "d" else []
        elif r < 0.9 and path.startswith(("/boot/", "/usr/lib/modules/")) and obj[0] != "d":
            if r < 0.86:
                ghosted.add(path)
        else:
            new[path] = obj
    dirs = [p for p, o in new.items() if o[0] == "d"]
    for i in range(len(spec) // 10):
        new[f"{rng.choice(dirs)}/added{i}"] = ("f", rng.randbytes(6), 0o644)
    return new, deleted, ghosted


def write_tree(root: str, spec: Spec) -> None:
    for path in sorted(spec, key=_depth):
        obj, host = spec[path], os.path.join(root, path.lstrip("/"))
        if obj[0] == "d":
            os.makedirs(host, exist_ok=True)
            os.chmod(host, obj[1])
        elif obj[0] == "l":
            os.symlink(obj[1], host)
        else:
            Path(host).write_bytes(obj[1])
            os.chmod(host, obj[2])


def drift(rng: random.Random, root: str, spec: Spec, new: Spec) -> None:
    """What happens to a device between updates: edits, losses, an object put in place early."""

    def host(path: str) -> str:
        return os.path.join(root, path.lstrip("/"))

    files = sorted(p for p, o in spec.items() if o[0] == "f")
    for path in rng.sample(files, len(files) // 12):
        Path(host(path)).write_bytes(b"edited on the device\n")
    for path in rng.sample(files, len(files) // 15):
        if os.path.lexists(host(path)):
            os.unlink(host(path))
    for path in sorted(p for p in new if p not in spec and os.path.isdir(host(_parent(p))))[:4]:
        obj = new[path]
        Path(host(path)).write_bytes(obj[1] if rng.random() < 0.5 else b"put here by hand\n")
        os.chmod(host(path), obj[2])
    dirs = sorted(p for p, o in spec.items() if o[0] == "d" and p not in TOPS and p.startswith(("/etc/", "/usr/")))
    for path in rng.sample(dirs, min(2, len(dirs))):
        if os.path.isdir(host(path)):
            os.rename(host(path), host(path) + ".moved")
            Path(host(path)).write_bytes(b"a file where a directory was\n")


def make_pair(seed: int, size: int, root: str) -> Pair:
    """Two versions of `size` objects or so, the older one written to `root`, then drifted."""
    rng = random.Random(seed)
    spec = random_tree(rng, size)
    new, deleted, ghosted = next_version(rng, spec)
    of: dict[str, set[str]] = {}
    for path, obj in {**spec, **new}.items():
        of[path] = set(BUNDLES) if obj[0] == "d" else set(rng.sample(BUNDLES, rng.choice((1, 1, 2))))
    since = {p: rng.choice((1, 5, OLD)) for p in spec}
    long_gone = {f"/usr/share/long-gone{i}" for i in range(3)}
    old_entries = {p: _entry(p, o, since[p]) for p, o in spec.items()} | {p: _gone(p, 5) for p in long_gone}
    new_entries = {p: old_entries[p] for p in long_gone}
    for path, obj in new.items():
        same = path in spec and spec[path] == obj
        new_entries[path] = old_entries[path] if same else _entry(path, obj, NEW)
    new_entries |= {p: _gone(p, NEW) for p in deleted} | {p: _gone(p, NEW, Status.GHOSTED) for p in ghosted}
    old_text, new_text = {}, {}
    for b in BUNDLES:
        old = [e for p, e in old_entries.items() if b in of.get(p, {b})]
        newer = [e for p, e in new_entries.items() if b in of.get(p, {b})]
        old_text[b] = mf.dumps(Manifest(1, OLD, 0, 1, old))
        new_text[b] = mf.dumps(Manifest(1, NEW, OLD, 2, newer))
    write_tree(root, spec)
    # The record of the last transaction: what changes after it is drift (see TreeDisk.holds).
    version_file = os.path.join(root, "version")
    Path(version_file).write_text(f"{OLD}\n")
    drift(rng, root, spec, new)
    return Pair(TreeDisk(Tree(root), version_file), old_text, new_text)


def _copy(e: Entry) -> Entry:
    """An equal entry that shares no object with `e`, not even its strings."""
    return Entry(e.path[:1] + e.path[1:], e.type, e.hash[:1] + e.hash[1:], e.version, e.size, e.status)


def parse_shared(pair: Pair) -> tuple[dict[str, list[Entry]], dict[str, list[Entry]]]:
    """Both versions as the device parses them in an update: the newer one `like` the older."""
    old = {b: mf.loads(data) for b, data in pair.old.items()}
    new = {b: mf.loads(pair.new[b], like=(pair.old[b], old[b])) for b in BUNDLES}
    return {b: m.entries for b, m in old.items()}, {b: m.entries for b, m in new.items()}


def parse_fresh(pair: Pair) -> tuple[dict[str, list[Entry]], dict[str, list[Entry]]]:
    """Both versions with every entry an object of its own."""
    old = {b: [_copy(e) for e in mf.loads(data).entries] for b, data in pair.old.items()}
    new = {b: [_copy(e) for e in mf.loads(data).entries] for b, data in pair.new.items()}
    return old, new


def _u(manifests: dict[str, list[Entry]], bundles: tuple[str, ...] = BUNDLES) -> dict[str, Entry]:
    return union([manifests[b] for b in bundles])


# Each transaction's plan from the parsed versions: (old, new, disk) -> Change.
PLANS: dict[str, Callable[[dict, dict, TreeDisk], Change]] = {
    "update": lambda o, n, d: plan_update(_u(o), _u(n), d, new_version=True),
    "bundle-add": lambda o, n, d: plan_update(_u(o, BUNDLES[:1]), _u(o), d, new_version=False),
    "bundle-remove": lambda o, n, d: plan_update(_u(o), _u(o, BUNDLES[:2]), d, new_version=False),
    "os-install": lambda o, n, d: plan_update({}, _u(n), d, new_version=False),
    "repair": lambda o, n, d: plan_repair(_u(o), d),
    "repair-newer": lambda o, n, d: plan_repair(_u(n), d),
}


@pytest.mark.parametrize("seed", SEEDS)
def test_shared_and_copied_entries_plan_alike(seed: int, tmp_path: Path) -> None:
    with contextlib.closing(make_pair(seed, 240, str(tmp_path / "root"))) as pair:
        shared_old, shared_new = parse_shared(pair)
        fresh_old, fresh_new = parse_fresh(pair)
        plans = [
            (plan(shared_old, shared_new, pair.disk), plan(fresh_old, fresh_new, pair.disk)) for plan in PLANS.values()
        ]
    u_old, u_new = _u(shared_old), _u(shared_new)
    assert any(u_old.get(p) is e for p, e in u_new.items()), "the parser shared no entry"
    f_old = {id(e) for es in fresh_old.values() for e in es}
    assert not any(id(e) in f_old for es in fresh_new.values() for e in es)
    for name, (shared, fresh) in zip(PLANS, plans, strict=True):
        assert shared == fresh, f"{name} plans differently when entries are copies"


def test_the_cases_reach_every_decision(tmp_path: Path) -> None:
    """The random versions exercise what the plans can decide, so the comparison above is
    one between plans that do something."""
    seen: dict[str, Change] = {name: Change() for name in PLANS}
    for seed in SEEDS:
        with contextlib.closing(make_pair(seed, 240, str(tmp_path / str(seed)))) as pair:
            old, new = parse_shared(pair)
            changes = {name: plan(old, new, pair.disk) for name, plan in PLANS.items()}
        for name, ch in changes.items():
            total = seen[name]
            total.install += ch.install
            total.remove += ch.remove
            total.pre_remove += ch.pre_remove
            total.kept_config += ch.kept_config
            total.boot_changed |= ch.boot_changed
    for name in ("update", "repair-newer"):
        ch = seen[name]
        assert ch.install and ch.remove and ch.pre_remove and ch.kept_config and ch.boot_changed, name
    assert seen["repair"].install and seen["repair"].kept_config
    assert seen["bundle-add"].install and seen["bundle-remove"].remove and seen["os-install"].install
