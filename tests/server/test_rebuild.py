"""Rebuilding from the same rootfs directory: whatever changed in place is noticed, even when
size and mtime are kept (the build caches what it scanned)."""

from __future__ import annotations

import os

import exampletree
import reader
from buildutil import EXAMPLE_BUNDLES, all_entries, create
from support import oracle


def test_in_place_changes_are_noticed(tmp_path, keys):
    root = exampletree.make_tree(str(tmp_path / "rootfs"), 1)
    www = str(tmp_path / "www")
    create(www, root, 10, keys.private)
    w = reader.Www(www, keys.raw)
    before = all_entries(w.bundles(10))

    motd = os.path.join(root, "etc/motd")
    st = os.stat(motd)
    with open(motd, "r+b") as f:
        f.write(b"X")  # same size, other content
    os.utime(motd, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime
    os.chmod(os.path.join(root, "usr/share/doc/README"), 0o600)
    os.chown(os.path.join(root, "opt/app/config.txt"), 1000, 1000)
    create(www, root, 20, keys.private)

    after = all_entries(w.bundles(20))
    for path in (b"/etc/motd", b"/usr/share/doc/README", b"/opt/app/config.txt"):
        assert after[path].hash != before[path].hash, path
        assert after[path].version == 20
        assert after[path].hash == oracle.read_obj(os.fsencode(root) + path).hash()
    assert after[b"/usr/bin/ls"].version == 10
    assert w.fullfile(20, after[b"/etc/motd"].hash).data.startswith(b"Xelcome")


def test_parsed_manifests_in_the_cache_equal_the_published_ones(tmp_path, keys):
    """The build cache keeps every published manifest parsed, and loading it gives exactly what
    parsing the published bytes gives (entries in file order included), so no output can
    depend on whether the cache was there."""
    from swupd.format import manifest as mf
    from swupd_server.history import History

    root = exampletree.make_tree(str(tmp_path / "rootfs"), 1)
    www = str(tmp_path / "www")
    create(www, root, 10, keys.private)
    with open(os.path.join(root, "etc/motd"), "ab") as f:
        f.write(b"more\n")
    create(www, root, 20, keys.private)
    cache = www + ".cache"
    parsed = os.listdir(os.path.join(cache, "manifests"))
    assert "20%Manifest.MoM" in parsed and "20%Manifest.os-core" in parsed, "remembered when published"
    for rel in ("10/Manifest.MoM", "10/Manifest.os-core", "20/Manifest.MoM", "20/Manifest.os-core"):
        with open(os.path.join(www, rel), "rb") as f:
            expected = mf.loads(f.read(), is_mom=rel.endswith("MoM"))
        history = History(www, cache)
        got = history.mom(int(rel[:2])) if rel.endswith("MoM") else history.manifest(int(rel[:2]), "os-core")
        assert got == expected and got.entries == expected.entries, rel


def test_a_parsed_manifest_is_used_only_for_the_same_bytes(tmp_path, keys):
    """A cached parse is keyed by the SHA-256 of the manifest's bytes: a stream republished from
    scratch under the same versions (same sizes and times, other content), or a damaged cache
    file, makes the build parse the published file again."""
    from swupd.format import manifest as mf
    from swupd_server.history import History

    root = exampletree.make_tree(str(tmp_path / "rootfs"), 1)
    www = str(tmp_path / "www")
    create(www, root, 10, keys.private)
    cache = www + ".cache"
    history = History(www, cache)
    first = history.manifest(10, "os-core")
    published = os.path.join(www, "10", "Manifest.os-core")
    with open(published, "rb") as f:
        data = f.read()
    # Another manifest of the same size: one entry's hash changed by one digit.
    i = data.index(b"\t", data.index(b"\n\n") + 2) + 1
    other = data[:i] + (b"0" if data[i : i + 1] != b"0" else b"1") + data[i + 1 :]
    st = os.stat(published)
    with open(published, "wb") as f:
        f.write(other)
    os.utime(published, ns=(st.st_atime_ns, st.st_mtime_ns))
    again = History(www, cache).manifest(10, "os-core")
    assert again == mf.loads(other) and again != first
    target = os.path.join(cache, "manifests", "10%Manifest.os-core")
    with open(target, "r+b") as f:
        blob = f.read()
        f.seek(blob.index(b"/usr/"))  # inside a path: still loadable, as another path
        f.write(b"/var/")
    assert History(www, cache).manifest(10, "os-core") == mf.loads(other)


def test_a_damaged_cache_file_reads_as_empty(tmp_path):
    """Cache files carry a checksum: flipped bytes that would still load as other stamps make
    the file read as empty (everything is scanned again), never as wrong data."""
    from swupd_server import cachefile

    path = str(tmp_path / "scan.cache")
    data = {"/usr/bin/ls": ["1:2:3", "ab" * 32], "/etc/motd": ["4:5:6", "cd" * 32]}
    cachefile.save(path, data)
    assert cachefile.load(path) == data
    blob = bytearray(open(path, "rb").read())
    i = blob.index(b"4:5:6")
    blob[i] = ord("7")
    open(path, "wb").write(blob)
    assert cachefile.load(path) == {}
    assert cachefile.load(str(tmp_path / "missing")) == {}


def test_hashes_cached_under_another_way_of_hashing_are_not_reused(tmp_path):
    """Scan stamps recorded by a build that hashed xattrs otherwise (no marker of the way of
    hashing) are not trusted: every object is hashed again."""
    from swupd_server import cachefile, scan

    root = exampletree.make_tree(str(tmp_path / "rootfs"), 1)
    cache = str(tmp_path / "scan.cache")
    items = scan.scan(root, 1, cache)
    record = cachefile.load(cache)
    stale = {p: [rec[0], "0" * 63 + "1", *rec[2:]] for p, rec in record.items() if p}
    cachefile.save(cache, stale)
    again = scan.scan(root, 1, cache)
    assert {p: i.hash for p, i in again.items()} == {p: i.hash for p, i in items.items()}
    assert cachefile.load(cache) == record


def _pax_fullfile(digest: str, target: str) -> bytes:
    """A symlink's fullfile as earlier releases wrote it: a pax tar, the long target in a pax
    record."""
    import io
    import tarfile

    import zstandard

    info = tarfile.TarInfo(digest)
    info.type, info.linkname, info.mode, info.uname, info.gname = tarfile.SYMTYPE, target, 0o777, "", ""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        t.addfile(info)
    return zstandard.ZstdCompressor().compress(buf.getvalue())


def _replace_in_pack(path: str, member: str, blob: bytes) -> None:
    """Rewrite a pack, `member` holding `blob`, as frames a later build copies from: the
    directories, the members, the end."""
    import io
    import tarfile

    import zstandard

    with open(path, "rb") as f:
        raw = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True).read()
    members = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(raw)) as t:
        for m in t.getmembers():
            if m.isreg():
                data = blob if m.name == member else t.extractfile(m).read()  # type: ignore[union-attr]
                m.size = len(data)
                members.write(m.tobuf(tarfile.USTAR_FORMAT) + data + bytes(-len(data) % 512))
    cctx = zstandard.ZstdCompressor()
    with open(path, "wb") as f:
        for frame in (raw[:1024], members.getvalue(), bytes(1024)):
            f.write(cctx.compress(frame))


