"""Fullfiles: a plain-ustar tar named by the hash, compressed, carrying all metadata; and the
project's own ustar reader, which takes only the headers it expects."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile
import time

import pytest
from swupd.format import compression, filehash, fullfile, ustar, xattrs
from swupd.format.errors import FormatError, SizeLimitError
from swupd.format.fullfile import Meta
from swupd_server import encode

CONTENT = b"content of a file\n" * 100
H = "a" * 64


@pytest.mark.parametrize("codec", ["zstd", "xz", "none"])
def test_regular_file_round_trip(codec):
    meta = Meta(stat.S_IFREG | 0o4755, 1000, 50, 1700000000, len(CONTENT), "", {"user.x": b"\xff\x00y"})
    digest = filehash.hash_bytes(CONTENT, meta.mode, meta.uid, meta.gid, meta.xattrs)
    buf = io.BytesIO()
    encode.fullfile(buf, digest, meta, io.BytesIO(CONTENT), codec, 3)
    assert compression.detect(buf.getvalue()[:8]) == codec
    got, data = fullfile.read(io.BytesIO(buf.getvalue()), digest, len(CONTENT))
    assert data == CONTENT
    assert (got.mode, got.uid, got.gid, got.mtime, got.xattrs) == (meta.mode, 1000, 50, 1700000000, meta.xattrs)


@pytest.mark.parametrize("target", ["../target ü", "t" * 100, "/very/long/" + "x" * 300])
def test_directory_and_symlink_round_trip(target):
    link = Meta(stat.S_IFLNK | 0o777, 3, 4, 5, 0, target)
    directory = Meta(stat.S_IFDIR | 0o1777, 0, 0, 5, 0, "", {"user.d": b"1"})
    for meta, size in ((directory, 0), (link, len(target.encode()))):
        buf = io.BytesIO()
        encode.fullfile(buf, H, meta, None, "zstd", 3)
        got, data = fullfile.read(io.BytesIO(buf.getvalue()), H, size)
        assert data == b""
        assert (got.mode, got.uid, got.gid, got.linkname, got.xattrs) == (
            meta.mode, meta.uid, meta.gid, meta.linkname, meta.xattrs
        )  # fmt: skip


def _raw(meta: Meta, content: bytes = b"") -> bytes:
    buf = io.BytesIO()
    encode.fullfile(buf, H, meta, io.BytesIO(content), "none", 0)
    return buf.getvalue()


def test_layout_is_plain_ustar_members():
    """docs/format.md, Fullfiles: `<hash>.xattrs` (0600, the xattr records) before `<hash>`
    when there are xattrs; `<hash>.target` before a symlink whose target passes 100 bytes;
    every header plain ustar."""
    xs = {"user.b": b"2", "user.a": b"1"}
    raw = _raw(Meta(stat.S_IFREG | 0o640, 7, 8, 9, 3, "", xs), b"abc")
    with tarfile.open(fileobj=io.BytesIO(raw)) as t:
        members = t.getmembers()
        assert [(m.name, m.type, m.mode, m.uid, m.gid) for m in members] == [
            (H + ".xattrs", tarfile.REGTYPE, 0o600, 0, 0),
            (H, tarfile.REGTYPE, 0o640, 7, 8),
        ]
        assert t.extractfile(members[0]).read() == xattrs.dump(xs) == filehash.xattr_blob(xs)
        assert all(not m.pax_headers for m in members)
    long = "/" + "d/" * 80
    with tarfile.open(fileobj=io.BytesIO(_raw(Meta(stat.S_IFLNK | 0o777, 0, 0, 0, 0, long)))) as t:
        side, link = t.getmembers()
        assert (side.name, t.extractfile(side).read()) == (H + ".target", long.encode())
        assert (link.name, link.type, link.linkname) == (H, tarfile.SYMTYPE, "")
    assert raw.count(b"ustar\x0000") == 2 and raw.endswith(ustar.END)


def test_tar_extracts_a_fullfile(tmp_path):
    """A person with GNU tar can still unpack a fullfile."""
    (tmp_path / "ff.tar").write_bytes(
        _raw(Meta(stat.S_IFREG | 0o640, os.getuid(), os.getgid(), 9, 3, "", {"user.a": b"1"}), b"abc")
    )
    subprocess.run(["tar", "-xf", "ff.tar"], cwd=tmp_path, check=True)
    assert (tmp_path / H).read_bytes() == b"abc"
    assert (tmp_path / f"{H}.xattrs").read_bytes() == xattrs.dump({"user.a": b"1"})


def _tar(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return encode.compress(buf.getvalue(), "zstd", 3)


def test_member_must_be_named_by_the_hash():
    with pytest.raises(FormatError):
        fullfile.read(io.BytesIO(_tar([("b" * 64, b"x")])), H, 10)


def test_exactly_one_member():
    with pytest.raises(FormatError):
        fullfile.read(io.BytesIO(_tar([(H, b"x"), ("other", b"y")])), H, 10)


def test_larger_than_signed_size():
    with pytest.raises(SizeLimitError):
        fullfile.read(io.BytesIO(_tar([(H, b"x" * 100)])), H, 10)


def test_not_a_tar():
    with pytest.raises(FormatError):
        fullfile.read(io.BytesIO(encode.compress(b"garbage" * 200, "zstd", 3)), H, 10000)


def _read(raw: bytes, size: int = 3) -> tuple[Meta, bytes]:
    return fullfile.read(io.BytesIO(raw), H, size)


def test_fullfile_members_in_their_order_only():
    """The side member comes first, once, and only where the layout has it."""
    good = _raw(Meta(stat.S_IFREG | 0o644, 0, 0, 0, 3, "", {"user.a": b"1"}), b"abc")
    side = good[: 2 * ustar.BLOCK]
    obj = good[2 * ustar.BLOCK : 4 * ustar.BLOCK]
    assert _read(good)[1] == b"abc"
    for bad in (obj + side + ustar.END, side + side + obj + ustar.END, side + ustar.END, obj + obj + ustar.END):
        with pytest.raises(FormatError):
            _read(bad)
    # A symlink with xattrs, a short target in a side member, a side member for a directory.
    link = _raw(Meta(stat.S_IFLNK | 0o777, 0, 0, 0, 0, "t"))
    with pytest.raises(FormatError):
        _read(side + link, 1)
    target = ustar.header(H + ".target", ustar.REGULAR, 0o600, size=1) + b"t" + ustar.padding(1)
    with pytest.raises(FormatError):
        _read(target + ustar.header(H, ustar.SYMLINK, 0o777) + ustar.END, 1)


def test_xattr_records_must_be_canonical():
    """Unsorted, repeated or truncated records are refused, so one set has one encoding."""
    one = xattrs.dump({"user.a": b"1"})
    two = xattrs.dump({"user.b": b"2"})
    for records in (two + one, one + one, one[:-1], one + b"\x00"):
        side = ustar.header(H + ".xattrs", ustar.REGULAR, 0o600, size=len(records))
        raw = side + records + ustar.padding(len(records)) + _raw(Meta(stat.S_IFREG | 0o644, 0, 0, 0, 3), b"abc")
        with pytest.raises(FormatError):
            _read(raw)


def test_side_members_are_capped_before_they_are_read():
    """An xattrs member above 64 KiB, or a target member above 4096 bytes, is refused from its
    header: the stream holds nothing after it to read."""
    for name, size, max_size in ((H + ".xattrs", 65 * 1024, 3), (H + ".target", 5000, 8000)):
        src = io.BytesIO(ustar.header(name, ustar.REGULAR, 0o600, size=size) + b"\1" * size)
        with pytest.raises((FormatError, SizeLimitError)):
            fullfile.read_object(ustar.Reader(src), H, fullfile._ALL_TYPES, max_size)
        assert src.tell() == ustar.BLOCK


# --- the ustar reader ---------------------------------------------------------------------


def _pax(records: dict[str, str], name: str = H) -> bytes:
    """A tar whose member has a pax extended header (written by Python's tarfile)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        info = tarfile.TarInfo(name)
        info.pax_headers = records
        info.size = 3
        t.addfile(info, io.BytesIO(b"abc"))
    return buf.getvalue()


def _gnu_long_name(size: int) -> bytes:
    """A GNU long-name header announcing a name of `size` bytes (and only a little of it)."""
    block = bytearray(ustar.header("././@LongLink", ustar.REGULAR, 0o644, size=0))
    block[156:157] = b"L"
    block[124:136] = b"%011o\0" % size
    block[257:265] = b"ustar  \0"
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block) + b"a" * 8192


