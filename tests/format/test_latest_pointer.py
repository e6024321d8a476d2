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
        "\u00b2\nformat:\t1\ntimestamp:\t1\nexpires:\t2\n".encode(),  # a digit that is no number
        "20\nformat:\t\u0661\ntimestamp:\t1\nexpires:\t2\n".encode(),  # Arabic-Indic one
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


def test_stream_identity_round_trip_and_order():
    record = latest.Latest(20, 1, 1700000000, 1707776000, "image-a.qemux86-64")
    data = record.dumps()
    assert data.endswith(b"expires:\t1707776000\nstream:\timage-a.qemux86-64\n")
    assert latest.loads(data) == record
    # Version first: a later version orders above a pointer re-signed after it was built.
    assert latest.Latest(21, 1, 1600000000, 1, "s").order > latest.Latest(20, 1, 1700000000, 1, "s").order
    assert latest.Latest(20, 1, 1700000001, 1, "s").order > record.order


@pytest.mark.parametrize(
    "stream",
    [b"", b"-a", b"a b", b"a/b", b"a\tb", b"x" * 129, b"a\nstream:\tb", "\u00e9".encode()],
)
def test_malformed_stream_identity(stream):
    with pytest.raises(FormatError):
        latest.loads(b"20\nformat:\t1\ntimestamp:\t1\nexpires:\t2\nstream:\t" + stream + b"\n")
