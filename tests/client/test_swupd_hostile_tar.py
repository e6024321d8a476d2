"""Hostile tar headers in packs and fullfiles, through the real client and a real HTTP server:
each is refused from its header within seconds, the client's peak memory stays that of a
genuine update, and the update falls back to fullfiles (a pack) or fails with one line (a
fullfile)."""

from __future__ import annotations

import time
from pathlib import Path

import clientkit as ck
import pytest
import zstandard
from clientkit import Device
from support.httpserver import FaultServer

PACK = "20/pack-os-core-from-10.tar"
BLOCK = 512
# A GNU long name or a pax record this long is what made the client hold hundreds of MiB.
HUGE = 600 << 20
_GENUINE_RSS: list[int] = []


def _header(name: bytes, kind: bytes, size: int, magic: bytes = b"ustar\x0000", checksum: bool = True) -> bytes:
    """One tar header block, written out field by field (docs/format.md, Packs)."""
    b = bytearray(BLOCK)
    b[0 : len(name)] = name
    b[100:108] = b"0000644\0"
    b[108:116] = b[116:124] = b"0000000\0"
    b[124:136] = b"%011o\0" % size if size < 8**11 else b"%012o" % size
    b[136:148] = b"00000000000\0"
    b[148:156] = b" " * 8
    b[156:157] = kind
    b[257:265] = magic
    b[148:156] = b"%06o\0 " % (sum(b) if checksum else sum(b) + 1)
    return bytes(b)


def _zstd_stream(pieces) -> bytes:
    """Compress pieces (bytes, or (byte, count) runs made on the fly) without holding them."""
    cobj = zstandard.ZstdCompressor(level=3).compressobj()
    out = []
    for piece in pieces:
        if isinstance(piece, tuple):
            byte, count = piece
            chunk = byte * (1 << 20)
            while count:
                n = min(count, len(chunk))
                out.append(cobj.compress(chunk[:n]))
                count -= n
        else:
            out.append(cobj.compress(piece))
    out.append(cobj.flush())
    return b"".join(out)


def _hostile(kind: str, digest: str, genuine: bytes) -> tuple[bytes, str]:
    """A pack whose first member is genuine and whose second header is hostile; what the
    refusal must say."""
    staged = f"staged/{digest}.tar".encode()
    first = [_header(staged, b"0", len(genuine)), genuine, bytes(-len(genuine) % BLOCK)]
    if kind == "gnu-long-name":
        rest = [_header(b"././@LongLink", b"L", HUGE, b"ustar  \0"), (b"a", HUGE)]
        why = "not a plain ustar header"
    elif kind == "gnu-long-name-posix-magic":
        rest = [_header(b"././@LongLink", b"L", HUGE), (b"a", HUGE)]
        why = "GNU long name"
    elif kind == "pax-digits":
        # CVE-2024-6232: a record of digits made the parser of Python < 3.11.10 take minutes.
        rest = [_header(b"PaxHeader/x", b"x", 400_000), (b"1", 400_000), bytes(-400_000 % BLOCK)]
        why = "pax extended header"
    elif kind == "pax-huge":
        rest = [_header(b"PaxHeader/x", b"x", HUGE), (b"9", HUGE)]
        why = "pax extended header"
    elif kind == "huge-size":
        rest = [_header(staged, b"0", 8**12 - 1), (b"\0", 1 << 20)]
        why = "larger than allowed"
    elif kind == "bad-checksum":
        rest = [_header(staged, b"0", 5, checksum=False), b"x" * BLOCK]
        why = "checksum mismatch"
    elif kind == "unexpected-name":
        rest = [_header(staged + b"/../../../x", b"0", 5), b"x" * BLOCK]
        why = "unexpected tar member"
    else:
        assert kind == "unexpected-type"
        rest = [_header(staged, b"6", 0)]
        why = "FIFO"
    return _zstd_stream([*first, *rest, bytes(2 * BLOCK)]), why


def _genuine_rss(v10_all: Device, clone_device, stream: ck.Stream) -> int:
    """Peak memory (KiB) of the update from 10 to 20 from the genuine server (measured once)."""
    if not _GENUINE_RSS:
        with FaultServer(stream.www) as server:
            dev = clone_device(v10_all, server.url())
            r, rss = ck.wait_rusage([ck.SWUPD, "update", *dev.opts()], timeout=120)
            assert r.rc == 0, r.err
            _GENUINE_RSS.append(rss)
    return _GENUINE_RSS[0]