def _with(block: bytes, offset: int, value: bytes) -> bytes:
    """`block` with a field changed and its checksum made right again."""
    b = bytearray(block[: ustar.BLOCK])
    b[offset : offset + len(value)] = value
    b[148:156] = b" " * 8
    b[148:156] = b"%06o\0 " % sum(b)
    return bytes(b) + block[ustar.BLOCK :]


GOOD = ustar.header(H, ustar.REGULAR, 0o644, 0, 0, 3, 0)


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (_gnu_long_name(1 << 40), "plain ustar"),
        (_with(_gnu_long_name(1 << 30), 257, b"ustar\x0000"), "GNU long name"),
        (_pax({"comment": "9" * 100_000}), "pax extended header"),
        (GOOD[:148] + b"0000000\0" + GOOD[156:], "checksum"),
        (_with(GOOD, 124, b"77777777777\0"), "larger than allowed"),
        (_with(GOOD, 124, b"+0000000003\0"), "malformed size"),
        (_with(GOOD, 124, b"0x3\0"), "malformed size"),
        (_with(GOOD, 124, b"\x80" + bytes(11)), "malformed size"),
        (_with(GOOD, 100, b"0o644\0\0\0"), "malformed mode"),
        (_with(GOOD, 0, b"../" + H.encode()), "unexpected tar member"),
        (_with(GOOD, 345, b"x"), "unexpected tar member"),
        (_with(GOOD, 156, b"1"), "hard link"),
        (_with(GOOD, 156, b"3"), "character device"),
        (_with(GOOD, 156, b"7"), "type '7'"),
        (_with(GOOD, 157, b"/etc/passwd"), "link name"),
        (GOOD[:300], "cut short"),
    ],
    ids=[
        "gnu-long-name", "gnu-long-name-ustar-magic", "pax-digits", "checksum", "huge-size", "signed-size",
        "hex-size", "base256-size", "0o-mode", "traversal", "prefix", "hardlink", "device", "contiguous",
        "linkname", "truncated",
    ],
)  # fmt: skip
def test_ustar_reader_refuses_what_it_does_not_expect(raw: bytes, error: str):
    """Each hostile header is refused from its 512 bytes, in milliseconds, whatever it
    announces, from a stream and from bytes alike."""
    for src in (raw, io.BufferedReader(io.BytesIO(raw))):  # type: ignore[arg-type]
        start = time.monotonic()
        with pytest.raises((FormatError, SizeLimitError), match=error):
            reader = ustar.Reader(src)
            while reader.next({H}, {ustar.REGULAR}, 1 << 20) is not None:
                reader.read()
        assert time.monotonic() - start < 0.5


