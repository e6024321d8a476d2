"""Binary deltas: both codecs round trip; wrong, truncated or corrupt input fails as FormatError."""

from __future__ import annotations

import random
import struct
import subprocess
import sys

import pytest
from swupd.format import delta
from swupd.format.errors import FormatError, SizeLimitError
from swupd.format.fullfile import Meta
from swupd_server import encode

ENCODERS = {"zstd-dict": encode.delta_zstd_dict, "bsdiff": encode.delta_bsdiff}


@pytest.fixture(scope="module")
def pair():
    with open("/bin/ls", "rb") as f:
        old = f.read()
    new = bytearray(old)
    new[5000:5016] = b"patched-version2"
    new += b"appended tail\n"
    return old, bytes(new)


def meta(new: bytes, xattrs=None) -> Meta:
    if xattrs is None:
        xattrs = {"user.a": b"1", "user.bin": b"\xff\x00"}
    return Meta(0o104750, 12, 34, 0, len(new), "", xattrs)


@pytest.mark.parametrize("codec", sorted(ENCODERS))
def test_round_trip(pair, codec):
    old, new = pair
    blob = ENCODERS[codec](old, new, meta(new))
    assert blob.startswith(b"SWDELTA1") and blob[8] == delta.CODECS[codec]
    assert len(blob) < len(new) // 50
    got_meta, got = delta.apply(old, blob)
    assert got == new
    assert (got_meta.mode, got_meta.uid, got_meta.gid, got_meta.size) == (0o104750, 12, 34, len(new))
    assert got_meta.xattrs == {"user.a": b"1", "user.bin": b"\xff\x00"}
    assert delta.codec_name(blob) == codec


@pytest.mark.parametrize(
    ("codec", "old", "new"),
    [
        ("bsdiff", b"", b"brand new content\n" * 20),
        ("bsdiff", b"old content\n" * 20, b""),
        ("zstd-dict", b"old content\n" * 20, b""),
        ("zstd-dict", b"12345678", b"brand new content\n" * 20),
    ],
)
def test_round_trip_edge_sizes(codec, old, new):
    _, got = delta.apply(old, ENCODERS[codec](old, new, meta(new, {})))
    assert got == new


@pytest.mark.parametrize("codec", sorted(ENCODERS))
def test_wrong_old_file(pair, codec):
    old, new = pair
    blob = ENCODERS[codec](old, new, meta(new))
    with pytest.raises(FormatError):
        delta.apply(old[:-1], blob)
    # Same size, other bytes: either refused or a different result, which the caller's hash
    # check then rejects; never the new file.
    other = bytes(reversed(old))
    try:
        _, got = delta.apply(other, blob)
    except FormatError:
        return
    assert got != new


