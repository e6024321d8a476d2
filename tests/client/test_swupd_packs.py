"""Hostile packs and fullfiles: nothing is written outside the state directory, and the update
either succeeds from fullfiles or fails cleanly with the tree untouched."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import clientkit as ck
import pytest
import zstandard
from clientkit import Device
from support.environment import unavailable
from support.httpserver import FaultServer

PACK = "20/pack-os-core-from-10.tar"


@pytest.fixture
def attacked(v10_all: Device, clone_device, private_server: FaultServer) -> Device:
    return clone_device(v10_all, private_server.url())


def wanted(stream: ck.Stream) -> list[ck.Entry]:
    """Files version 20 adds to os-core, biggest first."""
    new = ck.new_entries(stream.www, 10, 20, {"os-core"})
    return sorted((e for e in new.values() if e.kind == "F"), key=lambda e: -e.size)


def run_confined(dev: Device, tmp_path: Path) -> ck.Result:
    """`swupd update` as a process whose working directory is a fresh, watched directory."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    import subprocess

    p = subprocess.run(
        [ck.SWUPD, "update", *dev.opts()], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert not any(cwd.iterdir()), f"written to the working directory: {list(cwd.iterdir())}"
    return ck.Result(p.returncode, p.stdout, p.stderr)


def state_is_clean(state: str) -> None:
    """Only the state directory's own layout: objects named by their hash, nothing pending."""
    for d in ("download", "stage"):
        leftovers = [p for p in Path(state, d).rglob("*") if not p.is_dir()]
        assert not leftovers, leftovers
    for shard in Path(state, "objects").iterdir():
        assert shard.is_dir() and len(shard.name) == 2, shard
        for p in shard.iterdir():
            assert len(p.name) == 64 and p.name.startswith(shard.name), p
            assert all(c in "0123456789abcdef" for c in p.name), p


@pytest.mark.parametrize("bomb", [False, True], ids=["members", "bomb"])
def test_malicious_pack(
    attacked: Device, private_www: Path, private_server: FaultServer, stream: ck.Stream, tmp_path: Path, bomb: bool
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    passwd = os.stat("/etc/passwd")
    w = wanted(stream)
    h = [e.hash for e in w]
    inner_evil = ck.zstd(ck.tar_bytes([ck.member("../../../../" + str(outside / "inner"), b"x")]))
    members = [
        ck.member("staged/", kind=tarfile.DIRTYPE, mode=0o755),
        ck.member("../" * 12 + str(outside / "traversal").lstrip("/"), b"escaped\n"),
        ck.member(str(outside / "absolute"), b"absolute\n"),
        ck.member(f"staged/{h[0]}.tar", kind=tarfile.SYMTYPE, linkname=str(outside / "via-symlink")),
        ck.member(f"staged/{h[1]}.tar", kind=tarfile.LNKTYPE, linkname="/etc/passwd"),
        ck.member(f"delta/{h[2]}/{h[3]}", kind=tarfile.CHRTYPE, devmajor=1, devminor=3),
        ck.member(f"staged/{h[3]}.tar", kind=tarfile.FIFOTYPE),
        ck.member(f"staged/{h[4]}.tar", b"\0" * (4 << 20)),  # far above the signed size
        ck.member(f"staged/{h[5]}.tar", inner_evil),  # a fullfile whose member escapes
        ck.member(f"delta/{h[0]}/{h[6]}", b"SWDELTA1 but garbage"),
        ck.member(str(outside / "dir") + "/", kind=tarfile.DIRTYPE),
    ]
    if bomb:
        members.append(ck.member(f"staged/{h[0]}.tar", b"\0" * (200 << 20)))
    (private_www / PACK).write_bytes(ck.zstd(ck.tar_bytes(members)))
    before = attacked.tree()
    r = run_confined(attacked, tmp_path)
    assert r.rc == 0, r.err
    assert "Traceback" not in r.err
    assert "unusable" in r.err or PACK in r.err, "the rejected members are reported"
    assert list(outside.iterdir()) == [], list(outside.iterdir())
    now = os.stat("/etc/passwd")
    assert (now.st_mtime_ns, now.st_size, now.st_nlink) == (passwd.st_mtime_ns, passwd.st_size, passwd.st_nlink)
    ck.assert_tree(attacked.root, stream.expected(20, ck.ALL_BUNDLES, old=before))
    state_is_clean(attacked.state)
    got = {e.path for e in private_server.log if e.status == 200}
    assert f"/20/files/{h[0]}.tar" in got and f"/20/files/{h[1]}.tar" in got, "fell back to fullfiles"


def drop_packs(www: Path) -> None:
    for p in (www / "20").glob("pack-*.tar"):
        p.unlink()


def forged_fullfile(kind: str, e: ck.Entry, outside: Path, content: bytes) -> bytes:
    if kind == "two-members":  # the right object, and something smuggled after it
        second = ck.member("../../" + str(outside / "second"), b"evil")
        return ck.zstd(ck.tar_bytes([ck.member(e.hash, content, mode=0o4755), second]))
    if kind == "symlink-outside":
        return ck.zstd(ck.tar_bytes([ck.member(e.hash, kind=tarfile.SYMTYPE, linkname=str(outside / "target"))]))
    if kind == "hardlink":
        return ck.zstd(ck.tar_bytes([ck.member(e.hash, kind=tarfile.LNKTYPE, linkname="/etc/passwd")]))
    if kind == "traversal-name":
        return ck.zstd(ck.tar_bytes([ck.member("../../" + e.hash, b"x" * e.size, mode=0o4755)]))
    if kind == "device":
        return ck.zstd(ck.tar_bytes([ck.member(e.hash, kind=tarfile.CHRTYPE, devmajor=1, devminor=3)]))
    assert kind == "xz-garbage"
    return b"\xfd7zXZ\x00" + os.urandom(200)


@pytest.mark.parametrize(
    ("kind", "code"),
    [("two-members", 3), ("symlink-outside", 3), ("hardlink", 3), ("traversal-name", 3), ("device", 3),
     ("xz-garbage", 3)],
)  # fmt: skip
def test_malicious_fullfile(
    attacked: Device, private_www: Path, stream: ck.Stream, tmp_path: Path, kind: str, code: int
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    drop_packs(private_www)
    e = ck.entries(stream.www, 20, {"os-core"})["/usr/bin/suid-tool"]
    content = Path(stream.rootfs[20], "usr/bin/suid-tool").read_bytes()
    (private_www / f"20/files/{e.hash}.tar").write_bytes(forged_fullfile(kind, e, outside, content))
    snap = attacked.snapshot()
    r = run_confined(attacked, tmp_path)
    assert r.rc == code, (r.rc, r.err)
    r.error_line()
    assert ck.diff_snapshots(snap, attacked.snapshot()) == ""
    assert list(outside.iterdir()) == []
    assert not Path(attacked.state, "journal").exists()


@pytest.mark.parametrize(("target", "code"), [("/etc/pwd", 5), ("/etc/shadow", 6)])
def test_symlink_fullfile_pointing_elsewhere(
    attacked: Device, private_www: Path, stream: ck.Stream, tmp_path: Path, target: str, code: int
) -> None:
    """A symlink object whose target was changed: the target is hashed, so it is refused; one
    of another length than the manifest's size is refused before it is hashed."""
    drop_packs(private_www)
    e = ck.entries(stream.www, 20, {"os-core"})["/usr/share/data/kind"]
    assert e.kind == "L" and e.size == len("/etc/pwd")
    (private_www / f"20/files/{e.hash}.tar").write_bytes(
        ck.zstd(ck.tar_bytes([ck.member(e.hash, kind=tarfile.SYMTYPE, linkname=target)]))
    )
    snap = attacked.snapshot()
    r = run_confined(attacked, tmp_path)
    assert r.rc == code, (r.rc, r.err)
    assert ck.diff_snapshots(snap, attacked.snapshot()) == ""
    objects = Path(attacked.state, "objects").glob("*/*")
    assert not [p for p in objects if p.is_symlink() and "shadow" in os.readlink(p)]


def _zero_pack(stream: ck.Stream) -> str:
    """os-core's zero pack of version 10: its small objects, many to a pack."""
    return os.path.join(stream.www, "10", "pack-os-core-from-0.tar")


def _packed_files(stream: ck.Stream) -> dict:
    """os-core's regular files of version 10 that its zero pack holds, as entries."""
    from swupd.format.manifest import Entry, Type

    with open(_zero_pack(stream), "rb") as f:
        raw = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True).read()
    with tarfile.open(fileobj=io.BytesIO(raw)) as t:
        packed = {m.name.removeprefix("staged/").removesuffix(".tar") for m in t.getmembers() if m.isreg()}
    entries = ck.entries(stream.www, 10, {"os-core"})
    files = {p: e for p, e in entries.items() if e.kind == "F" and e.hash in packed}
    return {e.hash: Entry(p, Type.FILE, e.hash, 10, e.size) for p, e in files.items()}


# How a pack reaches the importer: a plain tar (streamed), zstd small enough to be unpacked in
# memory, and zstd above the in-memory limit (streamed).
PACK_FORMS = ["tar", "zstd-in-memory", "zstd-streamed"]


def _as_form(path: Path, form: str):
    """Rewrite the plain tar at `path` in `form`; the limits to import it with."""
    from swupd.format.limits import Limits

    if form != "tar":
        path.write_bytes(ck.zstd(path.read_bytes()))
    return Limits(max_pack_in_memory=1024) if form == "zstd-streamed" else Limits()


@pytest.mark.parametrize("form", PACK_FORMS)
def test_pack_import_rejects_a_bad_member_only(stream: ck.Stream, tmp_path: Path, form: str) -> None:
    """Every wanted object arrives, each bad member is reported by name, the rest are still
    stored."""
    from swupd.store.importer import import_pack
    from swupd.store.objects import ObjectStore

    wanted = _packed_files(stream)
    # A copy of the zero pack in which one member's bytes are replaced by another's.
    src = _zero_pack(stream)
    bad = sorted(wanted)[len(wanted) // 2]
    with open(src, "rb") as f:
        raw = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True).read()
    tampered = tmp_path / "pack.tar"
    with tarfile.open(fileobj=io.BytesIO(raw)) as tin, tarfile.open(tampered, "w") as tout:
        donor = next(m for m in tin.getmembers() if m.isreg() and bad not in m.name)
        for m in tin.getmembers():
            data = tin.extractfile(m) if m.isreg() else None
            if bad in m.name:
                m.size = donor.size
                data = tin.extractfile(donor)
            tout.addfile(m, data)
    limits = _as_form(tampered, form)
    store = ObjectStore(str(tmp_path / "objects"))
    with open(tampered, "rb") as f:
        result = import_pack(store, f, 1 << 30, wanted, lambda h, cap: None, limits)
    assert [r.split(":")[0] for r in result.rejected] == [f"staged/{bad}.tar"]
    assert result.objects == len(wanted) - 1
    assert all(store.has(h) for h in wanted if h != bad) and not store.has(bad)


@pytest.mark.parametrize("form", PACK_FORMS)
def test_pack_offering_an_object_twice(stream: ck.Stream, tmp_path: Path, form: str) -> None:
    """An incremental pack may carry an object twice (an old member and a new one): it is
    imported once."""
    from swupd.store.importer import import_pack
    from swupd.store.objects import ObjectStore

    wanted = _packed_files(stream)
    src = _zero_pack(stream)
    with open(src, "rb") as f:
        raw = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True).read()
    doubled = tmp_path / "pack.tar"
    with tarfile.open(fileobj=io.BytesIO(raw)) as tin, tarfile.open(doubled, "w") as tout:
        members = [m for m in tin.getmembers() if m.isreg()]
        for m in members + members:
            tout.addfile(m, tin.extractfile(m))
    limits = _as_form(doubled, form)
    store = ObjectStore(str(tmp_path / "objects"))
    with open(doubled, "rb") as f:
        result = import_pack(store, f, 1 << 30, wanted, lambda h, cap: None, limits)
    assert result.rejected == [] and result.objects == len(wanted)
    assert all(store.has(h) for h in wanted)


@pytest.mark.parametrize("form", ["zstd-in-memory", "zstd-streamed"])
def test_pack_cut_short_keeps_what_came_whole(stream: ck.Stream, tmp_path: Path, form: str) -> None:
    """A pack that ends inside its last member: that member is refused, the others are stored."""
    from swupd.store.importer import import_pack
    from swupd.store.objects import ObjectStore

    wanted = _packed_files(stream)
    src = _zero_pack(stream)
    with open(src, "rb") as f:
        raw = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True).read()
    with tarfile.open(fileobj=io.BytesIO(raw)) as t:
        members = [m for m in t.getmembers() if m.isreg() and m.size > 64]
    last = members[-1]
    cut = tmp_path / "cut.tar"
    cut.write_bytes(raw[: last.offset_data + last.size // 2])
    limits = _as_form(cut, form)
    store = ObjectStore(str(tmp_path / "objects"))
    with open(cut, "rb") as f:
        result = import_pack(store, f, 1 << 30, wanted, lambda h, cap: None, limits)
    assert result.rejected, "the cut member is reported"
    got = {h for h in wanted if store.has(h)}
    assert got and last.name.split("/")[-1].removesuffix(".tar") not in got
    assert all(filehash_of(store, h) == h for h in got)


def filehash_of(store, digest: str) -> str:
    from swupd.format import filehash

    return filehash.hash_path(store.path(digest))


def _acl(*entries: tuple[int, int, int]) -> bytes:
    """A POSIX ACL in the kernel's xattr form: version 2, then (tag, permissions, id)."""
    import struct

    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


def test_stored_objects_carry_no_inherited_acl(tmp_path: Path) -> None:
    """A default ACL on the state directory gives every new file an access ACL the manifest
    does not list; the store removes it, whichever way the object comes in."""
    import stat as st

    from swupd.format import filehash
    from swupd.format.fullfile import Meta
    from swupd.store.objects import ObjectStore

    store = ObjectStore(str(tmp_path / "objects"))
    any_id = 0xFFFFFFFF
    # user::rwx, user 1000:rwx, group::r-x, mask::rwx, other::r-x
    default = _acl((0x01, 7, any_id), (0x02, 7, 1000), (0x04, 5, any_id), (0x10, 7, any_id), (0x20, 5, any_id))
    try:
        os.setxattr(store.dir, "system.posix_acl_default", default)
    except OSError as e:
        unavailable(f"no POSIX ACLs here: {e.strerror}")
    meta = Meta(st.S_IFREG | 0o644, os.getuid(), os.getgid(), 0, 6)
    for data in (b"bytes!", b"stream"):
        digest = filehash.hash_bytes(data, meta.mode, meta.uid, meta.gid, {})
        store.add(digest, meta, data if data == b"bytes!" else io.BytesIO(data))
        assert "system.posix_acl_access" not in os.listxattr(store.path(digest))
        assert filehash.hash_path(store.path(digest)) == digest


def test_an_object_cut_short_by_a_dead_import_process_is_fetched_again(tmp_path: Path) -> None:
    """A delta result is written under its own name; if the process writing it dies, what is
    left there is checked, dropped and fetched again, while a whole one counts as obtained."""
    import stat as st

    from swupd.format import filehash
    from swupd.format.fullfile import Meta
    from swupd.format.manifest import Entry, Type
    from swupd.ops.obtain import _forget_stored
    from swupd.store.objects import ObjectStore

    meta = Meta(st.S_IFREG | 0o644, os.getuid(), os.getgid(), 0, 10)
    whole, cut = b"0123456789", b"abcdefghij"
    h_whole = filehash.hash_bytes(whole, meta.mode, meta.uid, meta.gid, {})
    h_cut = filehash.hash_bytes(cut, meta.mode, meta.uid, meta.gid, {})
    writer = ObjectStore(str(tmp_path / "objects"))
    writer.add(h_whole, meta, whole)
    Path(writer.path(h_cut)).parent.mkdir(parents=True, exist_ok=True)
    Path(writer.path(h_cut)).write_bytes(cut[:4])  # what a killed writer leaves
    store = ObjectStore(writer.dir)  # the parent, which stored neither itself
    missing = {h: Entry(f"/f{i}", Type.FILE, h, 20, 10) for i, h in enumerate((h_whole, h_cut))}
    _forget_stored(store, missing)
    assert list(missing) == [h_cut]
    assert not os.path.lexists(store.path(h_cut))
    store.add(h_cut, meta, cut)  # fetched again: nothing in the way
    assert filehash.hash_path(store.path(h_cut)) == h_cut


@pytest.mark.parametrize("form", PACK_FORMS)
def test_a_delta_larger_than_its_objects_fullfile_is_refused_from_its_header(tmp_path: Path, form: str) -> None:
    """The build keeps a delta only if it is smaller than the object's fullfile, so a delta
    member past the largest fullfile the object could have is refused before its source is
    looked up or a byte of it is read (a genuine update never holds a larger one)."""
    from swupd.format import ustar
    from swupd.format.manifest import Entry, Type
    from swupd.store.importer import fullfile_cap, import_pack
    from swupd.store.objects import ObjectStore

    old, new = "1" * 64, "2" * 64
    wanted = {new: Entry("/big", Type.FILE, new, 20, 1 << 20)}
    size = fullfile_cap(1 << 20) + 1
    pack = tmp_path / "pack.tar"
    with open(pack, "wb") as f:
        f.write(ustar.header(f"delta/{old}/{new}", ustar.REGULAR, 0o644, size=size))
        f.write(b"\xff" * size + ustar.padding(size) + ustar.END)
    limits = _as_form(pack, form)
    asked: list[str] = []
    store = ObjectStore(str(tmp_path / "objects"))
    with open(pack, "rb") as f:
        result = import_pack(store, f, 1 << 30, wanted, lambda h, cap: asked.append(h), limits)
    assert asked == []
    assert len(result.rejected) == 1 and result.rejected[0].startswith(f"delta/{old}/{new}: larger than")