def test_fullfiles_of_an_earlier_layout_are_written_anew_not_reused(tmp_path, keys):
    """Fullfiles that earlier releases published as pax tars (a symlink's long target) are not
    linked into a new version or copied into its packs: what it publishes is all plain ustar."""
    root = exampletree.make_tree(str(tmp_path / "rootfs"), 1)
    target = "../" * 40 + "usr/bin/ls"
    os.symlink(target, os.path.join(root, "usr/share/long-link"))
    www = str(tmp_path / "www")
    create(www, root, 10, keys.private)
    w = reader.Www(www, keys.raw)
    digest = all_entries(w.bundles(10))[b"/usr/share/long-link"].hash
    with open(os.path.join(www, "10", "files", f"{digest}.tar"), "wb") as f:
        f.write(_pax_fullfile(digest, target))
    pack = os.path.join(www, "10", "pack-os-core-from-0.tar")
    _replace_in_pack(pack, f"staged/{digest}.tar", _pax_fullfile(digest, target))
    # A new format's first version publishes every object again (docs/format.md).
    create(www, root, 20, keys.private, EXAMPLE_BUNDLES, "--format", "2")
    reader.check_version(w, 20)
    assert all(e.version == 20 for e in all_entries(w.bundles(20)).values())
    dest = tmp_path / "installed"
    dest.mkdir()
    installed = reader.install_bundle(w, 20, "os-core", str(dest))
    assert os.readlink(dest / "usr/share/long-link") == target and b"/usr/share/long-link" in installed
