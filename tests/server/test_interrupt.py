"""A build stopped at every instant of its publishing, and at instants of every stage before.

The build runs in a process that sends a signal to itself just before its K-th change to the
file system (a file opened for writing, a rename, a link, a directory made or removed), counted
from the moment the stage begins; K takes every value the stage has. After each stop `www/`
must be whole for devices (`latest` verifies with `latest.sig` and what it points to is
complete; a published key introduction has its signature), the lock is free, and the next
build succeeds.
"""

from __future__ import annotations

import fcntl
import glob
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest
import reader
from buildutil import cli, copy_www, create_args
from support import oracle

# Runs `swupd-server ARGS`, sending SIG to its own main process before its K-th change to the
# file system made while ARM (a dotted function name, or "-": the whole command) runs; prints
# how many such changes there were.
STOPPER = r"""
import importlib, os, sys
K, SIG, ARM = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
main_pid = os.getpid()
state = {"n": 0, "armed": ARM == "-"}
CHANGES = {"os.rename", "os.remove", "os.rmdir", "os.mkdir", "os.link", "os.symlink", "shutil.rmtree", "os.chmod"}
WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

def hook(event, args):
    if not state["armed"] or os.getpid() != main_pid:
        return
    if event in CHANGES or (event == "open" and isinstance(args[2], int) and args[2] & WRITE):
        state["n"] += 1
        if state["n"] == K:
            os.kill(main_pid, SIG)

sys.addaudithook(hook)
if ARM != "-":
    module, name = ARM.rsplit(".", 1)
    target = importlib.import_module(module)
    original = getattr(target, name)

    def armed(*args, **kwargs):
        state["armed"] = True
        try:
            return original(*args, **kwargs)
        finally:
            state["armed"] = False

    setattr(target, name, armed)
from swupd_server.cli import main
rc = main(sys.argv[4:])
sys.stderr.write(f"changes: {state['n']}\n")
sys.exit(rc)
"""


def _stopped_at(script: str, k: int, signum: int, arm: str, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, script, str(k), str(signum), arm, *args], capture_output=True, text=True, timeout=120
    )


def _changes(script: str, arm: str, args, base: str, tmp_path) -> int:
    """How many changes a build of `args(www)` on a copy of `base` makes while `arm` runs (the
    second of two builds, which finds the build cache as the stopped ones will)."""
    for n in range(2):
        p = _stopped_at(script, 0, 0, arm, args(copy_www(base, str(tmp_path / f"dry-{n}"))))
        assert p.returncode == 0, p.stderr
    return int(re.findall(r"^changes: (\d+)$", p.stderr, re.M)[-1])


@pytest.fixture
def stopper(tmp_path) -> str:
    path = tmp_path / "stopper.py"
    path.write_text(STOPPER)
    return str(path)


