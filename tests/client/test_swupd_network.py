"""Updates over a real HTTP server that fails, cuts bodies short and sends endless data."""

from __future__ import annotations

from pathlib import Path

import clientkit as ck
import pytest
from clientkit import Device
from support.httpserver import FaultServer

PACKS = ["/20/pack-os-core-from-10.tar", "/20/pack-app-from-10.tar", "/20/pack-app-docs-from-10.tar"]


def statuses(srv: FaultServer, path: str) -> list[int | None]:
    return [e.status for e in srv.requests(path, "GET")]


def test_missing_packs_fall_back_to_fullfiles(device: Device, content: FaultServer, stream: ck.Stream) -> None:
    before = device.tree()
    for p in PACKS + [p.replace("-from-10", "-from-0") for p in PACKS]:
        content.fail(404, times=None, path=p)
    r = device.swupd("update")
    assert r.rc == 0, r.err
    ck.assert_tree(device.root, stream.expected(20, ck.ALL_BUNDLES, old=before))
    assert statuses(content, PACKS[0]) == [404]
    fullfiles = {e.path for e in content.log if e.path.startswith("/20/files/") and e.status == 200}
    wanted = ck.new_entries(stream.www, 10, 20)
    # Everything new was fetched whole, except what the device could copy from its own tree.
    assert {f"/20/files/{e.hash}.tar" for e in wanted.values() if e.kind == "F" and e.size > 1000} <= fullfiles
    assert "0 pack(s)" in r.out


def test_server_errors_are_retried(device: Device, content: FaultServer, stream: ck.Stream) -> None:
    before = device.tree()
    content.fail(500, times=2)  # the first two requests, whatever they are
    content.fail(503, times=2, path="/20/Manifest.MoM")
    content.fail(502, times=1, path=PACKS[0])
    r = device.swupd("update")
    assert r.rc == 0, r.err
    ck.assert_tree(device.root, stream.expected(20, ck.ALL_BUNDLES, old=before))
    assert statuses(content, "/version/format1/latest")[:3] == [500, 500, 200]
    assert statuses(content, "/20/Manifest.MoM") == [503, 503, 200]
    assert statuses(content, PACKS[0]) == [502, 200]


def test_persistent_server_errors_fail_cleanly(device: Device, content: FaultServer) -> None:
    snap = device.snapshot()
    content.fail(503, times=None, path="/20/Manifest.MoM")
    r = device.swupd("update")
    assert r.rc == 11 and "HTTP 503" in r.error_line()
    assert ck.diff_snapshots(snap, device.snapshot()) == ""


def test_truncated_bodies_resume(device: Device, content: FaultServer, stream: ck.Stream) -> None:
    before = device.tree()
    size = Path(stream.www, PACKS[0].lstrip("/")).stat().st_size
    content.truncate(100_000, times=1, path=PACKS[0])
    content.truncate(200, times=1, path="/20/Manifest.MoM")
    r = device.swupd("update")
    assert r.rc == 0, r.err
    ck.assert_tree(device.root, stream.expected(20, ck.ALL_BUNDLES, old=before))
    got = content.requests(PACKS[0], "GET")
    assert [(e.range, e.status) for e in got] == [(None, 200), ("bytes=100000-", 206)], got
    assert size > 100_000
    assert statuses(content, "/20/Manifest.MoM") == [200, 200]  # small files start over


@pytest.mark.parametrize(
    ("target", "code"),
    [("/version/format1/latest", 6), ("/20/Manifest.MoM", 6), ("fullfile", 6), ("pack", 0)],
)
def test_endless_bodies(device: Device, content: FaultServer, stream: ck.Stream, target: str, code: int) -> None:
    """Junk that never ends: refused at the signed or fixed size, memory stays bounded; an
    endless pack is given up on and fullfiles are used instead."""
    snap = device.snapshot()
    if target == "fullfile":
        for p in PACKS:
            content.fail(404, times=None, path=p)
        big = ck.entries(stream.www, 20, {"os-core"})["/usr/share/data/big.bin"]
        target = f"/20/files/{big.hash}.tar"
    elif target == "pack":
        target = PACKS[0]
    content.endless(path=target)
    r, rss_kib = ck.wait_rusage([ck.SWUPD, "update", *device.opts()], timeout=120)
    assert r.rc == code, (r.rc, r.err)
    assert "Traceback" not in r.err
    assert rss_kib < 200 * 1024, f"peak memory {rss_kib} KiB"
    if code:
        assert "allowed" in r.error_line(), r.err
        assert ck.diff_snapshots(snap, device.snapshot()) == ""
    else:
        assert device.version() == 20
        assert "unusable" in r.err
