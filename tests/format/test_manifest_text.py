"""Manifest text: round trips and every kind of malformed input."""

from __future__ import annotations

import hashlib
import os

import pytest
from swupd.format import fastparse
from swupd.format import manifest as mf
from swupd.format.errors import FormatError
from swupd.format.manifest import Entry, Manifest, Status, Type

H1 = "1" * 64
H2 = "2" * 64
ZERO = "0" * 64
RAW_PATH = os.fsdecode(b"/usr/share/\xff\xfe-raw")


def sample() -> Manifest:
    return Manifest(
        format=3,
        version=20,
        previous=10,
        timestamp=1700000000,
        includes=["os-core", "app"],
        entries=[
            Entry("/usr", Type.DIRECTORY, H1, 10, 0),
            Entry("/usr/bin/ls", Type.FILE, H2, 20, 1234),
            Entry("/usr/bin/sh", Type.SYMLINK, H1, 10, 4),
            Entry(RAW_PATH, Type.FILE, H2, 10, 7),
            Entry("/usr/share/ünï", Type.FILE, H2, 20, 3),
            Entry("/etc/gone", Type.NONE, ZERO, 20, 0, Status.DELETED),
            Entry("/boot/old", Type.NONE, ZERO, 20, 0, Status.GHOSTED),
        ],
    )


def test_round_trip_with_non_utf8_paths():
    m = sample()
    data = mf.dumps(m)
    assert b"\t/usr/share/\xff\xfe-raw\n" in data
    back = mf.loads(data)
    assert back.format == 3 and back.version == 20 and back.previous == 10 and back.timestamp == 1700000000
    assert back.includes == ["os-core", "app"]
    assert sorted(back.entries, key=lambda e: e.path) == sorted(m.entries, key=lambda e: e.path)
    assert mf.dumps(back) == data
    assert back.contentsize == 1234 + 4 + 7 + 3


def test_entries_sorted_by_version_then_bytes():
    lines = mf.dumps(sample()).split(b"\n\n", 1)[1].splitlines()
    keys = [(int(ln.split(b"\t")[2]), ln.split(b"\t")[4]) for ln in lines]
    assert keys == sorted(keys)


def test_mom_round_trip():
    mom = Manifest(
        format=1,
        version=30,
        previous=20,
        timestamp=5,
        compat="machine-x",
        stream="image-a",
        entries=[
            Entry("os-core", Type.MANIFEST, H1, 30, 900),
            Entry("app", Type.MANIFEST, H2, 20, 400, Status.EXPERIMENTAL),
            Entry("old", Type.NONE, ZERO, 30, 0, Status.DELETED),
        ],
    )
    data = mf.dumps(mom)
    assert b"compat:\tmachine-x\nstream:\timage-a\n" in data
    back = mf.loads(data, is_mom=True)
    assert back.compat == "machine-x" and back.stream == "image-a"
    assert mf.dumps(back) == data
    assert fastparse.kept_loads(fastparse.kept_dumps(back, b"s"), b"s") == back
    with pytest.raises(FormatError):
        mf.loads(data.replace(b"stream:\timage-a", b"stream:\timage a"), is_mom=True)
    with pytest.raises(FormatError):
        mf.loads(data)  # M entries are not allowed in a bundle manifest


def text(entries: list[str], drop: tuple[str, ...] = (), extra: list[str] | None = None, **header) -> bytes:
    """A manifest with filecount and contentsize computed from `entries` unless given."""
    size = 0
    for line in entries:
        cols = line.split("\t")
        if len(cols) == 5 and cols[0][:1] in "FL" and cols[0][1:2] == "." and cols[3].isdigit():
            size += int(cols[3])
    fields = {
        "version": "20",
        "previous": "10",
        "filecount": str(len(entries)),
        "timestamp": "1",
        "contentsize": str(size),
    }
    fields.update({k: str(v) for k, v in header.items()})
    head = ["MANIFEST\t1"] + [f"{k}:\t{v}" for k, v in fields.items() if k not in drop] + (extra or [])
    return ("\n".join(head) + "\n\n" + "".join(e + "\n" for e in entries)).encode("utf-8", "surrogateescape")


GOOD = [f"D...\t{H1}\t10\t0\t/usr", f"F...\t{H2}\t20\t5\t/usr/f"]


def test_text_helper_makes_valid_manifests():
    m = mf.loads(text(GOOD))
    assert len(m.entries) == 2 and m.contentsize == 5


