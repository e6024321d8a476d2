"""Same input and SOURCE_DATE_EPOCH give the same bytes, whatever the machine state."""

from __future__ import annotations

import time

import reader
from buildutil import JOBS, cli, create_args, make_stream_tree, snapshot
from support import oracle

EPOCH = 1700000000


def _build(base, key: str, jobs: str) -> dict[bytes, tuple]:
    www = str(base / "www")
    for version, variant in ((10, 1), (20, 2)):
        # Each stream gets its own freshly made trees: other inodes, other mtimes.
        root = make_stream_tree(str(base / f"rootfs-{version}"), variant)
        args = create_args(www, root, version, key)
        args[args.index("--jobs") + 1] = jobs
        r = cli(*args)
        assert r.rc == 0, r.err
    return snapshot(www)


def test_two_builds_are_byte_identical(tmp_path, keys, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(EPOCH))
    a = _build(tmp_path / "a", keys.private, JOBS)
    b = _build(tmp_path / "b", keys.private, "1")
    # `latest` states freshness: its expiry counts from the time of publishing, so it is the
    # one file whose bytes depend on when the build ran.
    volatile = {b".lock", b"version/format1/latest", b"version/format1/latest.sig"}
    published_a = {p: v for p, v in a.items() if p not in volatile}
    published_b = {p: v for p, v in b.items() if p not in volatile}
    assert sorted(published_a) == sorted(published_b)
    differ = sorted(p for p in published_a if published_a[p] != published_b[p])
    assert not differ, differ[:20]
    assert len([p for p in published_a if p.startswith(b"20/files/")]) > 5
    assert len([p for p in published_a if b"pack-" in p]) >= 9
    record = oracle.parse_latest(a[b"version/format1/latest"][1])
    assert record.fields["timestamp"] == EPOCH


def test_timestamps_come_from_source_date_epoch(stream, tmp_path, keys, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(EPOCH))
    www = str(tmp_path / "www")
    assert cli(*create_args(www, stream.rootfs[10], 10, keys.private)).rc == 0
    w = reader.Www(www, keys.raw)
    assert w.mom(10).header["timestamp"] == str(EPOCH)
    for m in w.bundles(10).values():
        assert m.header["timestamp"] == str(EPOCH)
        for e in m.present():
            assert w.fullfile(10, e.hash).mtime <= EPOCH
    # Expiry counts from publishing (now), not from the build time, which may be long past.
    expires = w.latest(1).fields["expires"]
    assert time.time() + 89 * 86400 < expires <= time.time() + 90 * 86400 + 60
