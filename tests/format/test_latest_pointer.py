"""The `latest` pointer."""

from __future__ import annotations

import pytest
from swupd.format import latest
from swupd.format.errors import FormatError


def test_round_trip():
    record = latest.Latest(20, 1, 1700000000, 1707776000)
    data = record.dumps()
    assert data == b"20\nformat:\t1\ntimestamp:\t1700000000\nexpires:\t1707776000\n"
    assert data.split(b"\n")[0] == b"20"
    assert latest.loads(data) == record


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"20",
        b"20\nformat:\t1\ntimestamp:\t1\nexpires:\t2",
        b"0\nformat:\t1\ntimestamp:\t1\nexpires:\t2\n",
        b"-1\nformat:\t1\ntimestamp:\t1\nexpires:\t2\n",
        b"twenty\nformat:\t1\ntimestamp:\t1\nexpires:\t2\n",
        b"99999999999\nformat:\t1\ntimestamp:\t1\nexpires:\t2\n",
        b"20\nformat:\t1\ntimestamp:\t1\n",
        b"20\nformat:\t1\nexpires:\t2\n",
        b"20\ntimestamp:\t1\nexpires:\t2\n",
        b"20\nformat:\t1\nformat:\t1\ntimestamp:\t1\nexpires:\t2\n",
        b"20\nformat: 1\ntimestamp:\t1\nexpires:\t2\n",
        b"20\nformat:\tx\ntimestamp:\t1\nexpires:\t2\n",
        b"20\nformat:\t1\ntimestamp:\t1\nexpires:\t2\n\n",
        "20\nformat:\t1\ntimestamp:\t1\nexpires:\t2\nnote:\tü\n".encode(),
        b"20\nformat:\t1\ntimestamp:\t1\nexpires:\t2\n" + b"x:\t1\n" * 1000,
    ],
)
def test_malformed(data):
    with pytest.raises(FormatError):
        latest.loads(data)