MALFORMED = [
    (text([*GOOD, f"F...\t{H1}\t10\t/usr/x"]), "columns"),
    (text([*GOOD, f"F...\t{H1}\t10\t1\t/usr/x\textra"]), "columns"),
    (text(GOOD, filecount=3), "declares"),
    (text(GOOD, filecount=1), "declares"),
    (text([*GOOD, f"F...\t{H1[:-1]}\t10\t1\t/usr/x"]), "bad hash"),
    (text([*GOOD, f"F...\t{H1.upper().replace('1', 'A')}\t10\t1\t/usr/x"]), "bad hash"),
    (text([*GOOD, f"F...\t{'g' * 64}\t10\t1\t/usr/x"]), "bad hash"),
    (text([*GOOD, f"X...\t{H1}\t10\t1\t/usr/x"]), "flags"),
    (text([*GOOD, f"F.x.\t{H1}\t10\t1\t/usr/x"]), "flags"),
    (text([*GOOD, f"F..\t{H1}\t10\t1\t/usr/x"]), "flags"),
    (text([*GOOD, f"Fd..\t{ZERO}\t10\t0\t/usr/x"]), "flags"),
    (text([*GOOD, f".d..\t{H1}\t10\t0\t/usr/x"]), "hash"),
    (text([*GOOD, f"Fe..\t{H1}\t10\t1\t/usr/x"]), "flags"),
    (text([*GOOD, f"F...\t{H1}\t10\t1\t/usr/f"]), "twice"),
    (text([*GOOD, f"F...\t{H1}\t10\t1\tusr/x"]), "absolute"),
    (text([*GOOD, f"F...\t{H1}\t10\t1\t/usr/../etc/x"]), "component"),
    (text([*GOOD, f"F...\t{H1}\t10\t1\t/usr//x"]), "component"),
    (text([*GOOD, f"F...\t{H1}\t10\t1\t/usr/x/."]), "component"),
    (text([*GOOD, f"F...\t{H1}\t10\t1\t/usr/x/"]), "component"),
    (text([*GOOD, f"F...\t{H1}\t10\t1\t/usr/{'é' * 128}"]), "longer than 255"),
    (text([*GOOD, f"F...\t{H1}\t10\t1\t{'/abcdefgh' * 456}"]), "longer than 4096"),
    (text([*GOOD, f"F...\t{H1}\t10\t1\t/usr/x\ry"]), "control"),
    (text([*GOOD, f"F...\t{H1}\t10\t{2**40}\t/usr/x"]), "range"),
    (text([*GOOD, f"F...\t{H1}\t21\t1\t/usr/x"]), "newer"),
    (text([*GOOD, f"F...\t{H1}\t0\t1\t/usr/x"]), "range"),
    (text([*GOOD, f"F...\t{H1}\tten\t1\t/usr/x"]), "number"),
    (text([*GOOD, f"F...\t{H1}\t\u0661\u0660\t1\t/usr/x"]), "number"),  # Arabic-Indic ten
    (text([*GOOD, f"F...\t{H1}\t\u00b2\t1\t/usr/x"]), "number"),  # superscript two
    (text(GOOD, contentsize=6), "contentsize"),
    (text(GOOD, extra=["version:\t20"]), "repeats"),
    (text(GOOD, extra=["nonsense"]), "malformed"),
    (text(GOOD).replace(b"\n\n", b"\n", 1), "blank line"),
    (text(GOOD)[:-1], "newline"),
    (text(GOOD).replace(b"MANIFEST\t1", b"MANIFEST 1"), "MANIFEST"),
    (b"", "newline"),
]


@pytest.mark.parametrize(("data", "match"), MALFORMED)
def test_malformed(data, match):
    with pytest.raises(FormatError, match=match):
        mf.loads(data)


@pytest.mark.parametrize("field", ["version", "previous", "filecount", "timestamp", "contentsize"])
def test_missing_header_field(field):
    with pytest.raises(FormatError, match="lacks"):
        mf.loads(text(GOOD, drop=(field,)))


def test_mom_rejects_bad_bundle_names():
    good = text([f"M...\t{H1}\t20\t10\tos-core"], contentsize=0)
    assert mf.loads(good, is_mom=True).entries[0].path == "os-core"
    for name in ("MoM", "full", "../x", "a/b", "-x", ""):
        with pytest.raises(FormatError):
            mf.loads(text([f"M...\t{H1}\t20\t10\t{name}"], contentsize=0), is_mom=True)


