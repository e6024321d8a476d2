"""Power cuts and failing disks during an update, at every named fault point and at random
moments: the tree is always the old version, the new one, or (while a committed journal is
pending) a mix of whole old and whole new objects that the next run completes."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import clientkit as ck
import pytest
from clientkit import Device
from support.httpserver import FaultServer


def env_with(fault: str) -> dict[str, str]:
    return dict(os.environ, SWUPD_FAULT=fault)


@pytest.fixture(scope="module")
def counts(v10_all: Device, tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    """How many actions and staged objects the update from 10 to 20 has (read from a journal)."""
    d = tmp_path_factory.mktemp("count")
    dev = Device(ck.clone(v10_all.root, str(d / "root")), ck.clone(v10_all.state, str(d / "state")),
                 v10_all.url, v10_all.stream)  # fmt: skip
    r = dev.swupd_process("update", env=env_with("journal-written:kill"))
    assert r.rc == -signal.SIGKILL, r.err
    actions = json.loads(Path(dev.state, "journal").read_bytes())["actions"]
    kinds = [a[0] for a in actions]
    return {"actions": len(actions), "stage": kinds.count("mkdir") + kinds.count("mv")}


def finish(dev: Device, command: str, want: dict) -> None:
    r = dev.swupd_process(command)
    assert r.rc == 0, (r.rc, r.err)
    assert "Traceback" not in r.err
    ck.assert_tree(dev.root, want)
    assert not Path(dev.state, "journal").exists()
    assert Path(dev.state, "version").read_text().strip() == "20"
    assert dev.version() == 20
    r = dev.swupd("verify")
    assert r.rc == 0 and "0 missing, 0 modified, 0 extra" in r.out, r.out


POINTS = [
    ("object@1", "old"),  # a stored file cut short: checked, and fetched again, next time
    ("object@3", "old"),
    ("downloaded", "old"),
    ("stage@1", "old"),
    ("stage@last", "old"),
    ("staged", "old"),
    ("journal-written", "old"),
    ("action@1", "old"),
    ("action@2", "mixed"),
    ("action@half", "mixed"),
    ("action@last", "new"),  # the last action records the version; the tree is done
    ("applied", "new"),
    ("recorded", "new"),
]


@pytest.mark.parametrize(("point", "expect"), POINTS)
def test_killed_at_fault_point(
    device: Device, stream: ck.Stream, counts: dict[str, int], point: str, expect: str
) -> None:
    name, _, nth = point.partition("@")
    if nth:
        total = counts["actions" if name == "action" else "stage"]
        nth = str({"last": total, "half": total // 2}.get(nth, nth))
        point = f"{name}@{nth}"
    before, snap = device.tree(), device.snapshot()
    new = stream.expected(20, ck.ALL_BUNDLES, old=before)
    r = device.swupd_process("update", env=env_with(f"{point}:kill"))
    assert r.rc == -signal.SIGKILL, f"{point} was not reached: {r.rc} {r.err}"
    if expect == "old":
        assert ck.diff_snapshots(snap, device.snapshot()) == "", f"killed at {point}, the tree changed"
    elif expect == "new":
        ck.assert_tree(device.root, new)
    else:
        problems = ck.old_or_new(device.root, before, new)
        assert not problems, f"killed at {point}: " + "\n".join(problems[:20])
        assert ck.compare_tree(device.root, new), f"{point} should leave work to do"
    assert Path(device.state, "journal").exists() == (name not in ("object", "downloaded", "stage", "staged"))
    # `verify` finishes a pending journal first; `update` does everything that is left.
    finish(device, "verify" if name in ("journal-written", "action", "applied") else "update", new)


def test_killed_again_while_finishing(device: Device, stream: ck.Stream, counts: dict[str, int]) -> None:
    before = device.tree()
    new = stream.expected(20, ck.ALL_BUNDLES, old=before)
    for fault in (f"action@{counts['actions'] // 2}:kill", "action@2:kill", "recorded:kill"):
        r = device.swupd_process("update", env=env_with(fault))
        assert r.rc == -signal.SIGKILL, (fault, r.err)
        assert not ck.old_or_new(device.root, before, new)
    finish(device, "update", new)


@pytest.mark.parametrize(("fault", "code"), [("stage:enospc", 13), ("stage:eio", 15), ("stage@5:enospc", 13)])
def test_disk_errors_while_staging(device: Device, stream: ck.Stream, fault: str, code: int) -> None:
    snap, before = device.snapshot(), device.tree()
    r = device.swupd_process("update", env=env_with(fault))
    assert r.rc == code, (r.rc, r.err)
    line = r.error_line()
    assert "nothing was changed" in line, line
    assert r.err.count("\n") == 1
    assert ck.diff_snapshots(snap, device.snapshot()) == ""
    assert not Path(device.state, "journal").exists()
    finish(device, "update", stream.expected(20, ck.ALL_BUNDLES, old=before))


def test_io_error_after_the_commit_point(device: Device, stream: ck.Stream) -> None:
    """An I/O error while applying leaves the journal; the next run completes it."""
    before = device.tree()
    new = stream.expected(20, ck.ALL_BUNDLES, old=before)
    r = device.swupd_process("update", env=env_with("action@3:eio"))
    assert r.rc == 15, (r.rc, r.err)
    r.error_line()
    assert Path(device.state, "journal").exists()
    assert not ck.old_or_new(device.root, before, new)
    finish(device, "update", new)


@pytest.mark.parametrize("seed", range(5))
def test_killed_at_a_random_moment(v10_all: Device, clone_device, stream: ck.Stream, seed: int) -> None:
    rnd = random.Random(seed)
    with FaultServer(stream.www) as srv:
        dev = clone_device(v10_all, srv.url())
        before = dev.tree()
        new = stream.expected(20, ck.ALL_BUNDLES, old=before)
        p = subprocess.Popen([ck.SWUPD, "update", *dev.opts()], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rnd.uniform(0.1, 1.2))
        p.send_signal(signal.SIGKILL)
        _, err = p.communicate(timeout=60)
        assert b"Traceback" not in err
        problems = ck.old_or_new(dev.root, before, new)
        assert not problems, f"killed after {p.returncode}: " + "\n".join(problems[:20])
        finish(dev, "update", new)


def test_a_move_the_journal_cannot_make_is_an_error(device: Device, tmp_path: Path) -> None:
    """A move whose object is still waiting but whose target cannot be reached (its directory
    turned into a link meanwhile) stops the run with an I/O error and keeps the journal: it is
    never taken for a move an interrupted run already made."""
    r = device.swupd_process("update", env=env_with("journal-written:kill"))
    assert r.rc == -signal.SIGKILL, r.err
    actions = json.loads(Path(device.state, "journal").read_bytes())["actions"]
    moves = [a for a in actions if a[0] == "mv" and a[2].count("/") >= 3]
    parent = os.path.dirname(moves[0][2])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    host = Path(device.root, parent.lstrip("/"))
    os.rename(host, tmp_path / "moved-away")
    host.symlink_to(elsewhere)
    r = device.swupd_process("verify")
    assert r.rc == 15, (r.rc, r.err)
    r.error_line()
    assert Path(device.state, "journal").exists()
    assert list(elsewhere.iterdir()) == [], "nothing is written through the link"
    assert os.path.lexists(moves[0][1]), "the object waits for the next run"
