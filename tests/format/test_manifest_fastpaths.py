"""The manifest parser's fast paths against the reference parser, on seeded random manifests.

Every fast path (the one-expression parse of `manifest.loads`, parsing against the previous
version with `like=`, manifests kept parsed) must give exactly the manifest
`manifest.reference_loads` gives, and refuse exactly the inputs it refuses, with the same error.
The manifests hold odd paths (non-UTF-8 bytes, multi-byte characters, names of dots, names at
and past the length limits), every type and status, deleted and ghosted entries, versions and
sizes up to their limits; later versions share most lines with the earlier one and change,
delete, ghost, add and drop the rest; malformed ones are valid ones with a few lines or fields
damaged.
"""

from __future__ import annotations

import hashlib
import os
import random

import pytest
from swupd.format import fastparse
from swupd.format import manifest as mf
from swupd.format.limits import LIMITS, Limits
from swupd.format.manifest import Entry, Manifest, Status, Type

ZERO = "0" * 64
SEEDS = range(60)
# Tight limits make random data meet the length and range rules often.
TIGHT = Limits(max_path_bytes=96, max_name_bytes=24, max_version=5000, max_file_bytes=10**6)

NAMES = [
    "usr", "lib", "bin", "a b", "é", "ünï", "日本語", "x", "-dash", "#hash", "%20", "back\\slash", "'q\"",
    "colon:", "~tilde", ".hidden", "..x", "x..", "...", ". .", "\x01ctl", "\x7f", "tab-less", "y" * 23,
    "z" * 24, "w" * 25, "é" * 12, "é" * 13, "v" * 63, "u" * 64, "t" * 255, "é" * 127, "😀" * 3, "😀" * 6,
    "😀" * 7, "😀" * 63, "😀" * 64,
    os.fsdecode(b"raw-\xff\xfe"), os.fsdecode(b"\xc3"), os.fsdecode(b"mixed-\xe9t\xe9"),
]  # fmt: skip


