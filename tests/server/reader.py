"""The build-side tests' view of a published `www/` tree, checked as a device would use it.

Built on the independent oracle (`support.oracle`, written from docs/format.md): it imports
nothing from `swupd` or `swupd_server`, so the tests check the bytes in `www/` against the
documented format, not the code against itself. Paths are bytes throughout, as the manifests
have them, so names that are not UTF-8 survive exactly.
"""

from __future__ import annotations

import os
import re

import zstandard
from support.oracle import (
    Entry,
    FormatViolation,
    Latest,
    Manifest,
    Obj,
    apply_delta,
    check,
    delta_hashes,
    install,
    manifest_hash,
    parse_latest,
    parse_manifest,
    read_fullfile,
    read_obj,
    read_pack,
    read_tree,
    remove,
    staged_hash,
    verify,
)


def tree(root: str | bytes) -> dict[bytes, Obj]:
    """Every object below `root` by manifest path, in bytes as the manifests have them."""
    return read_tree(os.fsencode(root))


# --- a published www/ tree -----------------------------------------------------------------


class Www:
    """Read-only, verifying view of a published tree."""

    def __init__(self, root: str, public: bytes) -> None:
        self.root = root
        self.public = public

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def read(self, *parts: str) -> bytes:
        with open(self.path(*parts), "rb") as f:
            return f.read()

    def latest(self, fmt: int = 1) -> Latest:
        data = self.read("version", f"format{fmt}", "latest")
        verify(data, self.read("version", f"format{fmt}", "latest.sig"), self.public)
        record = parse_latest(data)
        check(record.fields["format"] == fmt, "latest of another format")
        return record

    def mom(self, version: int) -> Manifest:
        data = self.read(str(version), "Manifest.MoM")
        verify(data, self.read(str(version), "Manifest.MoM.sig"), self.public)
        m = parse_manifest(data, is_mom=True)
        check(m.version == version, f"{version}/Manifest.MoM says version {m.version}")
        return m

    def bundle(self, entry: Entry) -> Manifest:
        """The manifest a MoM entry points at, checked against the entry's hash and size."""
        data = self.read(str(entry.version), f"Manifest.{entry.name}")
        check(manifest_hash(data) == entry.hash, f"Manifest.{entry.name} of {entry.version} does not match the MoM")
        check(len(data) == entry.size, f"Manifest.{entry.name} size differs from the MoM")
        m = parse_manifest(data)
        check(m.version == entry.version, f"Manifest.{entry.name} in {entry.version} says {m.version}")
        return m

    def bundles(self, version: int) -> dict[str, Manifest]:
        return {e.name: self.bundle(e) for e in self.mom(version).present()}

    def fullfile(self, version: int, digest: str) -> Obj:
        obj = read_fullfile(self.read(str(version), "files", f"{digest}.tar"), digest)
        check(obj.hash() == digest, f"fullfile {version}/files/{digest}.tar re-hashes to {obj.hash()}")
        return obj

    def pack(self, version: int, bundle: str, from_version: int) -> dict[str, bytes]:
        return read_pack(self.path(str(version), f"pack-{bundle}-from-{from_version}.tar"))


def check_version(www: Www, version: int, fullfiles: bool = True) -> dict[str, Manifest]:
    """Everything a device needs for `version` is present and consistent; returns its bundles.

    With `fullfiles`, each entry's fullfile is decompressed and re-hashed (item 1 of the tests);
    without, only its presence is checked.
    """
    bundles = www.bundles(version)
    for name, m in bundles.items():
        check(m.format == www.mom(version).format, f"Manifest.{name} of another format")
        for e in m.present():
            rel = www.path(str(e.version), "files", f"{e.hash}.tar")
            check(os.path.isfile(rel), f"{name}: {e.path!r} lacks {e.version}/files/{e.hash}.tar")
            if fullfiles:
                obj = www.fullfile(e.version, e.hash)
                check(obj.kind == e.kind, f"{name}: {e.path!r} is {e.kind} but its fullfile holds {obj.kind}")
                check(obj.size == e.size, f"{name}: {e.path!r} size {e.size} but fullfile holds {obj.size}")
        if www.mom(version).by_path()[name.encode()].version == version:
            check_zero_pack(www, version, name, m)
    check_manifest_deltas(www, version)
    return bundles


