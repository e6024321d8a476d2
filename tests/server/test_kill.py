"""A build killed at any moment never leaves a half-published version.

The installed command builds a ~50 MB tree (the host's shared libraries) and is SIGKILLed,
with its worker processes, at different moments: early, once staging has begun, while
fullfiles are written, while packs are written. After each kill, `latest` (if any) must point
at a complete version whose signatures verify, and the killed version must not exist. Then a
normal build must succeed.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import exampletree
import pytest
import reader
from buildutil import SERVER, cli, create, create_args
from support.environment import unavailable

LIBDIR = "/usr/lib/x86_64-linux-gnu"
TARGET_BYTES = 50 * 1024 * 1024


def _big_tree(root: str) -> str:
    exampletree.make_tree(root, 1)
    dest = os.path.join(root, "usr/lib/extra")
    os.makedirs(dest)
    total = 0
    for path in sorted(glob.glob(os.path.join(LIBDIR, "*.so*"))):
        if os.path.islink(path) or not os.path.isfile(path) or os.path.getsize(path) > 6 * 1024 * 1024:
            continue
        shutil.copyfile(path, os.path.join(dest, os.path.basename(path)))
        total += os.path.getsize(path)
        if total >= TARGET_BYTES:
            break
    if total < TARGET_BYTES // 2:
        unavailable(f"not enough shared libraries in {LIBDIR} for a large tree ({total} bytes)")
    return root


@pytest.fixture(scope="module")
def big(tmp_path_factory, keys):
    d = tmp_path_factory.mktemp("kill")
    small = exampletree.make_tree(str(d / "small"), 1)
    www = str(d / "www")
    create(www, small, 1, keys.private)
    return www, _big_tree(str(d / "big"))


def _stage(www: str, version: int) -> str:
    return os.path.join(www, f".stage-{version}")


def _triggers(www: str, version: int) -> list[tuple[str, object]]:
    stage = _stage(www, version)
    files = os.path.join(stage, str(version), "files")
    return [
        ("early", lambda: True),
        ("staging begun", lambda: os.path.isdir(stage)),
        ("fullfiles", lambda: os.path.isdir(files) and len(os.listdir(files)) >= 40),
        ("packs", lambda: bool(glob.glob(os.path.join(stage, str(version), "pack-*")))),
        ("late fullfiles", lambda: os.path.isdir(files) and len(os.listdir(files)) >= 150),
    ]


def _check_invariants(www: str, public: bytes, attempted: int) -> int:
    w = reader.Www(www, public)
    latest = w.latest(1).version  # latest.sig verifies
    reader.check_version(w, latest, fullfiles=False)
    reader.check_version(w, 1, fullfiles=False)
    if latest != attempted:
        assert not os.path.exists(os.path.join(www, str(attempted))), (
            f"version {attempted} exists but latest points at {latest}"
        )
    return latest


def test_killed_builds_never_half_publish(big, keys):
    www, root = big
    rng = random.Random(os.getpid())
    version = 2
    outcomes = []
    for name, ready in _triggers(www, version):
        args = create_args(www, root, version, keys.private)
        proc = subprocess.Popen(
            [SERVER, *args], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        extra = rng.uniform(0.0, 0.15)
        try:
            while proc.poll() is None and not ready() and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(extra)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        killed = proc.returncode == -signal.SIGKILL
        outcomes.append((name, round(extra, 3), "killed" if killed else f"exited {proc.returncode}"))
        latest = _check_invariants(www, keys.raw, version)
        if latest == version:
            version += 1
    print("kill outcomes (trigger, extra delay, result):", outcomes)
    assert sum(1 for o in outcomes if o[2] == "killed") >= 3, outcomes
    r = subprocess.run([SERVER, *create_args(www, root, version, keys.private)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    w = reader.Www(www, keys.raw)
    assert w.latest(1).version == version
    bundles = reader.check_version(w, version, fullfiles=True)
    entries = {e.path for m in bundles.values() for e in m.present()}
    assert b"/usr/lib/extra" in entries
    assert not glob.glob(os.path.join(www, ".stage-*")), outcomes


def _run_killed_at(function: str, www: str, args: list[str]) -> subprocess.CompletedProcess:
    """Run create-update in a subprocess that SIGKILLs itself when `function` is called."""
    module, name = function.rsplit(".", 1)
    code = (
        "import os, signal, sys\n"
        f"import {module} as target\n"
        "def die(*args, **kwargs):\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        f"target.{name} = die\n"
        "from swupd_server.cli import main\n"
        f"sys.exit(main({args!r}))\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_kill_between_rename_and_latest(stream, tmp_path):
    www = shutil.copytree(stream.www, str(tmp_path / "www"), symlinks=True)
    args = create_args(www, stream.rootfs[20], 30, stream.keys.private)
    p = _run_killed_at("swupd_server.publish.write_latest", www, args)
    assert p.returncode == -signal.SIGKILL
    latest = reader.Www(www, stream.keys.raw).latest(1).version
    assert latest == 20
    # Version 30 may sit complete but unreferenced; the next build replaces it.
    assert cli(*args).rc == 0
    assert reader.Www(www, stream.keys.raw).latest(1).version == 30


def test_next_build_removes_a_killed_builds_stage(stream, tmp_path):
    www = shutil.copytree(stream.www, str(tmp_path / "www"), symlinks=True)
    p = _run_killed_at("swupd_server.packs.build", www, create_args(www, stream.rootfs[20], 30, stream.keys.private))
    assert p.returncode == -signal.SIGKILL
    assert os.path.isdir(_stage(www, 30))
    assert cli(*create_args(www, stream.rootfs[20], 31, stream.keys.private)).rc == 0
    assert reader.Www(www, stream.keys.raw).latest(1).version == 31
    assert not glob.glob(os.path.join(www, ".stage-*")), os.listdir(www)


def _group(pgid: int) -> list[int]:
    """Live processes of a process group (zombies excepted)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(name))
    return found


