"""The published tree, checked with the independent reader: manifests, fullfiles, signatures,
`latest`, and how versions carry over from one build to the next."""

from __future__ import annotations

import os

import pytest
import reader
from buildutil import all_entries, assert_same_snapshot, copy_www, create, make_stream_tree, snapshot
from support import oracle
from swupd_server import cli


def test_latest_points_at_newest_and_verifies(stream):
    www = stream.reader()
    record = www.latest(1)  # verifies latest.sig with the public key
    assert record.version == 20
    with open(www.path("version", "format1", "latest"), "rb") as f:
        assert f.read().split(b"\n")[0] == b"20"
    assert record.fields["expires"] > record.fields["timestamp"]


@pytest.mark.parametrize("version", [10, 20])
def test_every_entry_has_a_fullfile_that_rehashes(stream, version):
    www = stream.reader()
    bundles = reader.check_version(www, version, fullfiles=True)
    assert set(bundles) == {"os-core", "app", "app-docs"}
    present = sum(len(m.present()) for m in bundles.values())
    assert present > 30


@pytest.mark.parametrize("version", [10, 20])
def test_mom_entries_hash_the_manifest_files(stream, version):
    www = stream.reader()
    mom = www.mom(version)  # verifies Manifest.MoM.sig
    assert mom.previous == (0 if version == 10 else 10)
    for e in mom.present():
        with open(www.path(str(e.version), f"Manifest.{e.name}"), "rb") as f:
            data = f.read()
        assert oracle.manifest_hash(data) == e.hash
        assert e.size == len(data)


def test_signature_by_another_key_is_refused(stream, tmp_path):
    other = tmp_path / "other"
    assert cli.main(["keygen", "--private", str(other), "--public", str(other) + ".pub"]) == 0
    www = reader.Www(stream.www, oracle.load_key(str(other) + ".pub"))
    with pytest.raises(oracle.FormatViolation):
        www.mom(20)
    with pytest.raises(oracle.FormatViolation):
        www.latest(1)


def test_tampered_mom_fails_verification(stream):
    www = stream.reader()
    data = www.read("20", "Manifest.MoM")
    sig = www.read("20", "Manifest.MoM.sig")
    oracle.verify(data, sig, stream.keys.raw)
    with pytest.raises(oracle.FormatViolation):
        oracle.verify(data.replace(b"\t20\t", b"\t21\t", 1), sig, stream.keys.raw)


def test_headers_and_includes(stream):
    www = stream.reader()
    bundles = www.bundles(20)
    assert bundles["os-core"].includes == []
    assert bundles["app"].includes == ["os-core"]
    assert bundles["app-docs"].includes == ["os-core", "app"]
    for m in bundles.values():
        assert m.format == 1
        assert int(m.header["filecount"]) == len(m.entries)
        assert int(m.header["contentsize"]) == sum(e.size for e in m.present() if e.kind in "FL")


def test_every_rootfs_path_is_in_a_bundle(stream):
    www = stream.reader()
    entries = all_entries(www.bundles(20))
    rootfs = reader.tree(stream.rootfs[20])
    missing = sorted(set(rootfs) - set(entries))
    assert not missing
    for path, obj in rootfs.items():
        if path != b"/usr/lib/os-release":
            assert entries[path].hash == obj.hash(), path
            assert entries[path].kind == obj.kind
            assert entries[path].size == obj.size


def test_os_release_and_markers(stream):
    www = stream.reader()
    entries = all_entries(www.bundles(20))
    e = entries[b"/usr/lib/os-release"]
    assert e.version == 20
    obj = www.fullfile(e.version, e.hash)
    assert b"VERSION_ID=20\n" in obj.data
    assert b'NAME="Example OS"\n' in obj.data
    assert b"VERSION_ID=0" not in obj.data
    for name in ("os-core", "app", "app-docs"):
        marker = entries[b"/usr/share/clear/bundles/" + name.encode()]
        assert marker.kind == "F" and marker.size == 0
        assert marker.path in www.bundles(20)[name].by_path()


def test_versions_carried_over(stream):
    """Unchanged objects keep their old version; changed and new ones get 20; removed ones a
    deleted entry of version 20."""
    www = stream.reader()
    old = all_entries(www.bundles(10))
    new_bundles = www.bundles(20)
    core = new_bundles["os-core"].by_path()
    for path in (b"/usr/bin/cat", b"/usr/bin/sh", b"/usr/lib/libm.so.6", b"/usr/share/data/same.txt", b"/bin", b"/etc"):
        assert core[path].version == 10, path
        assert core[path].hash == old[path].hash
    changed = [b"/usr/bin/ls", b"/usr/lib/libc.so.6", b"/usr/share/data/perm.txt", b"/usr/share/data/owned.txt"]
    changed += [b"/usr/share/data/kind", b"/usr/lib/py3.11/ext.so", b"/usr/share/data2/blob.bin", b"/etc/motd"]
    for path in changed:
        assert core[path].version == 20 and core[path].present, path
    assert core[b"/usr/share/data/kind"].kind == "L"
    assert core[b"/usr/share/data2/blob.bin"].hash == old[b"/usr/share/data/blob.bin"].hash
    for path in (b"/etc/hostname", b"/usr/share/data/blob.bin", b"/var/lib/old", b"/var/lib/old/state.db"):
        e = core[path]
        assert (e.flags, e.hash, e.version, e.size) == (".d..", oracle.ZERO_HASH, 20, 0), path
    app = new_bundles["app"].by_path()
    assert app[b"/opt/app/config.txt"].version == 20
    assert app[b"/opt/app/bin/grep"].version == 10
    docs = new_bundles["app-docs"].by_path()
    assert docs[b"/usr/share/doc/NEWS"].version == 20
    assert docs[b"/usr/share/doc/LIESMICH"].version == 10


