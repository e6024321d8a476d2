"""What the command prints: one-line errors without tracebacks, --json records, --quiet."""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import clientkit as ck
from clientkit import Device
from support.httpserver import FaultServer


def one_line_error(r: ck.Result, code: int) -> str:
    assert r.rc == code, (r.rc, r.out, r.err)
    assert "Traceback" not in r.err + r.out, r.err
    lines = r.err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.err
    return lines[0]


def test_error_paths_print_one_line(device: Device, stream: ck.Stream, private_www: Path, tmp_path: Path) -> None:
    opts = device.opts()
    bare = tmp_path / "bare"  # a root with no settings of its own
    bare.mkdir()
    cases = [
        (2, ["update", "--path", bare, "--statedir", tmp_path / "st"]),  # no URL, no key
        (2, ["update", "--path", bare, "--statedir", tmp_path / "st", *opts[4:6], "--format", "1"]),  # no key
        (3, ["update", *opts[:6], "--key", __file__, "--format", "1"]),  # not a key
        (2, ["update", *opts[2:], "--path", str(tmp_path / "no-such-root")]),  # no such root
        (16, ["bundle-add", "nope", *opts]),
        (16, ["bundle-remove", "os-core", *opts]),
        (7, ["update", "--version", "5", *opts]),
        (9, ["update", *opts[:-2], "--compat", "other"]),
        (12, ["update", *opts[:4], "--url", (tmp_path / "no-such-www").as_uri(), *opts[6:]]),
    ]
    (private_www / "20/Manifest.MoM.sig").write_bytes(b"garbage\n")
    cases.append((4, ["update", *opts[:4], "--url", private_www.as_uri(), *opts[6:]]))
    snap = device.snapshot()
    for code, args in cases:
        one_line_error(ck.run_process(*args), code)
    assert ck.diff_snapshots(snap, device.snapshot()) == ""


