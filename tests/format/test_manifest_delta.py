"""format/manifestdelta.py: a manifest delta reproduces exactly the signed size or fails."""

from __future__ import annotations

import os

import pytest
from swupd.format import manifestdelta
from swupd.format.errors import FormatError, SizeLimitError
from swupd.format.limits import Limits
from swupd_server import encode


def _manifest(n: int, changed: int = -1) -> bytes:
    lines = [
        b"F...\t%s\t10\t/usr/lib/f%d" % (os.urandom(32).hex().encode() if i == changed else b"%064x" % i, i)
        for i in range(n)
    ]
    return b"\n".join(lines) + b"\n"


def test_a_delta_of_one_changed_line_in_1_6_mb_is_a_few_hundred_bytes():
    old, new = _manifest(20000), _manifest(20000, changed=1234)
    blob = encode.manifest_delta(old, new)
    assert len(new) > 1_500_000 and len(blob) < 400
    assert manifestdelta.apply(old, blob, len(new)) == new


def test_a_delta_declaring_another_size_is_refused():
    old, new = _manifest(500), _manifest(500, changed=3)
    blob = encode.manifest_delta(old, new)
    with pytest.raises(FormatError, match="signed size"):
        manifestdelta.apply(old, blob, len(new) - 1)
    with pytest.raises(FormatError):
        manifestdelta.apply(old, blob[:-4], len(new))


def test_manifests_past_the_window_travel_whole():
    small = Limits(max_manifest_delta_window=64 * 1024)
    old, new = _manifest(400), _manifest(400, changed=1)
    assert not manifestdelta.usable(len(old), len(new), small)
    with pytest.raises(ValueError):
        encode.manifest_delta(old, new, limits=small)
    with pytest.raises(SizeLimitError):
        manifestdelta.apply(old, encode.manifest_delta(old, new), len(new), small)
