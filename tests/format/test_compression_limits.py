"""Compressed streams: codecs recognised by magic, output bounded, corruption a FormatError."""

from __future__ import annotations

import io
import os

import pytest
import zstandard
from swupd.format import compression
from swupd.format.errors import FormatError, SizeLimitError
from swupd_server import encode

DATA = os.urandom(1000) + b"compressible " * 5000


@pytest.mark.parametrize("codec", ["zstd", "xz", "none"])
def test_round_trip_and_detection(codec):
    blob = encode.compress(DATA, codec, 3)
    assert compression.detect(blob[:8]) == codec
    assert compression.decompress(blob, len(DATA)) == DATA


@pytest.mark.parametrize("codec", ["zstd", "xz", "none"])
def test_output_past_the_limit_is_refused(codec):
    blob = encode.compress(DATA, codec, 3)
    with pytest.raises(SizeLimitError):
        compression.decompress(blob, len(DATA) - 1)
    with pytest.raises(SizeLimitError):
        compression.open_decompressed(io.BytesIO(blob), 100).read()


def test_a_bomb_stops_at_the_limit():
    bomb = encode.compress(b"\0" * (64 * 1024 * 1024), "zstd", 3)
    assert len(bomb) < 64 * 1024
    with pytest.raises(SizeLimitError):
        compression.decompress(bomb, 1024 * 1024)


def test_frames_needing_a_large_window_are_refused():
    params = zstandard.ZstdCompressionParameters(window_log=26)
    buf = io.BytesIO()
    with zstandard.ZstdCompressor(compression_params=params).stream_writer(buf, closefd=False) as w:
        w.write(b"abc" * 1000)
    with pytest.raises(FormatError):
        compression.decompress(buf.getvalue(), 10**9)


def test_truncated_xz_stream():
    blob = encode.compress(DATA, "xz", 3)
    for cut in (len(blob) // 2, len(blob) - 1):
        with pytest.raises(FormatError):
            compression.decompress(blob[:cut], len(DATA))


def test_truncated_zstd_stream():
    blob = encode.compress(DATA, "zstd", 3)
    for cut in (len(blob) // 2, len(blob) - 1):
        with pytest.raises(FormatError):
            compression.decompress(blob[:cut], len(DATA))


@pytest.mark.parametrize("codec", ["zstd", "xz"])
def test_corrupt_streams(codec):
    corrupt = bytearray(encode.compress(DATA, codec, 3))
    for i in range(12, len(corrupt), 7):
        corrupt[i] ^= 0x55
    with pytest.raises(FormatError):
        compression.decompress(bytes(corrupt), len(DATA))


def test_unknown_codec():
    with pytest.raises(ValueError):
        encode.compress(b"x", "lz4")


@pytest.mark.parametrize("tail", [b"", b"end", os.urandom(3000)])
def test_concatenated_frames_read_as_one_stream(tail):
    """Packs are written frame by frame; every frame comes out, also a tiny last one that
    arrives in the same read as the end of the frame before."""
    cctx = zstandard.ZstdCompressor()
    parts = [os.urandom(70_000), b"x" * 200_000, tail]
    blob = b"".join(cctx.compress(p) for p in parts)
    assert compression.decompress(blob, 1 << 20) == b"".join(parts)


def test_stream_ending_inside_a_later_frame_is_truncated():
    cctx = zstandard.ZstdCompressor()
    blob = cctx.compress(b"first frame " * 100) + cctx.compress(os.urandom(5000))
    with pytest.raises(FormatError, match="truncated"):
        compression.decompress(blob[:-100], 1 << 20)


def _rle_frame(blocks: int) -> bytes:
    """A zstd frame (8 MiB window) of RLE blocks: four bytes of input make 128 KiB of output."""
    out = bytearray(compression.ZSTD_MAGIC + bytes([0, (23 - 10) << 3]))
    for i in range(blocks):
        out += (int(i == blocks - 1) | 1 << 1 | (128 * 1024) << 3).to_bytes(3, "little") + b"\0"
    return bytes(out)


@pytest.mark.parametrize(
    "blob",
    [_rle_frame(2000), encode.compress(b"\0" * (64 << 20), "zstd", 19)],
    ids=["rle-blocks", "genuine-zeros"],
)
def test_a_step_of_decompression_holds_one_block(blob):
    """However much a few input bytes expand to, reading holds no more than the reader's buffer
    and a zstd block (128 KiB) of output at a time."""
    import tracemalloc

    tracemalloc.start()
    try:
        reader = compression.open_decompressed(io.BytesIO(blob), 1 << 40)
        total = 0
        while chunk := reader.read(512):
            total += len(chunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert total >= 64 << 20
    assert peak < 1024 * 1024 + 512 * 1024, peak


def test_skippable_frames_are_passed_over():
    cctx = zstandard.ZstdCompressor()
    skip = b"\x5a\x2a\x4d\x18" + (10).to_bytes(4, "little") + b"0123456789"
    blob = cctx.compress(b"first") + skip + cctx.compress(b"second") + skip
    assert compression.decompress(blob, 1 << 20) == b"firstsecond"
    with pytest.raises(FormatError, match="truncated"):
        compression.decompress(cctx.compress(b"first") + skip[:-1], 1 << 20)


def test_xz_reading_holds_little_of_the_input():
    """A stretch that expands a lot does not make the reader take in more input than the
    decoder uses: the compressed bytes after it are not gathered in memory."""
    import lzma
    import tracemalloc

    tail = os.urandom(8 << 20)
    comp = lzma.LZMACompressor(preset=0)
    blob = comp.compress(b"\0" * (256 << 20)) + comp.compress(tail) + comp.flush()
    tracemalloc.start()
    try:
        reader = compression.open_decompressed(io.BytesIO(blob), 1 << 40)
        total = 0
        while chunk := reader.read(1 << 16):
            total += len(chunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert total == (256 << 20) + len(tail)
    assert peak < 4 << 20, peak  # the reader's buffer and a step's output, copied


def test_xz_dictionaries_past_the_zstd_window_are_refused():
    """An xz stream costs a device no more than a zstd one: its dictionary is held to the same
    8 MiB, and what the build writes at any level stays within it."""
    import lzma

    for preset in (7, 9):
        with pytest.raises(FormatError):
            compression.decompress(lzma.compress(b"abc" * 1000, preset=preset), 1 << 20)
    for level in (1, 6, 9, 19):
        assert compression.decompress(encode.compress(DATA, "xz", level), len(DATA)) == DATA