def test_ustar_reader_walks_members_and_ends_at_two_zero_blocks():
    names = ["delta/", "b" * 64, "delta/" + "c" * 64 + "/" + "d" * 64]
    raw = b"".join(
        ustar.header(n, ustar.DIRECTORY if n.endswith("/") else ustar.REGULAR, 0o644, size=0 if n.endswith("/") else 5)
        + (b"" if n.endswith("/") else b"12345" + ustar.padding(5))
        for n in names
    )
    for tail, ok in ((ustar.END + bytes(10240), True), (ustar.END + b"\1", False), (bytes(512) + GOOD, False)):
        for src in (raw + tail, io.BufferedReader(io.BytesIO(raw + tail))):  # type: ignore[arg-type]
            reader = ustar.Reader(src)
            got = []
            try:
                while (m := reader.next(set(names), {ustar.REGULAR, ustar.DIRECTORY}, 5)) is not None:
                    got.append((m.name, reader.read() if m.type == ustar.REGULAR else None))
                reader.trailer(10240)
            except FormatError:
                assert not ok
                continue
            assert ok and got == [(names[0], None), (names[1], b"12345"), (names[2], b"12345")]
    # Python's tarfile reads what the writer makes, names split over prefix and name included.
    with tarfile.open(fileobj=io.BytesIO(raw + ustar.END)) as t:
        assert t.getnames() == [n.rstrip("/") for n in names]


def test_ustar_numbers_that_fill_their_field():
    """Sizes up to 64 GiB - 1 and ids up to 2**24 - 1 use every digit of their field; larger
    ones cannot be written."""
    h = ustar.header(H, ustar.REGULAR, 0o644, 2**24 - 1, 2**21, 2**36 - 1, 0)
    assert ustar.parse(h, {H}, {ustar.REGULAR}, 2**36)[3:6] == (2**24 - 1, 2**21, 2**36 - 1)
    for kw in ({"size": 2**36}, {"uid": 2**24}):
        with pytest.raises(FormatError):
            ustar.header(H, ustar.REGULAR, 0o644, **kw)
