"""Zero packs and delta packs, applied the way a device applies them, by the independent reader."""

from __future__ import annotations

import os
import random

import pytest
import reader
from buildutil import all_entries, compare_to_rootfs, is_generated
from support import oracle


@pytest.mark.parametrize("version", [10, 20])
def test_zero_packs_reproduce_each_bundle(stream, tmp_path, version):
    """Each bundle installed alone into an empty directory, from the zero packs of the versions
    its objects come from and the fullfiles of its large objects, holds exactly the bundle's
    objects as they are in the rootfs."""
    www = stream.reader()
    rootfs = reader.tree(stream.rootfs[version])
    bundles = www.bundles(version)
    for name, m in bundles.items():
        dest = str(tmp_path / name)
        os.makedirs(dest)
        installed = reader.install_bundle(www, version, name, dest)
        assert set(installed) == {e.path for e in m.present()}
        result = reader.tree(dest)
        for path, e in installed.items():
            obj = result[path]
            assert obj.hash() == e.hash, path
            if path in rootfs and path != b"/usr/lib/os-release":
                assert obj == rootfs[path], f"{path!r}: {obj.describe()} != {rootfs[path].describe()}"
        # Only parents the bundle leaves to os-core were made besides its own objects.
        extra = set(result) - set(installed)
        assert all(result[p].kind == "D" and (p in rootfs or is_generated(p)) for p in extra), sorted(extra)


def test_all_zero_packs_together_are_the_rootfs(stream, installed10):
    www = stream.reader()
    compare_to_rootfs(reader.tree(installed10), stream.rootfs[10], all_entries(www.bundles(10)))


@pytest.fixture(scope="module")
def updated20(stream, installed10, tmp_path_factory):
    """A copy of the installed version 10, updated to 20 from the delta packs alone."""
    work = str(tmp_path_factory.mktemp("delta") / "device")
    oracle.copy_tree(installed10, work)
    www = stream.reader()
    used = {}
    mom10, mom20 = www.mom(10).by_path(), www.mom(20).by_path()
    for name in sorted(www.bundles(20)):
        if mom10[name.encode()].version != mom20[name.encode()].version:
            used[name] = reader.apply_delta_pack(www, name, 10, 20, installed10, work)
    return work, used


def test_delta_packs_update_10_to_20(stream, updated20):
    work, used = updated20
    www = stream.reader()
    assert set(used) == {"os-core", "app", "app-docs"}
    compare_to_rootfs(reader.tree(work), stream.rootfs[20], all_entries(www.bundles(20)))


def test_delta_packs_use_every_kind_of_source(updated20):
    _, used = updated20
    core = used["os-core"]
    assert core["delta"] >= 3  # ls, libc, the moved ext.so, perm.txt ...
    assert core["local"] >= 2  # the moved blob.bin and the new data2 directory
    assert core["staged"] >= 1  # os-release, the new symlink
    assert core["deleted"] >= 4


def test_delta_pack_leaves_out_content_the_device_has(stream):
    www = stream.reader()
    old_hashes = {e.hash for e in www.bundle(www.mom(10).by_path()[b"os-core"]).present()}
    pack = www.pack(20, "os-core", 10)
    shipped = {oracle.staged_hash(n) for n in pack} | {(oracle.delta_hashes(n) or ("", ""))[1] for n in pack}
    assert not shipped & old_hashes
    blob = all_entries(www.bundles(20))[b"/usr/share/data2/blob.bin"]
    assert f"staged/{blob.hash}.tar" not in pack


def test_deltas_are_smaller_than_fullfiles(stream):
    www = stream.reader()
    sizes = []
    for name in ("os-core", "app", "app-docs"):
        for member, blob in www.pack(20, name, 10).items():
            pair = oracle.delta_hashes(member)
            if pair:
                fullfile = os.path.getsize(www.path("20", "files", f"{pair[1]}.tar"))
                assert len(blob) < fullfile, member
                sizes.append((len(blob), fullfile))
    assert sizes, "no delta in any pack"
    # The patched libc: a delta of a few hundred bytes against a fullfile of hundreds of KiB.
    assert min(d / f for d, f in sizes) < 0.05


def test_delta_across_a_rename(stream):
    """ext.so moved from py3.10/ to py3.11/ and changed: its delta is made from the old path."""
    www = stream.reader()
    old = www.bundle(www.mom(10).by_path()[b"os-core"]).by_path()[b"/usr/lib/py3.10/ext.so"]
    new = www.bundle(www.mom(20).by_path()[b"os-core"]).by_path()[b"/usr/lib/py3.11/ext.so"]
    assert f"delta/{old.hash}/{new.hash}" in www.pack(20, "os-core", 10)