def _children(pid: int) -> list[int]:
    out = []
    for task in glob.glob(f"/proc/{pid}/task/*/children"):
        with contextlib.suppress(OSError), open(task) as f:
            out += [int(c) for c in f.read().split()]
    return out


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_a_signal_to_the_main_process_stops_the_workers(big, keys, signum, tmp_path):
    """SIGTERM or SIGINT to the build's main process alone (as CI runners and systemd send it)
    while its workers are busy: within seconds no process of the build is left, the stage
    directory is gone, the lock is free and `latest` is unchanged; one line says why. After
    SIGKILL the main process can do nothing, but its workers die with it all the same and hold
    no lock (the next build removes the stage)."""
    root = big[1]
    www = str(tmp_path / "www")  # a stream without the big tree, so that its fullfiles are all new
    create(www, exampletree.make_tree(str(tmp_path / "small"), 1), 1, keys.private)
    version = 2
    files = os.path.join(_stage(www, version), str(version), "files")
    proc = subprocess.Popen(
        [SERVER, *create_args(www, root, version, keys.private)],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            busy = os.path.isdir(files) and len(os.listdir(files)) >= 20
            if busy and len(_children(proc.pid)) >= 2:
                break
            time.sleep(0.005)
        assert proc.poll() is None, "the build ended before its workers were busy"
        workers = _children(proc.pid)
        os.kill(proc.pid, signum)
        started = time.monotonic()
        err = proc.communicate(timeout=30)[1]
        took = time.monotonic() - started
        deadline = time.monotonic() + 5
        while _group(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = _group(proc.pid)
    finally:
        if proc.poll() is None or _group(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    print(f"{signum.name}: {len(workers)} workers, stopped in {took:.2f}s")
    assert not left, f"processes of the build still run: {left}"
    assert took < 5, f"the build took {took:.1f}s to stop"
    if signum == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 128 + signum, (proc.returncode, err)
        assert err.strip() == f"swupd-server: stopped by {signum.name}", err
        assert not glob.glob(os.path.join(www, ".stage-*")), os.listdir(www)
    fd = os.open(os.path.join(www, ".lock"), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if anything still holds it
    finally:
        os.close(fd)
    assert _check_invariants(www, keys.raw, version) == version - 1
