"""Updates over a real HTTP server that fails, cuts bodies short and sends endless data."""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
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


# -- a hopeless server: the run gives up within its patience -------------------------------------


def content_paths(www: str, version: int = 20) -> list[str]:
    """Every pack and fullfile URL path of `version`: what an update downloads."""
    base = Path(www, str(version))
    return sorted(f"/{version}/{p.relative_to(base)}" for p in base.rglob("*") if p.is_file()
                  if p.name.startswith("pack-") or p.parent.name == "files")  # fmt: skip


def net_env(**settings: object) -> dict[str, str]:
    return dict(os.environ, SWUPD_NET=",".join(f"{k}={v}" for k, v in settings.items()))


def assert_gave_up(device: Device, snap: dict, r: ck.Result, took: float, bound: float) -> None:
    assert r.rc == 11, (r.rc, r.err)
    assert "giving up on the server" in r.error_line()
    assert took < bound, f"took {took:.1f} s"
    assert ck.diff_snapshots(snap, device.snapshot()) == ""


@pytest.mark.parametrize("fault", ["hang", "drip"])
def test_a_server_that_stalls_ends_the_update_within_its_patience(
    device: Device, content: FaultServer, stream: ck.Stream, fault: str
) -> None:
    """Metadata comes; then every pack and fullfile request is accepted and never answered
    (`hang`), or answered with headers and then 1 byte/s (`drip`). With the per-request timeouts
    at their defaults (30 s without a byte, 1 KiB/s over 30 s), each request alone would last
    half a minute and every file would be tried in turn; the run gives up after `give_up_after`
    seconds of work without progress, and it is asked of the server only a few times."""
    snap = device.snapshot()
    paths = content_paths(stream.www)
    for p in paths:
        content.hang(path=p) if fault == "hang" else content.drip(1, path=p)
    began = time.monotonic()
    r = device.swupd_process("update", env=net_env(give_up_after=3), timeout=90)
    took = time.monotonic() - began
    assert_gave_up(device, snap, r, took, 3 + 12)
    assert "no progress in 3 s of network work" in r.err
    asked = [e for e in content.log if e.path in paths]
    assert 1 <= len(asked) <= 4, asked


def test_failures_in_a_row_end_the_update(device: Device, content: FaultServer, stream: ck.Stream) -> None:
    """Every pack and fullfile answers 503: after `max_failures` failed attempts over all of
    them the run stops, instead of trying each of them `retries` + 1 times."""
    snap = device.snapshot()
    paths = content_paths(stream.www)
    for p in paths:
        content.fail(503, times=None, path=p)
    began = time.monotonic()
    r = device.swupd_process("update", env=net_env(max_failures=4, backoff_base=0.5, backoff_max=0.5), timeout=90)
    took = time.monotonic() - began
    assert_gave_up(device, snap, r, took, 20)
    assert "4 failed attempts in a row" in r.err
    assert len([e for e in content.log if e.path in paths]) == 4


def test_net_settings_are_checked(device: Device) -> None:
    r = device.swupd_process("update", env=net_env(give_up_after="soon"))
    assert r.rc == 2 and "SWUPD_NET" in r.error_line()


# -- no needless downloads -----------------------------------------------------------------------


def test_files_already_in_place_are_not_downloaded(device: Device, content: FaultServer, stream: ck.Stream) -> None:
    """Some of version 20's new files were already placed on the device, bytes and metadata
    (copied from the build's input): they are neither fetched nor staged, the rest is, and the
    device ends exactly at version 20 with a clean verify. Packs are missing, so the server's
    log shows each object the client fetched."""
    before = device.tree()
    for p in PACKS + [p.replace("-from-10", "-from-0") for p in PACKS]:
        content.fail(404, times=None, path=p)
    new = ck.new_entries(stream.www, 10, 20)
    uses = Counter(e.hash for e in new.values())
    candidates = [
        e for p, e in sorted(new.items())
        if e.kind == "F" and uses[e.hash] == 1 and not ck.is_generated(p) and not ck.is_state(p)
        and os.path.isdir(os.path.join(device.root, os.path.dirname(p).lstrip("/")))
        and not os.path.isdir(os.path.join(device.root, p.lstrip("/")))
    ]  # fmt: skip
    placed = candidates[::2]
    assert len(placed) >= 2 and len(candidates) > len(placed)
    for e in placed:
        rel = os.fsdecode(e.path).lstrip("/")
        dest = os.path.join(device.root, rel)
        subprocess.run(["cp", "-a", "--remove-destination", os.path.join(stream.rootfs[20], rel), dest], check=True)
        assert ck.read_obj(dest).hash() == e.hash
    r = device.swupd("update")
    assert r.rc == 0, r.err
    fetched = {e.path for e in content.log if e.path.startswith("/20/files/") and e.status == 200}
    assert not {f"/20/files/{e.hash}.tar" for e in placed} & fetched
    assert {f"/20/files/{e.hash}.tar" for e in candidates if e not in placed} <= fetched
    ck.assert_tree(device.root, stream.expected(20, ck.ALL_BUNDLES, old=before))
    r = device.swupd("verify")
    assert r.rc == 0 and ": 0 missing, 0 modified, 0 extra" in r.out, r.out + r.err


def test_a_download_spoiled_by_an_earlier_run_is_fetched_again(
    device: Device, content: FaultServer, stream: ck.Stream
) -> None:
    """An attacker on the network corrupts every fullfile and cuts it off: the update fails
    with nothing changed, leaving `.part` files to resume. The next run, on a sound network,
    resumes them into files that fail their checks, fetches those again from their first byte
    and updates."""
    for p in PACKS + [p.replace("-from-10", "-from-0") for p in PACKS]:
        content.fail(404, times=None, path=p)
    new = ck.new_entries(stream.www, 10, 20).values()
    files = [f"/20/files/{e.hash}.tar" for e in new if e.kind == "F" and e.size > 1000]
    for path in files:
        content.corrupt(times=None, path=path)
        content.truncate(600, times=None, path=path)
    before, snap, trust = device.tree(), device.snapshot(), Path(device.state, "trust.json").read_bytes()
    r = device.swupd("update")
    assert r.rc == 11, (r.rc, r.err)
    assert ck.diff_snapshots(snap, device.snapshot()) == ""
    assert Path(device.state, "trust.json").read_bytes() == trust
    spoiled = {p.name for p in Path(device.state, "download").glob("*.tar.part")}
    assert spoiled
    content.clear_faults()
    for p in PACKS + [p.replace("-from-10", "-from-0") for p in PACKS]:
        content.fail(404, times=None, path=p)
    content.clear_log()
    r = device.swupd("update")
    assert r.rc == 0, (r.rc, r.err)
    ck.assert_tree(device.root, stream.expected(20, ck.ALL_BUNDLES, old=before))
    for name in spoiled:  # resumed, then fetched whole
        got = [e.range for e in content.requests(f"/20/files/{name[:-5]}", "GET")]
        assert got[0] is not None and got[1:] == [None], got
    assert not any(Path(device.state, "download").iterdir())
