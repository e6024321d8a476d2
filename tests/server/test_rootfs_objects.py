"""Everything a real root file system holds goes through a build and back out of the packs
unchanged; what the format cannot carry is refused by name."""

from __future__ import annotations

import os
import stat

import exampletree
import pytest
import reader
from buildutil import all_entries, assert_same_snapshot, cli_process, copy_www, create, create_args, snapshot
from support import oracle
from support.environment import unavailable
from support.trees import write_file as _file

RAW_NAME = b"/srv/raw-\xff\xfe.bin"
RAW_DIR = b"/srv/d\xe9j\xe0"
BUNDLES = """\
[bundle.app]
paths = ["/opt/app"]

[bundle.extras]
paths = ["/srv"]
"""


def _dir(root: str, rel: str | bytes, mode: int = 0o755, uid: int = 0, gid: int = 0) -> bytes:
    path = os.fsencode(root) + os.fsencode(rel)
    os.makedirs(path, exist_ok=True)
    os.chown(path, uid, gid)
    os.chmod(path, mode)
    return path


@pytest.fixture(scope="module")
def odd(tmp_path_factory, keys):
    d = tmp_path_factory.mktemp("odd")
    root = exampletree.make_tree(str(d / "rootfs"), 1)
    _file(root, "/srv/empty-file", b"")
    _dir(root, "/srv/empty-dir")
    os.symlink("does/not/exist", os.path.join(root, "srv/dangling"))
    os.symlink("/usr/bin/ls", os.path.join(root, "srv/absolute"))
    first = _file(root, "/srv/hard1", b"hardlinked content\n")
    os.link(first, os.path.join(root, "srv/hard2"))
    with open("/bin/cat", "rb") as f:
        _file(root, "/srv/setuid", f.read(), 0o4755)
    _file(root, "/srv/setgid", b"#!/bin/sh\n", 0o2755, 0, 50)
    _dir(root, "/srv/setgid-dir", 0o2775, 0, 50)
    _dir(root, "/srv/sticky", 0o1777)
    _file(root, "/srv/sticky/inside", b"in a sticky dir\n", 0o600, 1000, 1000)
    _file(root, "/srv/user-owned", b"belongs to 1000\n", 0o640, 1000, 1000)
    _dir(root, "/srv/user-dir", 0o750, 1001, 1002)
    _file(root, "/srv/user-dir/secret", b"nobody else\n", 0o400, 1001, 1002)
    _file(root, "/srv/name with spaces.txt", b"spaces\n")
    _file(root, "/srv/ünïcödé-名前.txt", "unicode ✓\n".encode())
    _file(root, RAW_NAME, b"a name that is not UTF-8\n")
    os.symlink(b"raw-\xff\xfe.bin", os.fsencode(root) + b"/srv/link-to-raw")
    # Targets that fill ustar's 100-byte link name, and pass it (plain, and not UTF-8).
    os.symlink("x" * 100, os.path.join(root, "srv/target-of-100"))
    os.symlink("../" * 40 + "usr/bin/ls", os.path.join(root, "srv/target-of-130"))
    os.symlink(b"/" + b"\xe9t\xe9/" * 60, os.fsencode(root) + b"/srv/target-not-utf8")
    _dir(root, RAW_DIR)
    _file(root, RAW_DIR + b"/inner.txt", b"inside a non-UTF-8 directory\n")
    _file(root, "/srv/no-perms", b"mode 000\n", 0o000)
    xattrs = True
    try:
        x = _file(root, "/srv/xattr-file", b"with attributes\n")
        os.setxattr(x, "user.comment", b"hello")
        os.setxattr(x, "user.binary", b"\xff\x00\x01")
        os.setxattr(x, "user.empty", b"")
        xd = _dir(root, "/srv/xattr-dir")
        os.setxattr(xd, "user.dir", b"1")
    except OSError:
        xattrs = False
    bundles = d / "bundles.toml"
    bundles.write_text(BUNDLES)
    www = str(d / "www")
    create(www, root, 10, keys.private, str(bundles))
    return root, reader.Www(www, keys.raw), str(bundles), xattrs


def test_everything_verifies(odd):
    _, www, _, _ = odd
    bundles = reader.check_version(www, 10, fullfiles=True)
    assert set(bundles) == {"os-core", "app", "extras"}


def test_extras_bundle_round_trips_exactly(odd, tmp_path):
    root, www, _, _ = odd
    dest = str(tmp_path / "out")
    os.makedirs(dest)
    installed = reader.install_bundle(www, 10, "extras", dest)
    expected = reader.tree(root)
    got = reader.tree(dest)
    srv = [p for p in expected if p == b"/srv" or p.startswith(b"/srv/")]
    assert len(srv) >= 20
    for path in srv:
        assert path in installed, path
        assert got[path] == expected[path], f"{path!r}: {got[path].describe()} != {expected[path].describe()}"