@pytest.mark.parametrize("codec", sorted(ENCODERS))
def test_truncated_payload(pair, codec):
    old, new = pair
    blob = ENCODERS[codec](old, new, meta(new, {}))
    head = struct.calcsize("<8sBQQIIII")
    for cut in [0, 7, 8, head - 1, head, head + 1, head + 5, len(blob) // 2, len(blob) - 1]:
        with pytest.raises(FormatError):
            delta.apply(old, blob[:cut])


@pytest.mark.parametrize("codec", sorted(ENCODERS))
def test_truncated_inside_xattr_records(pair, codec):
    old, new = pair
    blob = ENCODERS[codec](old, new, meta(new))
    head = struct.calcsize("<8sBQQIIII")
    for cut in range(head, head + 30):
        with pytest.raises(FormatError):
            delta.apply(old, blob[:cut])


@pytest.mark.parametrize(
    ("edit", "error"),
    [
        (lambda b: b"SWDELTA2" + b[8:], FormatError),
        (lambda b: b[:8] + b"\x09" + b[9:], FormatError),
        # Header: magic 0-7, codec 8, old size 9-16, new size 17-24, mode 25-28, uid, gid, xattr length 37-40.
        (lambda b: b[:17] + struct.pack("<Q", 2**40) + b[25:], SizeLimitError),
        (lambda b: b[:25] + struct.pack("<I", 0o40755) + b[29:], FormatError),
        (lambda b: b[:37] + struct.pack("<I", 10**6) + b[41:], SizeLimitError),
        (lambda b: b[:37] + struct.pack("<I", 1000) + b[41:], FormatError),
        (lambda b: b[:9] + struct.pack("<Q", 5) + b[17:], FormatError),
    ],
)
def test_corrupt_header(pair, edit, error):
    old, new = pair
    blob = encode.delta_bsdiff(old, new, meta(new, {}))
    with pytest.raises(error):
        delta.apply(old, edit(blob))


@pytest.mark.parametrize("codec", sorted(ENCODERS))
def test_random_corruption_fails_cleanly(pair, codec):
    """Flipped bits give FormatError/SizeLimitError or some bytes (the hash check catches those),
    never another exception. Flips in the new-size field are left to
    test_delta_claiming_a_huge_target_is_refused, flips in the xattr length (which make the
    payload's first bytes read as xattr records) to test_truncated_inside_xattr_records."""
    old, new = pair
    blob = ENCODERS[codec](old, new, meta(new, {}))
    rng = random.Random(1234)
    size_fields = {*range(17, 25), *range(37, 41)}
    for _ in range(300):
        b = bytearray(blob)
        pos = rng.choice([p for p in range(len(b)) if p not in size_fields])
        b[pos] ^= 1 << rng.randrange(8)
        try:
            delta.apply(old, bytes(b))
        except (FormatError, SizeLimitError):
            pass


HUGE_TARGET = """
import resource, struct, sys
resource.setrlimit(resource.RLIMIT_AS, (2 * 1024**3, 2 * 1024**3))
from swupd.format import delta
from swupd.format.errors import FormatError, SizeLimitError
from swupd.format.fullfile import Meta
from swupd_server import encode
old = b"old content " * 1000
new = b"new content " * 1000
blob = bytearray(encode.delta_bsdiff(old, new, Meta(0o100644, size=len(new))))
struct.pack_into("<Q", blob, 17, 32 * 1024**3)  # claims a 32 GiB result, below max_file_bytes
try:
    delta.apply(old, bytes(blob))
except (FormatError, SizeLimitError) as e:
    print("refused:", type(e).__name__)
    sys.exit(0)
except BaseException as e:
    print("raised", type(e).__name__)
    sys.exit(1)
print("accepted")
sys.exit(1)
"""


def test_delta_claiming_a_huge_target_is_refused():
    p = subprocess.run([sys.executable, "-c", HUGE_TARGET], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr


def _bsdiff_blob(old: bytes, new_len: int, control: bytes, diff: bytes, extra: bytes) -> bytes:
    """A codec-2 delta assembled by hand from the documented layout, to feed the applier
    blocks that bsdiff would never make."""
    import zstandard

    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=20)
    frames = [zstandard.ZstdCompressor(compression_params=params).compress(b) for b in (control, diff, extra)]
    head = struct.pack("<8sBQQIIII", b"SWDELTA1", 2, len(old), new_len, 0o100644, 0, 0, 0)
    return head + struct.pack("<QQQ", *map(len, frames)) + b"".join(frames)


def _triple(x: int, y: int, z: int) -> bytes:
    return b"".join(struct.pack("<Q", v if v >= 0 else -v | 1 << 63) for v in (x, y, z))


def _moved_and_edited(size: int, seed: int) -> tuple[bytes, bytes]:
    rng = random.Random(seed)
    old = rng.randbytes(size)
    third = size // 3
    # Blocks swapped (backward seeks), bytes edited, new bytes inserted: every kind of triple.
    new = bytearray(old[2 * third :] + old[third : 2 * third] + rng.randbytes(5000) + old[:third])
    for _ in range(200):
        p = rng.randrange(len(new))
        new[p] ^= 0x5A
    return old, bytes(new)


def test_bsdiff_applies_as_a_stream_across_batches():
    old, new = _moved_and_edited(3 << 20, 7)
    blob = encode.delta_bsdiff(old, new, meta(new, {}))
    got_meta, stream = delta.open_result(old, blob)
    pieces = []
    while chunk := stream.read(4099):
        pieces.append(chunk)
    assert b"".join(pieces) == new and got_meta.size == len(new)


def test_bsdiff_result_is_never_held_whole():
    import tracemalloc

    old, new = _moved_and_edited(7 << 20, 8)
    blob = encode.delta_bsdiff(old, new, meta(new, {}))
    tracemalloc.start()
    try:
        _, stream = delta.open_result(old, blob)
        total = 0
        while chunk := stream.read(1 << 16):
            total += len(chunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert total == len(new)
    assert peak < 3 << 20, f"{peak} bytes traced while streaming a 7 MiB result"


def test_bsdiff_single_triple_longer_than_a_batch():
    old = random.Random(9).randbytes(3 << 20)
    new = bytes((b + 1) & 0xFF for b in old[:1000]) + old[1000:]
    diff = b"\x01" * 1000 + bytes(len(new) - 1000)
    blob = _bsdiff_blob(old, len(new), _triple(len(new), 0, 0), diff, b"")
    assert delta.apply(old, blob)[1] == new


@pytest.mark.parametrize(
    ("control", "diff", "extra", "message"),
    [
        (_triple(0, 0, 0) * 50_000, b"", b"", "control block"),
        (_triple(100, 0, 0), b"\0" * 100, b"", "control block"),
        (_triple(10, 0, 0), b"\0" * 5, b"", "shorter"),
        (_triple(10, 0, 0), b"\0" * 11, b"", "longer"),
        (_triple(10, 0, 0), b"\0" * 10, b"x", "longer"),
        (_triple(-1, 11, 0), b"", b"\0" * 11, "out of range"),
        (_triple(0, 10, (1 << 62) + 1), b"", b"\0" * 10, "out of range"),
        (_triple(5, 0, 0), b"\0" * 5, b"", "ends early"),
        # Control left over once the target is made.
        (_triple(10, 0, 0) + _triple(-1, 0, 0), b"\0" * 10, b"", "out of range"),
        (_triple(10, 0, 0) + _triple(4, 0, 0), b"\0" * 10, b"", "longer"),
    ],
)
def test_hostile_bsdiff_blocks_are_refused(control, diff, extra, message):
    old = b"0123456789" * 10
    with pytest.raises(FormatError, match=message):
        delta.apply(old, _bsdiff_blob(old, 10, control, diff, extra))


def test_zstd_dict_pair_beyond_the_device_memory_bound_is_refused():
    # 6 MiB + 6 MiB: a zstd-dict delta would hold 12 MiB at once on the device.
    old = bytes(range(256)) * (6 << 12)
    new = old[:-4096] + b"changed!" * 512
    blob = encode.delta_zstd_dict(old, new, meta(new, {}), level=1)
    with pytest.raises(SizeLimitError, match="zstd-dict"):
        delta.header(blob)
    with pytest.raises(SizeLimitError):
        delta.open_result(old, blob)
    # bsdiff holds only the old file, so the same pair is fine with it.
    assert delta.usable(delta.BSDIFF, len(old), len(new))
    assert not delta.usable(delta.ZSTD_DICT, len(old), len(new))
    assert delta.usable(delta.ZSTD_DICT, 5 << 20, 5 << 20)
