"""autoupdate and mirror: settings written into the target root, and used."""

from __future__ import annotations

import os
from pathlib import Path

import clientkit as ck
from clientkit import Device
from support.httpserver import FaultServer

WANTS = "etc/systemd/system/timers.target.wants/swupd-update.timer"
MASK = "etc/systemd/system/swupd-update.timer"
UNITS = "usr/lib/systemd/system"


def autoupdate(dev: Device, *args: str) -> ck.Result:
    return ck.run("autoupdate", *args, "--path", dev.root, "--statedir", dev.state)


def test_autoupdate_enable_disable_status(device: Device) -> None:
    root = Path(device.root)
    host_wants = Path("/", WANTS)
    host_had = os.path.lexists(host_wants)
    r = autoupdate(device)
    assert r.rc == 1 and "Automatic updates are disabled" in r.out
    r = autoupdate(device, "--enable")
    assert r.rc == 0 and "Automatic updates are enabled" in r.out, r.err
    # The example image ships no units, so they go to /etc, where verify --picky leaves them.
    assert os.readlink(root / WANTS) == "../swupd-update.timer"
    for unit in ("swupd-update.service", "swupd-update.timer"):
        assert (root / "etc/systemd/system" / unit).read_bytes(), unit
    assert autoupdate(device).rc == 0
    r = autoupdate(device, "--disable")
    assert r.rc == 0 and "Automatic updates are disabled" in r.out
    assert not os.path.lexists(root / WANTS)
    assert (root / "etc/systemd/system/swupd-update.timer").is_file()
    r = autoupdate(device)
    assert r.rc == 1 and "disabled" in r.out
    r = autoupdate(device, "--enable")
    assert r.rc == 0 and os.path.islink(root / WANTS)
    assert os.path.lexists(host_wants) == host_had, "the host's own systemd configuration was touched"


def test_autoupdate_units_survive_a_picky_repair(device: Device) -> None:
    assert autoupdate(device, "--enable").rc == 0
    r = device.swupd("repair", "--picky")
    assert r.rc == 0
    assert os.path.exists(Path(device.root, WANTS)), "the enabled timer points at a unit repair --picky removed"


def test_mirror_set_is_used_and_unset(v10_all: Device, clone_device, stream: ck.Stream) -> None:
    with FaultServer(stream.www) as origin, FaultServer(stream.www) as mirror:
        dev = clone_device(v10_all, origin.url())
        etc = Path(dev.root, "etc/swupd")
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "versionurl").write_text(origin.url() + "\n")
        (etc / "contenturl").write_text(origin.url() + "\n")
        opts = ["--path", dev.root, "--statedir", dev.state, "--key", stream.key, "--format", "1"]
        r = ck.run("mirror", "--set", mirror.url(), *opts)
        assert r.rc == 0 and f"Mirror set to {mirror.url()}" in r.out, r.err
        assert (etc / "mirror_versionurl").read_text().strip() == mirror.url().rstrip("/")
        assert (etc / "mirror_contenturl").read_text().strip() == mirror.url().rstrip("/")
        r = ck.run("update", *opts)
        assert r.rc == 0, r.err
        assert ck.os_release_version(dev.root) == 20
        assert mirror.requests("/version/format1/latest") and mirror.requests("/20/Manifest.MoM")
        assert origin.log == [], "the origin was used despite the mirror"
        r = ck.run("mirror", "--unset", *opts)
        assert r.rc == 0 and "Mirror unset" in r.out
        assert not (etc / "mirror_versionurl").exists() and not (etc / "mirror_contenturl").exists()
        mirror.clear_log()
        r = ck.run("check-update", *opts)
        assert r.rc == 1, r.err
        assert origin.requests("/version/format1/latest") and mirror.log == []


def test_mirror_refuses_other_schemes(device: Device) -> None:
    r = ck.run("mirror", "--set", "ftp://example.com/", "--path", device.root, "--statedir", device.state)
    assert r.rc == 2 and "http(s):// or file://" in r.error_line()
    assert not Path(device.root, "etc/swupd/mirror_versionurl").exists()


def test_a_format_file_that_is_no_number_is_named(device: Device) -> None:
    """A digit that is not a decimal number (here a superscript two) is refused in one line,
    naming the file's content, not with a traceback."""
    etc = Path(device.root, "etc/swupd")
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "format").write_text("\u00b2\n")
    r = ck.run("info", "--path", device.root, "--statedir", device.state)
    assert r.rc == 2 and "format file holds '²', not a number" in r.error_line()