def _lock_is_free(www: str) -> None:
    fd = os.open(os.path.join(www, ".lock"), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if anything still holds it
    finally:
        os.close(fd)


def _whole(www: str, public: bytes, fmt: int) -> int:
    """The version format `fmt`'s `latest` points at (0: none), checked whole for devices."""
    if not os.path.exists(os.path.join(www, f"version/format{fmt}/latest")):
        return 0
    w = reader.Www(www, public)
    version = w.latest(fmt).version  # verifies with latest.sig
    reader.check_version(w, version, fullfiles=True)
    return version


def _introductions_whole(www: str, public: bytes) -> None:
    for pub in glob.glob(os.path.join(www, "keys", "*.pub")):
        with open(pub, "rb") as f, open(pub + ".sig", "rb") as g:
            oracle.verify(f.read(), g.read(), public)


def _after_a_stop(p: subprocess.CompletedProcess, signum: int, www: str) -> None:
    if signum == signal.SIGKILL:
        assert p.returncode == -signal.SIGKILL, p.stderr
    else:
        assert p.returncode == 128 + signum, p.stderr
        assert p.stderr.splitlines()[0] == f"swupd-server: stopped by {signal.Signals(signum).name}", p.stderr
        assert not glob.glob(os.path.join(www, ".stage-*")), os.listdir(www)
    _lock_is_free(www)


def _new_key(tmp_path) -> tuple[str, bytes]:
    private = str(tmp_path / "new.key")
    assert cli("keygen", "--private", private, "--public", private + ".pub").rc == 0
    return private, oracle.load_key(private + ".pub")


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_a_formats_first_pointer_never_lacks_its_signature(stream, tmp_path, stopper, signum):
    """The move to a new format publishes that format's first `latest`: at no instant may it
    stand without a `latest.sig` that verifies it (devices of the new format would refuse the
    stream, and the server took the version as published)."""
    base = copy_www(stream.www, str(tmp_path / "base"))
    cache = str(tmp_path / "cache")

    def args(www: str) -> list[str]:
        return create_args(www, stream.rootfs[10], 30, stream.keys.private, stream.bundles, "--format", 2,
                           "--cache-dir", cache)  # fmt: skip

    total = _changes(stopper, "swupd_server.publish.publish", args, base, tmp_path)
    for k in range(1, total + 1):
        www = copy_www(base, str(tmp_path / f"www-{k}"))
        p = _stopped_at(stopper, k, signum, "swupd_server.publish.publish", args(www))
        _after_a_stop(p, signum, www)
        assert _whole(www, stream.keys.raw, 1) == 20
        assert _whole(www, stream.keys.raw, 2) in (0, 30), k
        shutil.rmtree(www)


@pytest.mark.parametrize(
    "signum, arm",
    [
        (signal.SIGKILL, "swupd_server.publish.publish"),
        (signal.SIGTERM, "swupd_server.publish.publish"),
        (signal.SIGINT, "swupd_server.publish.publish"),
        (signal.SIGTERM, "-"),
    ],
)
def test_a_rotation_stopped_at_any_instant(stream, tmp_path, stopper, signum, arm):
    """A rotation build (new key, introduction, latest) stopped before each of its changes to
    the file system while it publishes (or, for the whole build, at every third): `www/` whole
    for devices of the old key, no introduction without its signature, the lock free, and the
    rotation run again (or, once it was published, the next version) succeeds."""
    new_private, new_public = _new_key(tmp_path)
    base = copy_www(stream.www, str(tmp_path / "base"))
    cache = str(tmp_path / "cache")

    def rotation(www: str) -> list[str]:
        return create_args(www, stream.rootfs[10], 30, new_private, stream.bundles, "--rotate-key",
                           stream.keys.private, "--cache-dir", cache)  # fmt: skip

    total = _changes(stopper, arm, rotation, base, tmp_path)
    instants = range(1, total + 1) if arm != "-" else range(1, total + 1, 3)
    for k in instants:
        www = copy_www(base, str(tmp_path / f"www-{k}"))
        p = _stopped_at(stopper, k, signum, arm, rotation(www))
        _after_a_stop(p, signum, www)
        published = _whole(www, stream.keys.raw, 1)
        assert published in (20, 30), k
        _introductions_whole(www, stream.keys.raw)
        if published == 20:
            r = cli(*rotation(www))
        else:
            r = cli(*create_args(www, stream.rootfs[20], 40, new_private, stream.bundles, "--cache-dir", cache))
        assert r.rc == 0, (k, r.err)
        assert _whole(www, new_public, 1) in (30, 40)
        _introductions_whole(www, stream.keys.raw)
        assert os.path.exists(os.path.join(www, "keys", f"{oracle.keyid(new_public)}.pub.sig")), k
        assert not glob.glob(os.path.join(www, ".stage-*")), os.listdir(www)
        shutil.rmtree(www)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL])
def test_an_abandoned_rotation_introduces_no_key(stream, tmp_path, stopper, signum):
    """A rotation stopped once its introduction was published but before its version was (a
    wrong key noticed, Ctrl-C), then given up: the next build, with the stream's own key,
    withdraws the introduction, so no device learns a key that never signed the stream."""
    wrong_private, wrong_public = _new_key(tmp_path)
    wrong = oracle.keyid(wrong_public)
    www = copy_www(stream.www, str(tmp_path / "www"))
    args = create_args(www, stream.rootfs[10], 30, wrong_private, stream.bundles, "--rotate-key", stream.keys.private)
    p = _stopped_at(stopper, 1, signum, "swupd_server.publish.write_latest", args)
    _after_a_stop(p, signum, www)
    intro = os.path.join(www, "keys", f"{wrong}.pub")
    assert os.path.exists(intro) and os.path.exists(intro + ".sig")  # published before the version
    assert _whole(www, stream.keys.raw, 1) == 20

    r = cli(*create_args(www, stream.rootfs[10], 30, stream.keys.private, stream.bundles))
    assert r.rc == 0, r.err
    assert _whole(www, stream.keys.raw, 1) == 30
    assert not os.path.exists(intro) and not os.path.exists(intro + ".sig"), os.listdir(os.path.dirname(intro))