def test_size_limit():
    from swupd.format.limits import Limits

    with pytest.raises(FormatError, match="larger"):
        mf.loads(text(GOOD), limits=Limits(max_manifest_bytes=50))


# Parsing against the previous version, and manifests kept parsed.

H3 = "3" * 64


def versions() -> tuple[bytes, bytes]:
    """Two versions of a bundle: one file changed, one deleted, one added, the rest shared."""
    old = [f"D...\t{H1}\t10\t0\t/usr"] + [f"F...\t{H1}\t10\t{i}\t/usr/f{i}" for i in range(50)]
    new = list(old)
    new[3] = f"F...\t{H2}\t20\t7\t/usr/f2"
    new[4] = f".d..\t{ZERO}\t20\t0\t/usr/f3"
    new.append(f"L...\t{H3}\t20\t4\t/usr/link")
    return text(old, version=10, previous=0), text(new)


def test_shared_lines_give_the_previous_entries_and_the_rest_is_parsed():
    old_data, new_data = versions()
    old = mf.loads(old_data)
    new = mf.loads(new_data, like=(old_data, old))
    assert new == mf.loads(new_data), "exactly what parsing the whole text gives"
    shared = [a for a, b in zip(old.entries, new.entries, strict=False) if a is b]
    assert len(shared) == 49, "every unchanged line is the earlier entry object itself"
    assert new.entries[3] == Entry("/usr/f2", Type.FILE, H2, 20, 7)
    assert new.entries[4].status == Status.DELETED
    assert new.entries[-1].type == Type.SYMLINK and new.contentsize == old.contentsize - 2 - 3 + 7 + 4


def test_a_pair_that_does_not_belong_together_is_not_trusted():
    """Bytes and entries of different manifests: parsed whole instead (same result as plain)."""
    old_data, new_data = versions()
    other = mf.loads(text(GOOD))
    assert mf.loads(new_data, like=(old_data, other)) == mf.loads(new_data)
    assert mf.loads(new_data, like=(text(GOOD), mf.loads(old_data))) == mf.loads(new_data)


def test_a_bad_changed_line_is_named_by_its_line_in_the_whole_text():
    old_data, _ = versions()
    old = mf.loads(old_data)
    lines = [f"D...\t{H1}\t10\t0\t/usr"] + [f"F...\t{H1}\t10\t{i}\t/usr/f{i}" for i in range(50)]
    lines[30] = f"F...\t{H1[:-1]}\t10\t1\t/usr/x"
    with pytest.raises(FormatError, match=r"line 38\b.*bad hash"):
        mf.loads(text(lines), like=(old_data, old))
    with pytest.raises(FormatError, match=r"line 38\b"):
        mf.loads(text(lines))


@pytest.mark.parametrize(("data", "match"), MALFORMED)
def test_every_malformed_text_is_refused_also_against_a_previous_version(data, match):
    good = text(GOOD)
    with pytest.raises(FormatError, match=match):
        mf.loads(data, like=(good, mf.loads(good)))


def test_kept_parsed_loads_exactly_what_was_parsed():
    m = sample()
    data = mf.dumps(m)
    got = mf.loads(data)
    stamp = hashlib.sha256(data).digest()
    back = fastparse.kept_loads(fastparse.kept_dumps(got, stamp), stamp)
    assert back == got and back.entries == got.entries and back.includes == ["os-core", "app"]
    assert [type(e) for e in back.entries] == [Entry] * len(got.entries)
    assert back.contentsize == got.contentsize


def test_kept_parsed_is_used_only_for_its_stamp_and_when_whole():
    m = mf.loads(mf.dumps(sample()))
    blob = fastparse.kept_dumps(m, b"stamp-a")
    assert fastparse.kept_loads(blob, b"stamp-b") is None, "bound to the bytes it was parsed from"
    for i in (0, 40, len(blob) // 2, len(blob) - 1):
        damaged = bytearray(blob)
        damaged[i] ^= 1
        assert fastparse.kept_loads(bytes(damaged), b"stamp-a") is None
    assert fastparse.kept_loads(blob[:-3], b"stamp-a") is None
    assert fastparse.kept_loads(b"", b"stamp-a") is None


def test_kept_parsed_of_an_empty_manifest():
    m = Manifest(format=1, version=5, previous=0, timestamp=1)
    assert fastparse.kept_loads(fastparse.kept_dumps(m, b"s"), b"s") == m
