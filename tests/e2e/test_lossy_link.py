"""Install, update and verify from a device behind a slow, lossy link, and through an outage.

The device is a network namespace whose only way to the content is a veth link that drops
packets at random and carries 8 Mbit/s (tests/support/netns.py); the suite's threaded HTTP
server serves www/ from the host end, and every `swupd` runs inside the namespace. Version 20
rewrites most of a few MB of incompressible files, so its delta pack takes seconds to arrive
and an outage can fall in the middle of it. The device's tree is compared with the build's input, file by file.
"""

from __future__ import annotations

import glob
import os
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import exampletree
import pytest
from support.httpserver import FaultServer
from support.netns import LossyLink
from support.oracle import read_tree

BIN = Path(sys.executable).parent
BUNDLES = Path(__file__).resolve().parents[2] / "examples" / "bundles.toml"
COMPAT = "e2e-lossy"
NEW_FILES = 3  # random files of 1 MiB, all but their first 64 KiB new in version 20
PACK = "/20/pack-os-core-from-10.tar"
OUTAGE_AT = 1 << 20  # bytes of the pack on the device when the link goes down
OUTAGE_SECONDS = 2.0


@dataclass
class Stream:
    www: Path
    pub: Path
    rootfs: dict[int, Path]


def _random_file(root: Path, rel: str, size: int, seed: int, changed: int = 0) -> None:
    """`size` random bytes, the last `changed` of them from another seed."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    data = random.Random(seed).randbytes(size - changed) + random.Random(-1 - seed).randbytes(changed)
    path.write_bytes(data)


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> Stream:
    """Versions 10 and 20 of the example OS with NEW_FILES random files; 20 replaces all but
    the first 64 KiB of each, so its delta pack carries deltas of almost NEW_FILES MiB that no
    compressor shrinks."""
    base = tmp_path_factory.mktemp("lossy-stream")
    key, pub, www = base / "key", base / "key.pub", base / "www"
    swupd_server("keygen", "--private", key, "--public", pub)
    rootfs = {}
    for version, variant in ((10, 1), (20, 2)):
        root = Path(exampletree.make_tree(str(base / f"rootfs-{version}"), variant))
        for i in range(NEW_FILES):
            _random_file(root, f"usr/share/firmware/blob-{i}.bin", 1 << 20, i, (15 << 16) if version == 20 else 0)
        swupd_server("create-update", "--www", www, "--rootfs", root, "--bundles", BUNDLES, "--version", version,
                     "--signing-key", key, "--compat", COMPAT)  # fmt: skip
        rootfs[version] = root
    return Stream(www, pub, rootfs)


def swupd_server(*args: object) -> None:
    r = subprocess.run([str(BIN / "swupd-server"), *map(str, args)], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr


class Device:
    """A target root and state directory whose `swupd` runs on the device's side of the link."""

    def __init__(self, base: Path, link: LossyLink, server: FaultServer, stream: Stream) -> None:
        self.root, self.state = base / "root", base / "state"
        self.link = link
        self.opts = ["--statedir", self.state, "--url", server.url().rstrip("/"), "--key", stream.pub,
                     "--format", "1", "--compat", COMPAT]  # fmt: skip

    def swupd(self, command: str, *args: object) -> subprocess.CompletedProcess:
        where = [self.root] if command == "os-install" else ["--path", self.root]
        argv = self.link.command(BIN / "swupd", command, *where, *args, *self.opts)
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert "Traceback" not in r.stderr, r.stderr
        return r


def assert_tree_is(device_root: Path, rootfs: Path, version: int) -> None:
    """The device holds exactly the input tree, but for what the build itself adds (the
    os-release that names the version and the installed-bundle markers) and the settings
    os-install keeps for it in /etc/swupd."""
    have, want = read_tree(str(device_root)), read_tree(str(rootfs))
    os_release = "/usr/lib/os-release"
    assert f"\nVERSION_ID={version}\n" in Path(device_root, os_release.lstrip("/")).read_text()
    problems = [f"{p}: missing" for p in sorted(set(want) - set(have))]
    problems += [f"{p}: differs" for p in sorted(set(want) & set(have)) if have[p] != want[p] and p != os_release]
    ours = ("/usr/share/clear", "/etc/swupd")
    problems += [f"{p}: not expected" for p in sorted(set(have) - set(want)) if not p.startswith(ours)]
    assert not problems, "tree differs from the input:\n" + "\n".join(problems[:40])