def manifest_deltas(www: Www, version: int) -> dict[tuple[str, int], bytes]:
    """(bundle, from version) -> the published manifest delta to that bundle's manifest of `version`."""
    out = {}
    top = www.path(str(version), "manifests")
    for d in sorted(os.listdir(top)) if os.path.isdir(top) else []:
        if os.path.isdir(os.path.join(top, d)):
            check(re.fullmatch(r"from-[1-9][0-9]*", d) is not None, f"{version}/manifests/{d}: not a source directory")
            for f in sorted(os.listdir(os.path.join(top, d))):
                check(f.startswith("Manifest.") and f.endswith(".delta"), f"{version}/manifests/{d}/{f}: unexpected")
                out[(f[len("Manifest.") : -len(".delta")], int(d[5:]))] = www.read(str(version), "manifests", d, f)
    return out


def check_manifest_deltas(www: Www, version: int) -> None:
    """Each manifest delta is a zstd frame that, with the old manifest as a raw-content
    dictionary, gives exactly the new manifest, and is smaller than the compressed manifest."""
    for (name, source), blob in manifest_deltas(www, version).items():
        what = f"{version}/manifests/from-{source}/Manifest.{name}.delta"
        check(source < version, f"{what}: from a later version")
        old, new = www.read(str(source), f"Manifest.{name}"), www.read(str(version), f"Manifest.{name}")
        d = zstandard.ZstdCompressionDict(old, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        check(zstandard.frame_content_size(blob) == len(new), f"{what}: declares another size")
        check(zstandard.ZstdDecompressor(dict_data=d).decompress(blob) == new, f"{what}: gives another manifest")
        whole = os.path.getsize(www.path(str(version), "manifests", f"Manifest.{name}.zst"))
        check(len(blob) < whole, f"{what}: not smaller than the compressed manifest")


def check_waste(members: dict, needed: set, what: str) -> None:
    """Members a pack's update does not need are allowed, but only a small share of its bytes:
    each frame copied from an earlier pack may carry at most 10 % of unneeded members."""
    waste = sum(len(blob) + 1536 for key, blob in members.items() if key not in needed)
    total = sum(len(blob) + 512 for blob in members.values())
    check(waste <= 0.10 * total + 8192, f"{what}: {waste} of {total} bytes are members it does not need")


# A zero pack holds its bundle's objects first published in its version whose fullfiles are
# at most this size (the build's default `zero_pack_max_fullfile`).
ZERO_PACK_MAX_FULLFILE = 8192


def check_zero_pack(www: Www, version: int, name: str, m: Manifest) -> None:
    """The zero pack of a bundle's manifest version holds exactly its small new objects, each
    byte for byte its fullfile; a bundle with none has no zero pack."""
    want = {
        e.hash
        for e in m.present()
        if e.version == version
        and os.path.getsize(www.path(str(version), "files", f"{e.hash}.tar")) <= ZERO_PACK_MAX_FULLFILE
    }
    path = www.path(str(version), f"pack-{name}-from-0.tar")
    if not want:
        check(not os.path.exists(path), f"zero pack of {name} published with nothing to hold")
        return
    check(os.path.isfile(path), f"zero pack of {name} missing")
    staged = {staged_hash(n): blob for n, blob in www.pack(version, name, 0).items()}
    check(None not in staged, f"zero pack of {name} holds a delta")
    check(want <= set(staged), f"zero pack of {name} lacks {len(want - set(staged))} of its small new objects")
    check_waste(staged, want, f"zero pack of {name}")
    for digest, blob in staged.items():
        check(len(blob) <= ZERO_PACK_MAX_FULLFILE, f"zero pack of {name} holds {digest}, a large object")
        check(blob == www.read(str(version), "files", f"{digest}.tar"), f"pack member {digest} differs from files/")


def install_bundle(www: Www, version: int, bundle: str, dest: str) -> dict[bytes, Entry]:
    """Install a bundle as a device that has nothing does: the zero packs of the versions its
    entries come from, and the fullfiles of what they do not hold. Returns the entries
    installed; every small object must come from a pack."""
    entry = www.mom(version).by_path()[bundle.encode()]
    m = www.bundle(entry)
    staged: dict[str, bytes] = {}
    for v in sorted({e.version for e in m.present()}):
        if os.path.isfile(www.path(str(v), f"pack-{bundle}-from-0.tar")):
            staged.update({staged_hash(n): blob for n, blob in www.pack(v, bundle, 0).items()})
    installed: dict[bytes, Entry] = {}
    for e in sorted(m.present(), key=lambda e: e.path):
        fullfile = www.read(str(e.version), "files", f"{e.hash}.tar")
        blob = staged.get(e.hash)
        if blob is None:
            check(len(fullfile) > ZERO_PACK_MAX_FULLFILE, f"{e.path!r}: a small object in no zero pack")
            blob = fullfile
        check(blob == fullfile, f"pack member {e.hash} differs from files/")
        obj = read_fullfile(blob, e.hash)
        check(obj.hash() == e.hash, f"object for {e.path!r} does not hash to {e.hash}")
        install(obj, dest, e.path)
        installed[e.path] = e
    fix_dir_modes(dest, {p: e for p, e in installed.items() if e.kind == "D"}, www)
    return installed


def fix_dir_modes(dest: str, dirs: dict[bytes, Entry], www: Www) -> None:
    """Directories were made writable while filled; give them their final mode, deepest first."""
    for path in sorted(dirs, reverse=True):
        e = dirs[path]
        obj = www.fullfile(e.version, e.hash)
        os.chmod(os.fsencode(dest) + path, obj.mode)


def apply_delta_pack(www: Www, bundle: str, old_version: int, new_version: int, base: str, work: str) -> dict:
    """Update `work` (a copy of `base`, the installed old version) for one bundle, as a device
    would: from the delta pack alone, copying content the old bundle already has by hash.

    Returns counts of what was used, by kind.
    """
    old_entry = www.mom(old_version).by_path()[bundle.encode()]
    new_entry = www.mom(new_version).by_path()[bundle.encode()]
    old_m, new_m = www.bundle(old_entry), www.bundle(new_entry)
    pack = www.pack(new_entry.version, bundle, old_entry.version)
    old_by_hash: dict[str, bytes] = {}
    for e in old_m.present():
        old_by_hash.setdefault(e.hash, e.path)
    staged = {staged_hash(n): blob for n, blob in pack.items() if staged_hash(n)}
    deltas = {delta_hashes(n)[1]: (delta_hashes(n)[0], blob) for n, blob in pack.items() if delta_hashes(n)}
    used = {"local": 0, "staged": 0, "delta": 0, "deleted": 0}
    wanted: set[str] = set()
    changed = [e for e in new_m.entries if e.version > old_entry.version]
    for e in sorted((e for e in changed if not e.present), key=lambda e: e.path, reverse=True):
        host = os.fsencode(work) + e.path
        if os.path.lexists(host):
            remove(host)
        used["deleted"] += 1
    dirs = {}
    for e in sorted((e for e in changed if e.present), key=lambda e: e.path):
        if e.hash in old_by_hash:
            check(e.hash not in staged, f"delta pack of {bundle} ships {e.path!r}, which the device already has")
            obj = read_obj(os.fsencode(base) + old_by_hash[e.hash])
            used["local"] += 1
        elif e.hash in staged:
            obj = read_fullfile(staged[e.hash], e.hash)
            used["staged"] += 1
        elif e.hash in deltas:
            from_hash, blob = deltas[e.hash]
            check(from_hash in old_by_hash, f"delta for {e.path!r} is made from content the device lacks")
            old_obj = read_obj(os.fsencode(base) + old_by_hash[from_hash])
            check(old_obj.hash() == from_hash, "delta source on the device does not match its hash")
            obj = apply_delta(old_obj.data, blob)
            used["delta"] += 1
        else:
            raise FormatViolation(f"delta pack of {bundle} from {old_entry.version} lacks {e.path!r}")
        check(obj.hash() == e.hash, f"{e.path!r} rebuilt from the delta pack hashes to {obj.hash()}, not {e.hash}")
        wanted.add(e.hash)
        install(obj, work, e.path)
        if obj.kind == "D":
            dirs[e.path] = obj.mode
    for path in sorted(dirs, reverse=True):
        os.chmod(os.fsencode(work) + path, dirs[path])
    unused = (set(staged) | set(deltas)) - wanted
    check(not unused, f"delta pack of {bundle} holds {len(unused)} members no entry needs")
    return used
