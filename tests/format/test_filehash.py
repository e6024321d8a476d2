"""The swupd file hash: published test vectors, from values and from real files."""

from __future__ import annotations

import io
import os
import stat

import pytest
from support.environment import unavailable
from swupd.format import filehash

HELLO = "f716c6cb18be9041e1748d52be544645cfc98d2c99dd7e72bdd6f702aa1ee744"
DIR_0755 = "6c27df6efcd6fc401ff1bc67c970b83eef115f6473db4fb9d57e5de317eba96e"
DIR_1777 = "d93a5e9129361e28b9e244fe422234e3a1794b001a082aeb78e16fd881673a2b"
EMPTY_1000 = "b85f1dc2c2317a20f47a36d3257313b131124ffa6d4f19bb060d43014fd386b0"
# mixer-tools swupd/hash_test.go: "empty regular user file 0644 with different group"
EMPTY_1000_201 = "0a3978d8b6ea47b779a2dfb5d6a7f57c93d28e131870bcd187470da3678d1298"
HELLO_1000_201 = "53b40563c1162a14d9ce0233a6b346cd0a4cbce54c40affbdf0fc286fd3bfe7b"
TEST_DATA = "8286279c93f45c7ffa6b9ed440066de09716527346d9dd0239f50948e0e554f0"

FILE_VECTORS = [
    (b"hello\n", 0o644, 0, 0, HELLO),
    (b"", 0o644, 1000, 1000, EMPTY_1000),
    (b"", 0o644, 1000, 201, EMPTY_1000_201),
    (b"hello\n", 0o644, 1000, 201, HELLO_1000_201),
    (b"test-data", 0o644, 0, 0, TEST_DATA),
]
DIR_VECTORS = [(0o755, DIR_0755), (0o1777, DIR_1777)]


@pytest.mark.parametrize(("data", "perm", "uid", "gid", "expected"), FILE_VECTORS)
def test_file_vectors(data, perm, uid, gid, expected):
    assert filehash.hash_bytes(data, stat.S_IFREG | perm, uid, gid) == expected


@pytest.mark.parametrize(("perm", "expected"), DIR_VECTORS)
def test_directory_vectors(perm, expected):
    assert filehash.hash_directory(stat.S_IFDIR | perm) == expected


@pytest.mark.parametrize(("data", "perm", "uid", "gid", "expected"), FILE_VECTORS)
def test_file_vectors_from_real_files(tmp_path, data, perm, uid, gid, expected):
    path = tmp_path / "f"
    path.write_bytes(data)
    os.chown(path, uid, gid)
    os.chmod(path, perm)
    assert filehash.hash_path(str(path)) == expected
    with open(path, "rb") as f:
        assert filehash.hash_stream(f, len(data), stat.S_IFREG | perm, uid, gid) == expected


@pytest.mark.parametrize(("perm", "expected"), DIR_VECTORS)
def test_directory_vectors_from_real_dirs(tmp_path, perm, expected):
    path = tmp_path / "d"
    path.mkdir()
    (path / "content-does-not-matter").write_bytes(b"x")
    os.chown(path, 0, 0)
    os.chmod(path, perm)
    assert filehash.hash_path(str(path)) == expected


def test_symlink_hash_is_target_with_mode_zero(tmp_path):
    link = tmp_path / "l"
    os.symlink("some/target", link)
    expected = filehash.hash_bytes(b"some/target", 0)
    assert filehash.hash_symlink("some/target") == expected
    assert filehash.hash_path(str(link)) == expected
    assert filehash.hash_symlink("other") != expected


def test_metadata_is_part_of_the_hash():
    base = filehash.hash_bytes(b"x", 0o100644)
    assert filehash.hash_bytes(b"x", 0o100600) != base
    assert filehash.hash_bytes(b"x", 0o100644, uid=1) != base
    assert filehash.hash_bytes(b"x", 0o100644, gid=1) != base
    assert filehash.hash_bytes(b"x", 0o100644, xattrs={"user.a": b"1"}) != base
    assert filehash.hash_bytes(b"x", 0o104644) != base


def test_xattr_blob():
    """docs/format.md: per xattr, names sorted bytewise, u16 LE name length, u32 LE value
    length, name, value; nothing for no xattrs."""
    assert filehash.xattr_blob({}) == b""
    blob = filehash.xattr_blob({"user.b": b"2", "user.a": b"1\0"})
    assert blob == b"\x06\x00" + b"\x02\x00\x00\x00" + b"user.a1\0" + b"\x06\x00\x01\x00\x00\x00user.b2"