def digest(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


def path(rng: random.Random, limits: Limits) -> str:
    """A path within `limits` (a longer one is cut to its first components)."""
    if rng.random() < 0.01:
        return "/"
    parts = [n for n in (rng.choice(NAMES) for _ in range(rng.randint(1, 6))) if fits(n, limits.max_name_bytes)]
    while parts and not fits("/" + "/".join(parts), limits.max_path_bytes):
        parts.pop()
    return "/" + "/".join(parts or ["x"])


def fits(text: str, cap: int) -> bool:
    return len(text.encode("utf-8", "surrogateescape")) <= cap


def size(rng: random.Random, limits: Limits) -> int:
    return rng.choice([0, 1, rng.randrange(1 << 16), limits.max_file_bytes, rng.randrange(limits.max_file_bytes)])


def entry(rng: random.Random, p: str, version: int, limits: Limits) -> Entry:
    """A valid bundle-manifest entry for `p` last changed in a version up to `version`."""
    v = rng.choice([1, version, rng.randint(1, version)])
    kind = rng.random()
    if kind < 0.6:
        return Entry(p, Type.FILE, digest(rng), v, size(rng, limits))
    if kind < 0.75:
        return Entry(p, Type.DIRECTORY, digest(rng), v, 0)
    if kind < 0.87:
        return Entry(p, Type.SYMLINK, digest(rng), v, rng.randint(1, 4095))
    status = Status.DELETED if kind < 0.95 else Status.GHOSTED
    return Entry(p, Type.NONE, ZERO, v, rng.choice([0, 0, 0, 7]), status)


def bundle(rng: random.Random, limits: Limits, version: int | None = None) -> Manifest:
    version = version or rng.choice([2, 40, limits.max_version, rng.randint(2, limits.max_version)])
    paths = {path(rng, limits) for _ in range(rng.randint(0, 250))}
    return Manifest(
        format=rng.randint(1, 40),
        version=version,
        previous=rng.randint(0, version - 1),
        timestamp=rng.choice([0, 1700000000, 2**63 - 1]),
        entries=[entry(rng, p, version, limits) for p in paths],
        includes=rng.sample(["os-core", "app", "x.y_z+1-2"], rng.randint(0, 3)),
    )


def mom(rng: random.Random) -> Manifest:
    names = rng.sample(["os-core", "app", "Tools", "a.b", "x_y", "z+1", "q-2", "9lives"], rng.randint(0, 8))
    entries = []
    for n in names:
        status = rng.choice([Status.PRESENT, Status.EXPERIMENTAL, Status.DELETED, Status.GHOSTED])
        if status in (Status.DELETED, Status.GHOSTED):
            entries.append(Entry(n, Type.NONE, ZERO, rng.randint(1, 30), 0, status))
        else:
            entries.append(Entry(n, Type.MANIFEST, digest(rng), rng.randint(1, 30), rng.randrange(1 << 30), status))
    return Manifest(rng.randint(1, 9), 30, 20, 5, entries, compat="machine-x", stream=rng.choice(["", "image-a"]))


def text(m: Manifest, rng: random.Random) -> bytes:
    """`m` as manifest bytes, its entry lines sometimes out of swupd's order (a parser keeps
    the order of the file, whatever it is)."""
    data = mf.dumps(m)
    if rng.random() < 0.3:
        split = data.index(b"\n\n") + 2
        lines = data[split:].split(b"\n")[:-1]
        rng.shuffle(lines)
        data = data[:split] + b"".join(ln + b"\n" for ln in lines)
    return data


def next_version(rng: random.Random, old: Manifest, limits: Limits) -> Manifest:
    """A later version of `old`: most entries shared, some changed, deleted, ghosted, dropped,
    and new ones added."""
    version = min(old.version + rng.randint(1, 30), limits.max_version)
    out = []
    for e in old.entries:
        r = rng.random()
        if r < 0.75:
            out.append(e)
        elif r < 0.82 and e.present:
            out.append(e._replace(hash=digest(rng), version=version, size=size(rng, limits)))
        elif r < 0.87:
            out.append(e.deleted(version))
        elif r < 0.9:
            out.append(Entry(e.path, Type.NONE, ZERO, version, 0, Status.GHOSTED))
        elif r < 0.95:
            out.append(entry(rng, e.path, version, limits))
        # else: dropped
    known = {e.path for e in out}
    out += [entry(rng, p, version, limits) for p in {path(rng, limits) for _ in range(rng.randint(0, 20))} - known]
    return Manifest(old.format, version, old.version, min(old.timestamp + 1, 2**63 - 1), out, old.includes)


# Damage to one field or line of an otherwise valid manifest.
JUNK = ["", "x", "-1", "0", "01", "1" * 21, "9" * 20, "٣", "²", " 1", "1 ", "+1", "0x1"]


OVER_LONG = [
    b"/" + b"\xff" * 30, b"/" + "é".encode() * 20, b"/" + b"q" * 97, b"/ab" * 33, b"/ab" * 1366,
    "/😀😀😀".encode() * 9, "/😀😀😀".encode() * 320, ("/😀" + "😀" * 6).encode(), ("/" + "😀" * 64).encode(),
]  # fmt: skip


def damage(rng: random.Random, line: bytes) -> bytes:
    cols = line.split(b"\t")
    how = rng.randrange(15)
    if how == 0:
        return b"\t".join(cols[:-1])  # a column short
    if how == 1:
        return line + b"\t" + rng.choice([b"", b"x"])  # a column over
    if how == 2:
        cols[0] = rng.choice([b"F..", b"X...", b"Fe..", b"M...", b"Fd..", b".d..", b"....", b"f...", b"F...."])
    elif how == 3:
        h = cols[1].decode()
        cols[1] = rng.choice([h.upper(), h[:-1], h + "0", "g" * 64, ZERO, "1" * 64]).encode()
    elif how in (4, 5):
        cols[2 + how - 4] = rng.choice(JUNK).encode()
    elif how == 6:
        cols[2] = str(rng.choice([0, TIGHT.max_version + 1, LIMITS.max_version + 1, 10**19])).encode()
    elif how == 7:
        cols[3] = str(rng.choice([TIGHT.max_file_bytes + 1, LIMITS.max_file_bytes + 1])).encode()
    elif how == 8:
        p = cols[-1]
        cols[-1] = rng.choice([p + b"/", p + b"/.", p + b"/..", p + b"//x", p[1:], b"/a/./b", b"/a/../b", b""])
    elif how == 9:
        cols[-1] += rng.choice([b"\r", b"\0", b"/" + b"n" * 256, b"/" + "é".encode() * 128, b"/p" * 2100])
    elif how in (10, 11, 12, 13):
        # Past a length limit in bytes, not in characters, as a path of 4-byte characters is.
        cols[-1] = rng.choice(OVER_LONG)
    else:
        cols[2] = str(2**31).encode()  # newer than any manifest
    return b"\t".join(cols)


def damaged(rng: random.Random, data: bytes) -> bytes:
    """`data` with one to three entry lines damaged or repeated, the header's count kept true."""
    split = data.index(b"\n\n") + 2
    head, lines = data[:split], data[split:].split(b"\n")[:-1]
    if not lines:
        return head + b"F...\t" + b"1" * 64 + b"\t1\t1\tno-slash\n"
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        i = rng.randrange(len(lines))
        if rng.random() < 0.1:
            lines.insert(rng.randrange(len(lines) + 1), lines[i])  # a path twice
        else:
            lines[i] = damage(rng, lines[i])
    count = head.split(b"filecount:\t", 1)[1].split(b"\n", 1)[0]
    head = head.replace(b"filecount:\t" + count + b"\n", f"filecount:\t{len(lines)}\n".encode(), 1)
    return head + b"".join(ln + b"\n" for ln in lines)


def outcome(parse, *args, **kw) -> tuple:
    """What a parser makes of its input: the manifest, or the error (class and message)."""
    try:
        return ("parsed", parse(*args, **kw))
    except Exception as e:  # any refusal counts, and must be the same
        return ("refused", type(e), str(e))


def assert_exact(got: Manifest, want: Manifest) -> None:
    """Equal, and built of the same kinds of values (no stray tuple, str or int subclass)."""
    assert got == want
    for e in got.entries:
        assert type(e) is Entry and type(e.path) is str and type(e.hash) is str
        assert e.type in Type and e.status in Status and type(e.version) is int and type(e.size) is int


def kept_round_trip(m: Manifest, data: bytes) -> Manifest | None:
    stamp = hashlib.sha256(data).digest()
    return fastparse.kept_loads(fastparse.kept_dumps(m, stamp), stamp)


@pytest.mark.parametrize("seed", SEEDS)
def test_every_fast_path_gives_what_the_reference_gives(seed: int) -> None:
    rng = random.Random(seed)
    limits = TIGHT if seed % 3 == 0 else LIMITS
    old = bundle(rng, limits)
    old_data = text(old, rng)
    want_old = mf.reference_loads(old_data, limits=limits)
    assert sorted(want_old.entries) == sorted(old.entries), "the generator makes valid manifests"
    got_old = mf.loads(old_data, limits=limits)
    assert_exact(got_old, want_old)
    assert_exact(kept_round_trip(got_old, old_data), want_old)
    for _ in range(3):  # a chain of versions, each parsed against the one before
        new = next_version(rng, old, limits)
        new_data = text(new, rng)
        want = mf.reference_loads(new_data, limits=limits)
        assert_exact(mf.loads(new_data, limits=limits), want)
        kept_old = kept_round_trip(got_old, old_data)
        for like in ((old_data, got_old), (old_data, kept_old)):
            got = mf.loads(new_data, limits=limits, like=like)
            assert_exact(got, want)
            # Shared lines are the earlier entries themselves, not equal copies.
            before = dict(zip(old_data.split(b"\n\n", 1)[1].split(b"\n"), like[1].entries, strict=False))
            lines = new_data.split(b"\n\n", 1)[1].split(b"\n")[:-1]
            assert all(e is before[ln] for ln, e in zip(lines, got.entries, strict=True) if ln in before)
        old, old_data, got_old = new, new_data, mf.loads(new_data, limits=limits, like=(old_data, got_old))


@pytest.mark.parametrize("seed", SEEDS)
def test_every_fast_path_refuses_what_the_reference_refuses(seed: int) -> None:
    rng = random.Random(1000 + seed)
    limits = TIGHT if seed % 2 else LIMITS
    good = bundle(rng, LIMITS, version=rng.choice([40, 5000]))
    good_data = text(good, rng)
    like = (good_data, mf.loads(good_data))
    refused = 0
    for _ in range(12):
        bad = damaged(rng, text(next_version(rng, good, LIMITS), rng) if rng.random() < 0.5 else good_data)
        want = outcome(mf.reference_loads, bad, limits=limits)
        refused += want[0] == "refused"
        assert outcome(mf.loads, bad, limits=limits) == want
        if limits is LIMITS:  # `like` holds a manifest parsed under the same limits
            assert outcome(mf.loads, bad, limits=limits, like=like) == want
    assert refused, "damage that nothing refuses tests nothing"


@pytest.mark.parametrize("seed", range(10))
def test_moms_by_every_path(seed: int) -> None:
    rng = random.Random(2000 + seed)
    m = mom(rng)
    data = text(m, rng)
    want = mf.reference_loads(data, is_mom=True)
    assert sorted(want.entries) == sorted(m.entries)
    assert_exact(mf.loads(data, is_mom=True), want)
    assert_exact(mf.loads(data, is_mom=True, like=(data, want)), want)
    assert_exact(kept_round_trip(want, data), want)
    bad = damaged(rng, data)
    assert outcome(mf.loads, bad, is_mom=True) == outcome(mf.reference_loads, bad, is_mom=True)