def test_special_modes_and_owners(odd):
    _, www, _, _ = odd
    entries = all_entries(www.bundles(10))

    def obj(path: bytes) -> oracle.Obj:
        e = entries[path]
        return www.fullfile(e.version, e.hash)

    assert obj(b"/srv/setuid").mode == 0o4755
    assert obj(b"/srv/setgid").mode == 0o2755 and obj(b"/srv/setgid").gid == 50
    assert obj(b"/srv/setgid-dir").mode == 0o2775
    assert obj(b"/srv/sticky").mode == 0o1777
    assert (obj(b"/srv/user-dir").uid, obj(b"/srv/user-dir").gid) == (1001, 1002)
    assert obj(b"/srv/no-perms").mode == 0
    assert obj(b"/srv/empty-file").data == b"" and entries[b"/srv/empty-file"].size == 0
    assert obj(b"/srv/empty-dir").kind == "D"


def test_symlinks(odd):
    _, www, _, _ = odd
    entries = all_entries(www.bundles(10))
    for path, target in (
        (b"/srv/dangling", b"does/not/exist"),
        (b"/srv/absolute", b"/usr/bin/ls"),
        (b"/srv/link-to-raw", b"raw-\xff\xfe.bin"),
        (b"/srv/target-of-100", b"x" * 100),
        (b"/srv/target-of-130", b"../" * 40 + b"usr/bin/ls"),
        (b"/srv/target-not-utf8", b"/" + b"\xe9t\xe9/" * 60),
    ):
        e = entries[path]
        assert e.kind == "L" and e.size == len(target)
        o = www.fullfile(e.version, e.hash)
        assert o.kind == "L" and o.link == target


def test_hardlinks_are_two_entries_with_one_fullfile(odd):
    _, www, _, _ = odd
    entries = all_entries(www.bundles(10))
    one, two = entries[b"/srv/hard1"], entries[b"/srv/hard2"]
    assert one.hash == two.hash and one.kind == two.kind == "F"
    assert os.path.isfile(www.path("10", "files", f"{one.hash}.tar"))
    members = www.pack(10, "extras", 0)
    assert list(members).count(f"staged/{one.hash}.tar") == 1


def test_names_survive_as_bytes(odd):
    _, www, _, _ = odd
    raw = www.read("10", "Manifest.extras")
    assert b"\t" + RAW_NAME + b"\n" in raw
    assert b"\t" + RAW_DIR + b"/inner.txt\n" in raw
    assert "\t/srv/ünïcödé-名前.txt\n".encode() in raw
    assert b"\t/srv/name with spaces.txt\n" in raw


def test_xattrs(odd):
    _, www, _, supported = odd
    if not supported:
        unavailable("the file system of the test directory refuses user.* xattrs")
    entries = all_entries(www.bundles(10))
    f = www.fullfile(10, entries[b"/srv/xattr-file"].hash)
    assert f.xattrs == {b"user.comment": b"hello", b"user.binary": b"\xff\x00\x01", b"user.empty": b""}
    d = www.fullfile(10, entries[b"/srv/xattr-dir"].hash)
    assert d.xattrs == {b"user.dir": b"1"}
    # The xattrs are part of the hash: the same file without them hashes differently.
    plain = oracle.Obj("F", f.mode, f.uid, f.gid, f.data)
    assert plain.hash() != entries[b"/srv/xattr-file"].hash


def test_fifo_is_refused_by_name(odd, keys, tmp_path):
    _, www, bundles, _ = odd
    target = copy_www(www.root, str(tmp_path / "www"))
    before = snapshot(target)
    fifo_root = exampletree.make_tree(str(tmp_path / "rootfs"), 2)
    os.makedirs(os.path.join(fifo_root, "srv"))
    os.mkfifo(os.path.join(fifo_root, "srv/control.fifo"))
    assert stat.S_ISFIFO(os.lstat(os.path.join(fifo_root, "srv/control.fifo")).st_mode)
    r = cli_process(*create_args(target, fifo_root, 20, keys.private, bundles))
    line = r.one_line_error()
    assert "/srv/control.fifo" in line
    assert_same_snapshot(before, snapshot(target))


def test_a_file_from_before_1970_is_carried_with_mtime_0(keys, tmp_path):
    """Times travel in ustar's unsigned field, clamped to it as to the build time above."""
    root = exampletree.make_tree(str(tmp_path / "rootfs"), 1)
    path = _file(root, "/srv/old", b"from the past\n")
    os.utime(path, (-86400, -86400))
    bundles = tmp_path / "bundles.toml"
    bundles.write_text(BUNDLES)
    www = str(tmp_path / "www")
    create(www, root, 10, keys.private, str(bundles))
    w = reader.Www(www, keys.raw)
    f = w.fullfile(10, all_entries(w.bundles(10))[b"/srv/old"].hash)
    assert (f.data, f.mtime) == (b"from the past\n", 0)
