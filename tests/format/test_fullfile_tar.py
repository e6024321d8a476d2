"""Fullfiles: a single-member tar named by the hash, compressed, carrying all metadata."""

from __future__ import annotations

import io
import stat
import tarfile

import pytest
from swupd.format import compression, filehash, fullfile
from swupd.format.errors import FormatError, SizeLimitError
from swupd.format.fullfile import Meta

CONTENT = b"content of a file\n" * 100


@pytest.mark.parametrize("codec", ["zstd", "xz", "none"])
def test_regular_file_round_trip(codec):
    meta = Meta(stat.S_IFREG | 0o4755, 1000, 50, 1700000000, len(CONTENT), "", {"user.x": b"\xff\x00y"})
    digest = filehash.hash_bytes(CONTENT, meta.mode, meta.uid, meta.gid, meta.xattrs)
    buf = io.BytesIO()
    fullfile.write(buf, digest, meta, io.BytesIO(CONTENT), codec, 3)
    assert compression.detect(buf.getvalue()[:8]) == codec
    got, data = fullfile.read(io.BytesIO(buf.getvalue()), digest, len(CONTENT))
    assert data == CONTENT
    assert (got.mode, got.uid, got.gid, got.mtime, got.xattrs) == (meta.mode, 1000, 50, 1700000000, meta.xattrs)


def test_directory_and_symlink_round_trip():
    for meta in (Meta(stat.S_IFDIR | 0o1777, 0, 0, 5), Meta(stat.S_IFLNK | 0o777, 3, 4, 5, 0, "../target ü")):
        buf = io.BytesIO()
        fullfile.write(buf, "a" * 64, meta, None, "zstd", 3)
        got, data = fullfile.read(io.BytesIO(buf.getvalue()), "a" * 64, 0)
        assert data == b""
        assert (got.mode, got.uid, got.gid, got.linkname) == (meta.mode, meta.uid, meta.gid, meta.linkname)


def _tar(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return compression.compress(buf.getvalue(), "zstd", 3)


def test_member_must_be_named_by_the_hash():
    with pytest.raises(FormatError):
        fullfile.read(io.BytesIO(_tar([("b" * 64, b"x")])), "a" * 64, 10)


def test_exactly_one_member():
    with pytest.raises(FormatError):
        fullfile.read(io.BytesIO(_tar([("a" * 64, b"x"), ("other", b"y")])), "a" * 64, 10)


def test_larger_than_signed_size():
    with pytest.raises(SizeLimitError):
        fullfile.read(io.BytesIO(_tar([("a" * 64, b"x" * 100)])), "a" * 64, 10)


def test_not_a_tar():
    with pytest.raises(FormatError):
        fullfile.read(io.BytesIO(compression.compress(b"garbage" * 200, "zstd", 3)), "a" * 64, 10000)
