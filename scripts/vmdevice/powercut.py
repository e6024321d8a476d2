"""Power cuts during an update, on the test device in QEMU.

Each trial boots version 10 from a fresh copy of the disk, starts `swupd update` (to 20, served
by nginx) and kills QEMU with SIGKILL at an instant drawn from the whole update: the guest loses
its page cache as in a power cut. The instants are stratified fractions of D, the length of an
uninterrupted update (from the command's start to the end of its final sync, journal renames
and post-update hooks included), so even a few trials spread over every phase. D is measured
once first and then follows the updates the trials themselves run (`Length`): on a loaded host
updates take longer, and a fixed D would put every cut before the commit.
Then the device boots again and must:
- come up (`booted`);
- after its first swupd command (`swupd verify`, which finishes an interrupted transaction
  first), be at 10 or 20 with `verify` clean, and with a tree that equals that version exactly,
  as an independent walk of the tree compares it with the version's own root file system
  (`mixed` if it equals neither);
- if at 10, update to 20 on request and verify clean; then reboot into version 20's kernel
  (the boot files the hook rewrote must boot): `clean` when all of this holds, else `failed`.

The limit: SIGKILL of QEMU loses what the guest had not yet sent to its virtual disk, but what
it had sent stays in the host's page cache even when the guest never asked for a flush, which a
real disk's volatile cache might lose. docs/benchmarks.md says what that leaves uncovered.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from swupd.format.paths import BOOT_PREFIXES

from . import image as img
from .runner import Device, DeviceError
from .serve import Server

# What the tree comparison leaves out: file systems mounted at run time, the device's state and
# logs (the client never overwrites /var), the ESP, and what the running system writes itself.
SKIP_TOP = ("dev", "proc", "sys", "run", "tmp", "var", "root", "home", "efi", "lost+found", "media", "mnt", "srv")
SKIP_FILES = ("etc/ld.so.cache",)
# Boot content an update keeps as the way back (listing paths are relative to /).
KEPT_BOOT = tuple(p.lstrip("/") for p in BOOT_PREFIXES)

WALK = r"""
import hashlib, os, stat, sys
root = sys.argv[1]
skip_top = set(sys.argv[2].split(","))
skip_files = set(sys.argv[3].split(","))
out = []
for d, dirs, files in os.walk(root):
    rel_d = os.path.relpath(d, root)
    if rel_d == ".":
        dirs[:] = [x for x in dirs if x not in skip_top]
    for name in sorted(dirs + files):
        p = os.path.join(d, name)
        rel = os.path.normpath(os.path.join(rel_d, name))
        if rel in skip_files:
            continue
        st = os.lstat(p)
        if stat.S_ISLNK(st.st_mode):
            what = "l " + os.readlink(p)
        elif stat.S_ISREG(st.st_mode):
            h = hashlib.sha256()
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            what = "f " + h.hexdigest()
        elif stat.S_ISDIR(st.st_mode):
            what = "d"
        else:
            what = "s"
        out.append("%s\t%o\t%d\t%d\t%s" % (rel, st.st_mode, st.st_uid, st.st_gid, what))
print("\n".join(out))
"""


def listing(text: str) -> dict[str, str]:
    return {line.split("\t", 1)[0]: line.split("\t", 1)[1] for line in text.splitlines() if "\t" in line}


def _args() -> list[str]:
    return [",".join(SKIP_TOP), ",".join(SKIP_FILES)]


def host_listing(tree: Path) -> dict[str, str]:
    r = subprocess.run([sys.executable, "-c", WALK, str(tree), *_args()], capture_output=True, text=True, check=True)
    return listing(r.stdout)


def device_listing(dev: Device) -> dict[str, str]:
    code = WALK.replace("'", "'\\''")
    r = dev.ssh(f"python3 -c '{code}' / {' '.join(_args())}", timeout=900)
    return listing(r.stdout)


def compare(found: dict[str, str], want: dict[str, str], older: dict[str, str]) -> list[str]:
    """Differences between the device's tree and a version's; a Python byte-code cache the
    running system wrote, and the older kernel that updates keep as the way back, are not."""
    problems = []
    for path in sorted(set(found) | set(want)):
        if found.get(path) == want.get(path):
            continue
        if path not in want and ("/__pycache__/" in f"/{path}" or path.endswith("/__pycache__")):
            continue
        if path not in want and path.startswith(KEPT_BOOT) and found.get(path) == older.get(path):
            continue
        problems.append(f"{path}: device {found.get(path, 'absent')}, version {want.get(path, 'absent')}")
    return problems


class Length:
    """How long an uninterrupted update takes, as last seen: first measured alone, then each
    trial left at version 10 times the update it runs after the reboot. Cut instants are
    fractions of it, so on a loaded host, where updates take longer, the cuts still spread over
    the whole update instead of all falling before its commit."""

    def __init__(self, first: float) -> None:
        self._seen = [first]
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self._seen = [*self._seen[-4:], seconds]

    def now(self) -> float:
        with self._lock:
            return statistics.median(self._seen)


@dataclass
class Trial:
    at: float
    booted: bool = False
    state: str = "failed"  # clean, mixed or failed
    version: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def measure_update(image: img.Image, work: Path) -> float:
    """Seconds one uninterrupted update takes, from the command's start to the end of its sync."""
    dev = Device(image, work)
    try:
        dev.boot()
        started = time.monotonic()
        dev.ssh("swupd update --quiet && sync")
        return time.monotonic() - started
    finally:
        dev.shutdown()