def install_update_verify(device: Device, stream: Stream, during_update: Outage | None = None) -> list[str]:
    """os-install 10, update to 20, verify; the tree checked after each step. Returns timings."""
    timings = []
    began = time.monotonic()
    r = device.swupd("os-install", "--version", "10", "--bundles", "app,app-docs")
    assert r.returncode == 0, r.stderr
    timings.append(f"os-install {time.monotonic() - began:.1f}s")
    assert_tree_is(device.root, stream.rootfs[10], 10)
    began = time.monotonic()
    if during_update:
        during_update.start()
    try:
        r = device.swupd("update")
    finally:
        if during_update:
            during_update.finish()
    timings.append(f"update {time.monotonic() - began:.1f}s")
    assert r.returncode == 0, r.stderr
    assert "to version 20" in r.stdout, r.stdout
    assert_tree_is(device.root, stream.rootfs[20], 20)
    r = device.swupd("verify")
    assert r.returncode == 0, r.stdout + r.stderr
    assert ": 0 missing, 0 modified, 0 extra" in r.stdout, r.stdout
    return timings


def report(link: LossyLink, server: FaultServer, timings: list[str]) -> None:
    """What the link did and how the client coped, for the test's captured output."""
    stats = link.stats()
    gets = server.requests(PACK, "GET")
    print(f"{link.mechanism}; down: {stats.down}; up: {stats.up}")
    print(f"{PACK}: {[(e.range, e.status) for e in gets]}; requests in all: {len(server.log)}")
    print("; ".join(timings))
    assert stats.down.dropped > 0, "the link dropped nothing: it is not lossy"


class Outage:
    """From a thread: once OUTAGE_AT bytes of the pack are on the device, the link goes down
    for OUTAGE_SECONDS, and (with `abort`) the device's connections are aborted meanwhile."""

    def __init__(self, link: LossyLink, state: Path, abort: bool) -> None:
        self.link, self.abort = link, abort
        self.parts = str(state / "download" / "*.part")
        self.done = threading.Event()
        self.at_bytes = self.aborted = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="outage", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def finish(self) -> None:
        self.done.set()
        self.thread.join()
        if self.error is not None:
            raise self.error

    def _received(self) -> int:
        sizes = [0]
        for part in glob.glob(self.parts):
            try:
                sizes.append(os.path.getsize(part))
            except FileNotFoundError:
                pass
        return max(sizes)

    def _run(self) -> None:
        try:
            while not self.done.is_set() and self._received() < OUTAGE_AT:
                time.sleep(0.02)
            if self.done.is_set():
                return
            self.at_bytes = self._received()
            self.link.set_carrier(False)
            try:
                if self.abort:
                    self.aborted = self.link.abort_connections()
                time.sleep(OUTAGE_SECONDS)
            finally:
                self.link.set_carrier(True)
        except BaseException as e:
            self.error = e


def test_install_update_verify_over_lossy_link(lossy_link: LossyLink, stream: Stream, tmp_path: Path) -> None:
    """Loss and a low rate alone: everything arrives, verified, with no help from the test."""
    with FaultServer(stream.www, host=lossy_link.host_addr) as server:
        device = Device(tmp_path, lossy_link, server, stream)
        timings = install_update_verify(device, stream)
    assert not server.errors, server.errors
    report(lossy_link, server, timings)


@pytest.mark.parametrize("abort", [False, True], ids=["stall", "connections-lost"])
def test_update_through_link_outage(lossy_link: LossyLink, stream: Stream, tmp_path: Path, abort: bool) -> None:
    """The link drops mid-pack. Alone, TCP rides that out; when the device's connections are
    lost as well, the client must retry and resume the pack with a Range request, not restart."""
    with FaultServer(stream.www, host=lossy_link.host_addr) as server:
        device = Device(tmp_path, lossy_link, server, stream)
        outage = Outage(lossy_link, device.state, abort)
        timings = install_update_verify(device, stream, during_update=outage)
    assert not server.errors, server.errors
    assert outage.at_bytes, "the pack arrived before the link could go down"
    timings.append(f"outage at {outage.at_bytes} bytes of the pack, {outage.aborted} connection(s) aborted")
    report(lossy_link, server, timings)
    if abort:
        assert outage.aborted >= 1
        resumed = [e for e in server.requests(PACK, "GET") if e.range and e.status == 206]
        assert resumed, f"the pack was not resumed: {server.requests(PACK)}"
        assert int(resumed[0].range.removeprefix("bytes=").rstrip("-")) >= OUTAGE_AT