def test_locked(device: Device) -> None:
    os.makedirs(device.state, exist_ok=True)
    fd = os.open(Path(device.state, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        line = one_line_error(device.swupd_process("update"), 14)
        assert "another swupd is running" in line
    finally:
        os.close(fd)
    assert device.swupd_process("update").rc == 0


def test_main_can_be_called_twice_in_one_process(device: Device) -> None:
    from swupd import cli

    assert cli.main(["info", "--path", device.root, "--statedir", device.state, "--quiet"]) == 0
    assert cli.main(["info", "--path", device.root, "--statedir", device.state, "--quiet"]) == 0


def test_interrupted(device: Device, content: FaultServer) -> None:
    """Ctrl-C on a terminal. A suite started in the background of a shell without job control
    ignores SIGINT, and a child inherits that; a handled signal is reset on exec, so the
    command starts with SIGINT as a terminal gives it."""
    content.drip(50_000, path="/20/pack-os-core-from-10.tar")
    snap = device.snapshot()
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        p = subprocess.Popen([ck.SWUPD, "update", *device.opts()], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)  # fmt: skip
    finally:
        signal.signal(signal.SIGINT, inherited)
    deadline = time.monotonic() + 30
    while not content.requests("/20/pack-os-core-from-10.tar") and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    line = one_line_error(ck.Result(p.returncode, out, err), 130)
    assert line == "Error: interrupted"
    assert ck.diff_snapshots(snap, device.snapshot()) == ""


def json_records(out: str) -> list[dict]:
    records = [json.loads(line) for line in out.splitlines()]
    assert all(isinstance(r, dict) and "type" in r for r in records)
    return records


def test_json_output(device: Device, content: FaultServer) -> None:
    r = device.swupd("update", "--json")
    assert r.rc == 0, r.err
    recs = json_records(r.out)
    assert recs[0] == {"type": "start", "section": "update"}
    assert recs[-1] == {"type": "end", "section": "update", "status": 0}
    assert any(x["type"] == "info" and "Update successful" in x["msg"] for x in recs)
    r = device.swupd("check-update", "--json")
    recs = json_records(r.out)
    assert recs[-1] == {"type": "end", "section": "check-update", "status": 1}
    content.fail(404, times=None, path="/version/format1/latest")
    r = ck.run_process("update", "--json", *device.opts())
    assert r.rc == 12 and "Traceback" not in r.err
    recs = json_records(r.out)
    assert [x["type"] for x in recs] == ["start", "error", "end"]
    assert recs[-1] == {"type": "end", "section": "update", "status": 12}
    assert "not found" in recs[1]["msg"]


def test_verify_json_gives_its_findings_as_fields(device: Device) -> None:
    target = Path(device.root, "etc/motd")
    target.write_text("changed\n")
    Path(device.root, "usr/bin/stray").write_text("not ours\n")
    r = device.swupd("verify", "--json", "--picky")
    assert r.rc == 1, r.err
    result = next(x for x in json_records(r.out) if x["type"] == "result")
    assert result["version"] == 10 and result["checked"] > 30
    assert "/usr/bin/stray" in result["extra"] and result["missing"] == [] and result["fixed"] is False
    assert result["modified"] + result["config"] == ["/etc/motd"]
    r = device.swupd("verify", "--json", "--fix", "--picky")
    assert r.rc == 0, r.err
    assert next(x for x in json_records(r.out) if x["type"] == "result")["fixed"] is True


def test_json_progress_records(device: Device) -> None:
    r = device.swupd("update", "--json")
    recs = json_records(r.out)
    progress = [x for x in recs if x["type"] == "progress"]
    assert progress and {"stepDescription", "completion", "done", "total"} <= set(progress[0])


def test_quiet(device: Device, clone_device) -> None:
    twin = clone_device(device)
    loud = device.swupd("update")
    quiet = twin.swupd("update", "--quiet")
    assert loud.rc == quiet.rc == 0
    assert quiet.out.splitlines() == ["Update successful: system updated from version 10 to version 20"]
    assert len(loud.out.splitlines()) > len(quiet.out.splitlines())
    for dev in (device, twin):
        Path(dev.root, "usr/bin/cat").unlink()
    loud, quiet = device.swupd("verify"), twin.swupd("verify", "--quiet")
    assert loud.rc == quiet.rc == 1
    # What is wrong, and the summary, are the essential lines.
    assert quiet.out.splitlines() == ["Missing: /usr/bin/cat"] + [
        line for line in loud.out.splitlines() if line.startswith("Checked")
    ]
    r = twin.swupd("bundle-list", "--all", "--quiet")
    assert "(installed)" not in r.out and "os-core" in r.out.split()


def test_global_options_before_or_after_the_command(device: Device, content: FaultServer) -> None:
    after = ck.run("check-update", *device.opts())
    before = ck.run(*device.opts(), "check-update")
    assert (before.rc, before.out) == (after.rc, after.out) == (0, after.out)
    assert "20" in after.out
    # Given both ways, the one after the command wins: here a root that does not exist.
    both = ck.run(*device.opts(), "info", "--path", str(Path(device.root) / "nowhere"))
    assert both.rc != 0


def test_a_reader_that_goes_away_ends_the_command_quietly(device: Device) -> None:
    """`swupd info | head -1`: no "Broken pipe" error, the status a shell reports for it."""
    import subprocess

    read, write = os.pipe()
    os.close(read)  # the reader is gone before the command writes anything
    p = subprocess.run([ck.SWUPD, "info", *device.opts()], stdout=write, stderr=subprocess.PIPE, text=True)
    os.close(write)
    assert (p.returncode, p.stderr) == (141, "")


def test_a_root_that_does_not_exist(device: Device) -> None:
    r = ck.run("info", *device.opts()[2:], "--path", str(Path(device.root) / "nowhere"))
    assert "no such root" in r.error_line() and r.rc == 2


def test_verbose_and_log_file_show_requests_retries_and_decisions(
    device: Device, content: FaultServer, tmp_path: Path
) -> None:
    """A retry is shown as it happens; --verbose shows each request and which packs served the
    update; --log-file keeps all of it with times."""
    content.fail(503, times=1, path="/20/Manifest.MoM")
    log = tmp_path / "swupd.log"
    r = device.swupd("update", "--verbose", "--log-file", str(log))
    assert r.rc == 0, r.err
    assert "Warning: " in r.err and "/20/Manifest.MoM: " in r.err and "retrying in" in r.err
    assert "GET " in r.err and "pack-os-core-from-10.tar:" in r.err
    assert "Update successful" in r.out and "GET " not in r.out
    text = log.read_text()
    assert re.search(r"^\d{4}-\d\d-\d\d [0-9:,]+ WARNING swupd\.transport\.fetcher: .*retrying in", text, re.M), text
    assert re.search(r"INFO swupd\.ops\.obtain: 20/pack-os-core-from-10\.tar: \d+ bytes", text), text


def test_a_retry_is_shown_without_verbose(device: Device, content: FaultServer) -> None:
    content.fail(503, times=1, path="/20/Manifest.MoM")
    r = device.swupd("update")
    assert r.rc == 0, r.err
    assert "retrying in" in r.err and "GET " not in r.err