def _file_hash(xattrs: dict[str, bytes]) -> str:
    return filehash.hash_bytes(b"content", 0o100644, xattrs=xattrs)


def test_xattr_sets_of_the_same_bytes_hash_apart():
    """A NUL at the end of a value, or names and values shifted from one xattr to another,
    change the hash: each set of xattrs has its own."""
    assert _file_hash({"a": b"x"}) != _file_hash({"a": b"x\0"})
    # Under NUL-terminated names, then values, both of these are b"a\0b\0x\0y\0".
    assert _file_hash({"a": b"x", "b": b"y"}) != _file_hash({"a": b"b\0x\0y"})
    assert _file_hash({"a": b"x\0"}) != _file_hash({})
    assert _file_hash({"a": b""}) != _file_hash({"a": b"\0"}) != _file_hash({})


def _near_collisions() -> list[dict[str, bytes]]:
    """Every set of up to three xattrs drawn from short names and values made of the bytes
    that delimit fields (NUL) or could be confused with names, plus the sets that move bytes
    between a name, its value and the next name."""
    import itertools

    names = ["a", "b", "ab", "a\udc80"]
    values = [b"", b"\0", b"\0\0", b"x", b"x\0", b"\0x", b"b", b"b\0", b"a\0b", b"x\0y\0", b"\x06\x00"]
    # Values that hold the rest of a two-xattr set: {a: "", b: ""}, {a: "x", b: "x"}.
    values += [b"b\0\0\0", b"b\0x\0x"]
    sets: list[dict[str, bytes]] = [{}]
    for count in (1, 2, 3):
        for chosen in itertools.combinations(names, count):
            for vals in itertools.product(values, repeat=count):
                sets.append(dict(zip(chosen, vals, strict=True)))
    return sets


def test_different_xattr_sets_never_collide():
    """No two different sets of xattrs give the same blob (so the same hash), over a
    systematic family of near-collisions; and the blob reads back as the set it encodes."""
    from swupd.format import xattrs as records

    seen: dict[bytes, dict[str, bytes]] = {}
    hashes: set[str] = set()
    for xs in _near_collisions():
        blob = filehash.xattr_blob(xs)
        assert seen.setdefault(blob, xs) == xs, f"{xs} and {seen[blob]} share a blob"
        assert records.load(blob) == xs
        hashes.add(_file_hash(xs))
    assert len(hashes) == len(seen) > 9000


def test_xattrs_of_real_files(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"data")
    os.chmod(path, 0o644)
    try:
        os.setxattr(path, "user.k", b"v")
    except OSError:
        unavailable("the file system refuses user.* xattrs")
    assert filehash.read_xattrs(str(path)) == {"user.k": b"v"}
    assert filehash.hash_path(str(path)) == filehash.hash_bytes(b"data", 0o100644, xattrs={"user.k": b"v"})


def test_missing_path_is_the_zero_hash(tmp_path):
    assert filehash.hash_path(str(tmp_path / "absent")) == filehash.ZERO_HASH == "0" * 64


def test_special_files_cannot_be_hashed(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ValueError):
        filehash.hash_path(str(fifo))


def test_stream_notices_a_size_change(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"12345")
    with open(path, "rb") as f, pytest.raises(OSError):
        filehash.hash_stream(f, 4, 0o100644)


class _Dribble(io.RawIOBase):
    """A reader that returns at most `step` bytes per read, as a raw stream may."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.step = data, step

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.step if n < 0 else min(n, self.step)
        out, self.data = self.data[:n], self.data[n:]
        return out


@pytest.mark.parametrize("size", [0, 1, 4095, 1 << 20, (1 << 20) + 7])
def test_stream_hash_equals_bytes_hash_for_every_size_and_read_pattern(size):
    """Small files take a one-read path and large ones a chunked one: both give the bytes'
    hash, also from a reader that returns a little at a time, and both notice a file that is
    shorter or longer than the size it was hashed for."""
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    expected = filehash.hash_bytes(data, 0o100644, 1, 2)
    assert filehash.hash_stream(io.BytesIO(data), size, 0o100644, 1, 2) == expected
    assert filehash.hash_stream(_Dribble(data, 1000), size, 0o100644, 1, 2) == expected
    with pytest.raises(OSError):
        filehash.hash_stream(io.BytesIO(data + b"x"), size, 0o100644, 1, 2)
    if size:
        with pytest.raises(OSError):
            filehash.hash_stream(io.BytesIO(data[:-1]), size, 0o100644, 1, 2)