def test_fullfiles_only_for_what_changed(stream):
    """Version 20's files/ holds exactly the objects whose entries are version 20."""
    www = stream.reader()
    entries = all_entries(www.bundles(20))
    new = {e.hash for e in entries.values() if e.version == 20}
    stored = {n[:-4] for n in os.listdir(www.path("20", "files"))}
    assert stored == new


@pytest.fixture(scope="module")
def v30(stream, tmp_path_factory):
    """A copy of the stream with version 30: version 20's tree with one os-core file changed."""
    d = tmp_path_factory.mktemp("v30")
    www = copy_www(stream.www, str(d / "www"))
    before = snapshot(www)
    root = make_stream_tree(str(d / "rootfs-30"), 2)
    with open(os.path.join(root, "etc/motd"), "ab") as f:
        f.write(b"One more line in 30.\n")
    create(www, root, 30, stream.keys.private)
    return reader.Www(www, stream.keys.raw), before, root


def test_unchanged_bundles_are_not_rewritten(v30):
    www, _, _ = v30
    mom = www.mom(30).by_path()
    assert mom[b"os-core"].version == 30
    assert mom[b"app"].version == 20
    assert mom[b"app-docs"].version == 20
    assert not os.path.exists(www.path("30", "Manifest.app"))
    assert not os.path.exists(www.path("30", "Manifest.app-docs"))
    assert not os.path.exists(www.path("30", "pack-app-from-0.tar"))
    reader.check_version(www, 30, fullfiles=True)


def test_one_changed_file_gives_one_new_fullfile(v30):
    www, _, _ = v30
    entries = all_entries(www.bundles(30))
    objs = {n[:-4]: www.fullfile(30, n[:-4]) for n in os.listdir(www.path("30", "files"))}
    assert {h: o.kind for h, o in objs.items()} == {
        entries[b"/etc/motd"].hash: "F",
        entries[b"/usr/lib/os-release"].hash: "F",
    }
    assert objs[entries[b"/etc/motd"].hash].data.endswith(b"One more line in 30.\n")
    new = sorted(p for p, e in entries.items() if e.version == 30)
    assert new == [b"/etc/motd", b"/usr/lib/os-release"]


def test_manifest_deltas_from_each_source_to_each_rewritten_manifest(v30):
    """30 has deltas from the manifests its sources (10 and 20) name, for os-core only (the one
    rewritten), each far smaller than the compressed manifest (reader.check_manifest_deltas
    applies them)."""
    www, _, _ = v30
    assert sorted(reader.manifest_deltas(www, 30)) == [("os-core", 10), ("os-core", 20)]
    assert sorted(reader.manifest_deltas(www, 20)) == [
        (n, 10) for n in sorted(www.bundles(20)) if www.mom(20).by_path()[n.encode()].version == 20
    ]
    blob = reader.manifest_deltas(www, 30)[("os-core", 20)]
    assert len(blob) * 5 < os.path.getsize(www.path("30", "manifests", "Manifest.os-core.zst"))
    reader.check_manifest_deltas(www, 30)


def test_earlier_versions_are_immutable(v30):
    """Building 30 changes nothing published before except `latest`."""
    www, before, _ = v30
    after = snapshot(www.root)
    pointer = {b"version/format1/latest", b"version/format1/latest.sig"}
    old = {p: v for p, v in before.items() if p not in pointer}
    kept = {p: after.get(p) for p in old}
    assert_same_snapshot(old, kept)
    assert www.latest(1).version == 30


OE_OS_RELEASE = (
    "# generated by os-release.bb\n"
    'ID=poky\nNAME="Poky (Yocto Project Reference Distro)"\nVERSION="6.0.2 (wrynose)"\n'
    'VERSION_ID="6.0.2"\nPRETTY_NAME="Poky 6.0.2"\n\nDISTRO_CODENAME="wrynose"\n'
)


@pytest.mark.parametrize("text", [OE_OS_RELEASE, 'NAME="No version"\nID=x', ""])
def test_os_release_and_markers_are_the_files_prepare_rootfs_writes_into_the_image(keys, tmp_path, text):
    """`prepare-rootfs` (the layer's rootfs step) sets VERSION_ID and the bundle markers in the
    image's rootfs, `create-update` in what it publishes: the two must be the same bytes, or the
    device starts with an os-release its manifest calls modified (and a delta against the
    published file cannot apply). OE-core writes VERSION_ID before other fields, with comments
    and blank lines, which the server once rewrote."""
    root = tmp_path / "rootfs"
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/lib/os-release").write_text(text)
    (root / "etc").mkdir()
    (root / "etc/os-release").symlink_to("../usr/lib/os-release")
    assert cli.main(["prepare-rootfs", "--rootfs", str(root), "--version", "10", "app", "app-docs"]) == 0
    image_file = (root / "usr/lib/os-release").read_bytes()
    assert create(str(tmp_path / "www"), str(root), 10, keys.private).rc == 0
    www = reader.Www(str(tmp_path / "www"), keys.raw)
    entries = all_entries(www.bundles(10))
    e = entries[b"/usr/lib/os-release"]
    assert www.fullfile(e.version, e.hash).data == image_file
    assert b"VERSION_ID=10\n" in image_file
    markers = sorted(p.name for p in (root / "usr/share/clear/bundles").iterdir())
    assert markers == ["app", "app-docs", "os-core"]
    for name in markers:
        e = entries[b"/usr/share/clear/bundles/" + name.encode()]
        assert e.hash == reader.read_obj(os.fsencode(root / "usr/share/clear/bundles" / name)).hash(), name
