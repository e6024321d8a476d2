"""The independent reader itself: its hash matches the published vectors, and its checks
catch tampering (so the other tests can fail)."""

from __future__ import annotations

import io
import os
import stat
import tarfile

import pytest
import reader
import zstandard
from buildutil import copy_www
from support import oracle

VECTORS = [
    ("F", 0o644, 0, 0, b"hello\n", "f716c6cb18be9041e1748d52be544645cfc98d2c99dd7e72bdd6f702aa1ee744"),
    ("D", 0o755, 0, 0, b"", "6c27df6efcd6fc401ff1bc67c970b83eef115f6473db4fb9d57e5de317eba96e"),
    ("D", 0o1777, 0, 0, b"", "d93a5e9129361e28b9e244fe422234e3a1794b001a082aeb78e16fd881673a2b"),
    ("F", 0o644, 1000, 1000, b"", "b85f1dc2c2317a20f47a36d3257313b131124ffa6d4f19bb060d43014fd386b0"),
    ("F", 0o644, 1000, 201, b"hello\n", "53b40563c1162a14d9ce0233a6b346cd0a4cbce54c40affbdf0fc286fd3bfe7b"),
    ("F", 0o644, 0, 0, b"test-data", "8286279c93f45c7ffa6b9ed440066de09716527346d9dd0239f50948e0e554f0"),
]


@pytest.mark.parametrize(("kind", "perm", "uid", "gid", "data", "expected"), VECTORS)
def test_reader_hash_vectors(kind, perm, uid, gid, data, expected):
    mode = (stat.S_IFREG if kind == "F" else stat.S_IFDIR) | perm
    assert oracle.swupd_hash(kind, mode, uid, gid, data) == expected


def test_reader_rejects_a_tampered_fullfile(stream, tmp_path):
    www = copy_www(stream.www, str(tmp_path / "www"))
    w = reader.Www(www, stream.keys.raw)
    e = w.bundles(20)["app"].by_path()[b"/opt/app/config.txt"]
    path = w.path(str(e.version), "files", f"{e.hash}.tar")
    obj = w.fullfile(e.version, e.hash)
    # A fullfile for other content, stored under this hash.
    other = oracle.Obj("F", obj.mode, obj.uid, obj.gid, b"color=red!!\n")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(e.hash)
        info.size, info.mode = len(other.data), other.mode
        tar.addfile(info, io.BytesIO(other.data))
    with open(path, "wb") as f:
        f.write(zstandard.ZstdCompressor().compress(buf.getvalue()))
    with pytest.raises(oracle.FormatViolation, match="re-hashes"):
        reader.check_version(w, 20)


def test_reader_rejects_a_tampered_manifest(stream, tmp_path):
    www = copy_www(stream.www, str(tmp_path / "www"))
    path = os.path.join(www, "20", "Manifest.app")
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data.replace(b"timestamp:", b"timestamp:\t0\nx:", 1))
    with pytest.raises(oracle.FormatViolation):
        reader.Www(www, stream.keys.raw).bundles(20)


def _pack(tmp_path, frames: list[bytes], window_log: int = 13) -> str:
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=window_log)
    cctx = zstandard.ZstdCompressor(compression_params=params)
    path = tmp_path / "pack.tar"
    out = b""
    for f in frames:  # written without their sizes, so that the window is the one asked for
        cobj = cctx.compressobj()
        out += cobj.compress(f) + cobj.flush()
    path.write_bytes(out)
    return str(path)


def test_reader_rejects_pack_headers_that_are_not_plain_ustar_and_wide_windows(tmp_path):
    name = "staged/" + "a" * 64 + ".tar"
    for fmt, ok in ((tarfile.USTAR_FORMAT, True), (tarfile.GNU_FORMAT, False)):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
            info = tarfile.TarInfo(name)
            info.size = 3
            t.addfile(info, io.BytesIO(b"abc"))
        if ok:
            assert oracle.read_pack(_pack(tmp_path, [buf.getvalue()])) == {name: b"abc"}
        else:
            with pytest.raises(oracle.FormatViolation, match="plain ustar"):
                oracle.read_pack(_pack(tmp_path, [buf.getvalue()]))
    with pytest.raises(oracle.FormatViolation, match="window"):
        oracle.read_pack(_pack(tmp_path, [os.urandom(1 << 20)], window_log=24))


def test_reader_rejects_delta_xattr_records_out_of_order():
    records = [b"\x01\x00\x01\x00\x00\x00b1", b"\x01\x00\x01\x00\x00\x00a2"]
    for blob, ok in ((records[1] + records[0], True), (records[0] + records[1], False)):
        delta = oracle.DELTA_HEADER.pack(b"SWDELTA1", 1, 0, 0, stat.S_IFREG | 0o644, 0, 0, len(blob)) + blob
        if ok:
            assert oracle.parse_delta(delta).xattrs == {b"a": b"2", b"b": b"1"}
        else:
            with pytest.raises(oracle.FormatViolation, match="unsorted"):
                oracle.parse_delta(delta)