def test_delta_carries_new_metadata(stream):
    """perm.txt only changed mode: the delta's header holds the new mode."""
    www = stream.reader()
    old = www.bundle(www.mom(10).by_path()[b"os-core"]).by_path()[b"/usr/share/data/perm.txt"]
    new = www.bundle(www.mom(20).by_path()[b"os-core"]).by_path()[b"/usr/share/data/perm.txt"]
    blob = www.pack(20, "os-core", 10)[f"delta/{old.hash}/{new.hash}"]
    d = oracle.parse_delta(blob)
    assert d.mode & 0o7777 == 0o600
    obj = oracle.apply_delta(www.fullfile(10, old.hash).data, blob)
    assert obj.hash() == new.hash


def test_zero_packs_hold_each_version_s_small_new_objects_once(stream):
    """A zero pack holds the bundle's objects first published in its version, up to 8 KiB as
    fullfiles, byte for byte: content unchanged since an earlier version is not packed again,
    and large objects are left to their fullfiles."""
    www = stream.reader()
    packed: dict[str, int] = {}
    for version in (10, 20):
        for name, m in www.bundles(version).items():
            if www.mom(version).by_path()[name.encode()].version != version:
                continue
            pack = www.pack(version, name, 0)
            new = {e.hash: e for e in m.present() if e.version == version}
            for member, blob in pack.items():
                digest = oracle.staged_hash(member)
                assert digest in new, f"{version} {name}: {member} is not new in {version}"
                assert blob == www.read(str(version), "files", f"{digest}.tar")
                assert len(blob) <= 8192
                packed[f"{version}/{name}/{digest}"] = version
            for e in new.values():
                if os.path.getsize(www.path(str(version), "files", f"{e.hash}.tar")) > 8192:
                    assert f"staged/{e.hash}.tar" not in pack, e.path
    assert any(v == 20 for v in packed.values()) and any(v == 10 for v in packed.values())


def test_delta_packs_leave_large_new_objects_to_their_fullfiles(stream, tmp_path):
    """Version 30 adds a large incompressible file to `app` beside a small one, and 40 only a
    large one: the 20->30 pack carries the small one but not the large one, and 40 has no pack
    for `app` from 30, which would hold nothing."""
    from buildutil import copy_www, create, make_stream_tree

    www = copy_www(stream.www, str(tmp_path / "www"))
    root = make_stream_tree(str(tmp_path / "rootfs"), 2)
    big = os.urandom(200 * 1024)
    with open(os.path.join(root, "opt/app/big.bin"), "wb") as f:
        f.write(big)
    with open(os.path.join(root, "opt/app/small.txt"), "wb") as f:
        f.write(b"small and new\n")
    create(www, root, 30, stream.keys.private)
    with open(os.path.join(root, "opt/app/big2.bin"), "wb") as f:
        f.write(os.urandom(200 * 1024))
    create(www, root, 40, stream.keys.private)
    w = reader.Www(www, stream.keys.raw)
    entries = all_entries(w.bundles(30))
    pack = w.pack(30, "app", 20)
    assert f"staged/{entries[b'/opt/app/small.txt'].hash}.tar" in pack
    assert f"staged/{entries[b'/opt/app/big.bin'].hash}.tar" not in pack
    assert os.path.getsize(w.path("30", "files", f"{entries[b'/opt/app/big.bin'].hash}.tar")) > 64 * 1024
    assert w.mom(40).by_path()[b"app"].version == 40
    assert not os.path.exists(w.path("40", "pack-app-from-30.tar"))
    assert set(w.pack(40, "app", 20)) == set(pack)  # from 20: the small file again, no large one
    reader.check_version(w, 40)


def test_deltas_stay_within_what_a_device_may_hold(stream, tmp_path):
    """Version 30 changes a 6 MiB file and a 9 MiB one a little. A zstd-dict delta would hold
    old and new at once on the device, over its 10 MiB bound for both: the 6 MiB file's delta
    is a bsdiff (old file only), and the 9 MiB file, too large for bsdiff, has none."""
    from buildutil import copy_www, create, make_stream_tree

    www = copy_www(stream.www, str(tmp_path / "www"))
    root = make_stream_tree(str(tmp_path / "rootfs"), 2)
    rng = random.Random(5)
    words = [rng.randbytes(6).hex().encode() for _ in range(4000)]
    body = {n: b" ".join(rng.choice(words) for _ in range((mib << 20) // 13)) for n, mib in (("mid", 6), ("big", 9))}
    for name, data in body.items():
        with open(os.path.join(root, f"opt/app/{name}.dat"), "wb") as f:
            f.write(data)
    create(www, root, 30, stream.keys.private)
    for name, data in body.items():
        with open(os.path.join(root, f"opt/app/{name}.dat"), "wb") as f:
            f.write(data[:1000] + b"edited" + data[1006:])
    create(www, root, 40, stream.keys.private)
    w = reader.Www(www, stream.keys.raw)
    old, new = all_entries(w.bundles(30)), all_entries(w.bundles(40))
    pack = w.pack(40, "app", 30)
    mid = f"delta/{old[b'/opt/app/mid.dat'].hash}/{new[b'/opt/app/mid.dat'].hash}"
    assert oracle.parse_delta(pack[mid]).codec == 2
    assert not any(m.endswith(new[b"/opt/app/big.dat"].hash) for m in pack)
    reader.check_version(w, 40)