def trial(image: img.Image, work: Path, fraction: float, length: Length, refs: dict[int, dict[str, str]]) -> Trial:
    t = Trial(fraction * length.now())
    started = time.monotonic()
    dev = Device(image, work)
    try:
        dev.boot()
        cmd = dev.start("swupd update")
        time.sleep(t.at)
        dev.power_cut()
        cmd.wait()
        return examine(image, dev, t, refs, length)
    except DeviceError as e:
        t.notes.append(str(e))
        return t
    finally:
        dev.power_cut()
        t.seconds = time.monotonic() - started


def examine(image: img.Image, dev: Device, t: Trial, refs: dict[int, dict[str, str]], length: Length) -> Trial:
    """Everything after the cut: boot, the first swupd command, the tree, the update on request
    and the reboot into version 20's kernel."""
    try:
        try:
            dev.boot()
        except DeviceError as e:
            t.notes.append(f"no boot after the cut: {e}")
            return t
        t.booted = True
        first = dev.ssh("swupd verify", check=False)
        t.version = int(dev.ssh("sed -n 's/^VERSION_ID=//p' /usr/lib/os-release").stdout.strip() or 0)
        if t.version not in (10, 20):
            t.state = "mixed"
            t.notes.append(f"VERSION_ID {t.version}")
            return t
        problems = compare(device_listing(dev), refs[t.version], refs[10])
        if problems:
            t.state = "mixed"
            t.notes += problems[:10]
            return t
        if first.returncode != 0:
            t.notes.append(f"first swupd command failed: {(first.stdout + first.stderr)[-800:]}")
            return t
        if t.version == 10:
            began = time.monotonic()
            dev.ssh("swupd update --quiet && sync")
            length.add(time.monotonic() - began)
            dev.ssh("swupd verify")
        kernel = dev.ssh("uname -r").stdout.strip()
        dev.reboot()
        now = dev.ssh("uname -r; sed -n 's/^VERSION_ID=//p' /usr/lib/os-release").stdout.split()
        want = img.kernel_release(image.tree(20))
        if now != [want, "20"]:
            t.notes.append(f"after the reboot: kernel {now[0]} (want {want}), VERSION_ID {now[1:]}, before {kernel}")
            return t
        t.state = "clean"
        return t
    except DeviceError as e:
        t.notes.append(str(e))
        return t


def recheck(trial_dir: Path, log=print) -> Trial:
    """Examine a failed trial's disk again, as it was left after its cut (a boot that failed for
    a reason of its own, say, gets another chance); needs the image the run used, so before the
    image is rebuilt."""
    image = img.Image(img.cache_dir() / "image")
    refs = {v: host_listing(image.tree(v)) for v in (10, 20)}
    srv = Server(image, Path(tempfile.mkdtemp(prefix="recheck-")), 20)
    dev = Device(image, trial_dir)
    try:
        t = examine(image, dev, Trial(0.0), refs, Length(0.0))
    finally:
        dev.power_cut()
        srv.stop()
    log(f"powercut: recheck of {trial_dir}: {t.state}, version {t.version}" + "".join(f"\n    {n}" for n in t.notes))
    return t


def run(trials: int, seed: int, workdir: Path | None = None, log=print, jobs: int = 1) -> list[Trial]:
    """`jobs` devices at a time (each boots with its own disk and ssh port; one nginx serves
    version 20 to all of them)."""
    image = img.build(log=lambda m: log(f"powercut: {m}"))
    base = Path(tempfile.mkdtemp(prefix="powercut-", dir=workdir))
    refs = {v: host_listing(image.tree(v)) for v in (10, 20)}
    srv = Server(image, base / "server", 20)
    try:
        first = measure_update(image, base / "measure")
        log(f"powercut: an uninterrupted update takes {first:.1f} s; {trials} trials, seed {seed}")
        length = Length(first)
        rng = random.Random(seed)
        fractions = [(i + rng.random()) / trials for i in range(trials)]
        rng.shuffle(fractions)

        def one(i: int) -> Trial:
            t = trial(image, base / f"trial-{i}", fractions[i], length, refs)
            log(f"powercut: trial {i + 1}: cut at {t.at:5.1f} s ({fractions[i]:.2f} of the update): {t.state}, "
                f"version {t.version}, {t.seconds:.0f} s"
                + "".join(f"\n    {n}" for n in t.notes))  # fmt: skip
            if t.state == "clean":
                shutil.rmtree(base / f"trial-{i}", ignore_errors=True)
            return t

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            try:
                return list(pool.map(one, range(trials)))
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                for dev in list(Device.live):
                    dev.power_cut()  # the running trials then end at once
                raise
    finally:
        srv.stop()


def summary(results: list[Trial]) -> str:
    n = len(results)
    booted = sum(t.booted for t in results)
    clean = sum(t.state == "clean" for t in results)
    mixed = sum(t.state == "mixed" for t in results)
    return f"powercut: {n} trials, {booted} booted, {clean} clean, {mixed} mixed, {n - clean - mixed} failed"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="powercut", description="cut the test device's power during updates")
    p.add_argument("--trials", type=int, default=10, help="number of power cuts (default 10)")
    p.add_argument("--seed", type=int, default=int(time.time()), help="seed of the instants (default: the time)")
    p.add_argument("--workdir", type=Path, help="where the trials' disks go (default: the system's temp dir)")
    p.add_argument("--jobs", type=int, default=1, help="devices running at once (default 1)")
    p.add_argument("--recheck", type=Path, metavar="TRIAL_DIR", help="examine a failed trial's disk again, and stop")
    args = p.parse_args(argv)
    if args.recheck:
        return 0 if recheck(args.recheck).state == "clean" else 1
    if args.trials < 1 or args.jobs < 1:
        p.error("--trials and --jobs must be at least 1")
    results = run(args.trials, args.seed, args.workdir, log=lambda m: print(m, flush=True), jobs=args.jobs)
    print(summary(results), flush=True)
    return 0 if all(t.state == "clean" for t in results) else 1