KINDS = [
    "gnu-long-name", "gnu-long-name-posix-magic", "pax-digits", "pax-huge", "huge-size", "bad-checksum",
    "unexpected-name", "unexpected-type",
]  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
def test_hostile_pack_header_is_refused_and_fullfiles_used(
    v10_all: Device, clone_device, private_www: Path, private_server: FaultServer, stream: ck.Stream, kind: str
) -> None:
    """The genuine member before the hostile header is kept, the rest of the pack is refused
    from that header (named in the warning), within seconds and with no more memory than a
    genuine update; what the pack should have brought comes as fullfiles."""
    new = ck.new_entries(stream.www, 10, 20, {"os-core"})
    files = sorted((e for e in new.values() if e.kind == "F"), key=lambda e: e.size)
    first = files[0]
    genuine = (private_www / f"20/files/{first.hash}.tar").read_bytes()
    pack, why = _hostile(kind, first.hash, genuine)
    assert len(pack) < 64 * 1024
    (private_www / PACK).write_bytes(pack)
    baseline = _genuine_rss(v10_all, clone_device, stream)
    dev = clone_device(v10_all, private_server.url())
    before = dev.tree()
    start = time.monotonic()
    r, rss = ck.wait_rusage([ck.SWUPD, "update", *dev.opts()], timeout=120)
    elapsed = time.monotonic() - start
    assert elapsed < 30, f"{elapsed:.1f} s"
    assert rss < baseline * 1.2 + 16 * 1024, f"peak memory {rss} KiB, a genuine update {baseline} KiB"
    assert r.rc == 0, (r.rc, r.err)
    assert "Traceback" not in r.err
    warnings = [line for line in r.err.splitlines() if PACK in line]
    assert len(warnings) == 1 and why in warnings[0], r.err
    ck.assert_tree(dev.root, stream.expected(20, ck.ALL_BUNDLES, old=before))
    got = {e.path for e in private_server.log if e.status == 200}
    assert f"/20/files/{first.hash}.tar" not in got, "the genuine member before the hostile one was used"
    assert f"/20/files/{files[-1].hash}.tar" in got, "fell back to fullfiles"


@pytest.mark.parametrize(("kind", "why"), [("pax-digits", "pax extended header"), ("gnu-long-name", "GNU long name")])
def test_hostile_fullfile_header_fails_with_one_line(
    v10_all: Device,
    clone_device,
    private_www: Path,
    private_server: FaultServer,
    stream: ck.Stream,
    kind: str,
    why: str,
) -> None:
    """A fullfile whose header is hostile (and whose records fit the fullfile's size cap):
    the update stops within seconds with one line naming it, memory stays that of a genuine
    update, and the tree is untouched."""
    for p in (private_www / "20").glob("pack-*.tar"):
        p.unlink()
    e = ck.entries(stream.www, 20, {"os-core"})["/usr/share/data/big.bin"]
    n = e.size - BLOCK
    kind_byte, filler = (b"x", b"1") if kind == "pax-digits" else (b"L", b"a")
    pieces = [_header(b"PaxHeader/x", kind_byte, n), (filler, n), bytes(-n % BLOCK)]
    # The same update from fullfiles alone, from the genuine server.
    r, baseline = ck.wait_rusage([ck.SWUPD, "update", *clone_device(v10_all, private_server.url()).opts()])
    assert r.rc == 0, r.err
    (private_www / f"20/files/{e.hash}.tar").write_bytes(_zstd_stream([*pieces, bytes(2 * BLOCK)]))
    dev = clone_device(v10_all, private_server.url())
    snap = dev.snapshot()
    start = time.monotonic()
    r, rss = ck.wait_rusage([ck.SWUPD, "update", *dev.opts()], timeout=120)
    elapsed = time.monotonic() - start
    assert elapsed < 30, f"{elapsed:.1f} s"
    assert rss < baseline * 1.2 + 16 * 1024, f"peak memory {rss} KiB, a genuine update {baseline} KiB"
    assert r.rc == 3, (r.rc, r.err)
    assert why in r.error_line() and e.path.decode() in r.error_line(), r.err
    assert ck.diff_snapshots(snap, dev.snapshot()) == ""
