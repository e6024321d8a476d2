"""Nothing another user can change is read, moved or run by root: the swupd command, run as
root, against trees, state directories and hooks prepared or opened up by an unprivileged user
(`nobody`)."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
from collections.abc import Callable
from pathlib import Path

import clientkit as ck
import pytest
from clientkit import Device
from support.environment import require_root
from support.httpserver import FaultServer
from swupd import ownership
from swupd.format.errors import UnsafePathError


@pytest.fixture(autouse=True)
def _as_root() -> None:
    require_root("needs root to prepare files as another user")


NOBODY = pwd.getpwnam("nobody").pw_uid if os.geteuid() == 0 else 65534


def give(path: Path, uid: int = NOBODY) -> None:
    """chown -R, links included."""
    os.lchown(path, uid, uid)
    for dirpath, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(dirpath, name), uid, uid)


def hook_writing(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho ran > {marker}\n")
    path.chmod(0o755)
    return path


def journal_moving(statedir: Path, source: Path) -> None:
    """A pending journal whose one action moves `source` (a host path) to /stolen in the tree."""
    statedir.mkdir(parents=True, exist_ok=True)
    data = {"version": 10, "stage": "", "aside": "", "actions": [["mv", str(source), "/stolen"]]}
    (statedir / "journal").write_text(json.dumps(data))


def refused(r: ck.Result, word: str, *more: str) -> str:
    line = r.error_line()
    assert r.rc == 2, (r.rc, r.err)
    for w in (word, *more):
        assert w in line, line
    return line


def server_opts(stream: ck.Stream) -> list[str]:
    return ["--url", Path(stream.www).as_uri(), "--key", stream.key, "--format", "1", "--compat", ck.COMPAT]


# -- a prepared directory -----------------------------------------------------------------------


@pytest.mark.parametrize("where", ["os-install", "update --path", "update --statedir"])
def test_a_prepared_directory_runs_and_moves_nothing_as_root(stream: ck.Stream, tmp_path: Path, where: str) -> None:
    """The user's tree (or state directory) holds a post-update hook, a hooks-pending marker and
    a journal that moves a root-only file into it: none of it may be acted on."""
    marker, secret = tmp_path / "marker", tmp_path / "secret"
    secret.write_text("root's only")
    secret.chmod(0o600)
    prep = tmp_path / "prep"
    hook_writing(prep / "etc/swupd/post-update.d/10-evil", marker)
    if where == "update --statedir":
        root, state = tmp_path / "root", prep / "state"
        root.mkdir()
        hook_writing(root / "etc/swupd/post-update.d/10-own", marker)
        args = ["update", "--path", root, "--statedir", state]
    else:
        root, state = prep, prep / "var/lib/swupd"
        args = ["os-install", prep] if where == "os-install" else ["update", "--path", prep]
    journal_moving(state, secret)
    (state / "hooks-pending").write_text("1\n")
    give(prep)
    before = ck.snapshot(str(prep))
    r = ck.run_process(*args, *server_opts(stream))
    assert not marker.exists(), "the user's hook ran as root"
    assert secret.read_text() == "root's only" and not (root / "stolen").exists(), "root moved its file for them"
    refused(r, "owned by uid 65534")
    assert ck.diff_snapshots(before, ck.snapshot(str(prep))) == ""


# -- ROOT and the directories above it -----------------------------------------------------------

SPOIL: dict[str, Callable[[Path], str]] = {
    "root world-writable": lambda p: (p.chmod(0o777), "it is writable by others")[1],
    "root group-writable": lambda p: (p.chmod(0o775), "it is writable by its group")[1],
    "root not root's": lambda p: (os.chown(p, NOBODY, NOBODY), "it is owned by uid 65534")[1],
    "parent world-writable": lambda p: (p.parent.chmod(0o777), f"{p.parent} is writable by others")[1],
    "parent not root's": lambda p: (os.chown(p.parent, NOBODY, NOBODY), f"{p.parent} is owned by uid 65534")[1],
    "user's sticky parent": lambda p: (
        p.parent.chmod(0o1777),
        os.chown(p.parent, NOBODY, NOBODY),
        f"{p.parent} is owned by uid 65534",
    )[2],
}


@pytest.mark.parametrize("spoil", SPOIL)
def test_a_root_others_can_change_is_refused(device: Device, content: FaultServer, spoil: str) -> None:
    why = SPOIL[spoil](Path(device.root))
    before = device.snapshot()
    for command in ("update", "info"):
        r = device.swupd_process(command)
        refused(r, f"refusing ROOT {device.root}:", why)
    assert ck.diff_snapshots(before, device.snapshot()) == ""
    assert device.version() == 10 and not content.log


def test_a_sticky_parent_of_root_s_is_accepted(device: Device) -> None:
    """Like /tmp: nobody can rename or remove another user's entries there."""
    Path(device.root).parent.chmod(0o1777)
    r = device.swupd_process("update")
    assert r.rc == 0, r.err
    assert device.version() == 20
    Path(device.root).chmod(0o1777)  # but never for the path itself
    refused(device.swupd_process("info"), "it is writable by others")


def test_a_symlinked_root_is_judged_where_the_link_lives_and_where_it_leads(device: Device, tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    theirs.mkdir()
    (ours / "root").symlink_to(device.root)
    (theirs / "root").symlink_to(device.root)
    give(theirs)
    opts = device.opts()[2:]
    r = ck.run_process("info", "--path", ours / "root", *opts)
    assert r.rc == 0, r.err
    refused(ck.run_process("info", "--path", theirs / "root", *opts), f"{theirs} is owned by uid 65534")
    # A sticky directory is excused above the path only, also when a link climbs back to it.
    sticky = tmp_path / "sticky"
    (sticky / "sub").mkdir(parents=True)
    sticky.chmod(0o1777)
    (sticky / "back").symlink_to("sub/..")
    refused(ck.run_process("info", "--path", sticky / "back", *opts), f"{sticky} is writable by others")
    # A link that leads into a directory others can write is refused for where it leads.
    Path(device.root).parent.chmod(0o777)
    refused(ck.run_process("info", "--path", ours / "root", *opts), f"{Path(device.root).parent} is writable")


def test_settings_in_root_others_can_change_are_refused(device: Device) -> None:
    etc = Path(device.root, "etc/swupd")
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "format").write_text("1\n")
    assert device.swupd_process("info").rc == 0
    give(etc)
    refused(device.swupd_process("info"), f"refusing setting {etc}/", f": {etc} is owned by uid 65534")


# -- the state directory ------------------------------------------------------------------------


def test_a_state_dir_of_another_user_is_refused(device: Device) -> None:
    os.chown(device.state, NOBODY, NOBODY)
    before = ck.snapshot(device.state)
    refused(device.swupd_process("update"), f"refusing state directory {device.state}: it is owned by uid 65534")
    assert ck.snapshot(device.state) == before and device.version() == 10


def test_a_state_dir_under_a_directory_others_can_write_is_refused(device: Device) -> None:
    Path(device.state).parent.chmod(0o775)
    refused(device.swupd_process("info"), f"{Path(device.state).parent} is writable by its group")


def test_a_too_open_state_dir_is_closed_and_anything_others_left_in_it_refused(device: Device, tmp_path: Path) -> None:
    state = Path(device.state)
    state.chmod(0o777)
    r = device.swupd_process("update")  # all of it the client's: closed again, and used
    assert r.rc == 0, r.err
    assert state.stat().st_mode & 0o7777 == 0o700
    assert device.version() == 20
    secret = tmp_path / "secret"
    secret.write_text("root's only")
    state.chmod(0o777)
    journal_moving(state, secret)
    give(state / "journal")
    refused(device.swupd_process("info"), f"{state}/journal is owned by uid 65534")
    assert secret.exists() and not Path(device.root, "stolen").exists()
    assert state.stat().st_mode & 0o777 == 0o700  # closed first, then looked into...
    refused(device.swupd_process("info"), f"{state}/journal is owned by uid 65534")  # ...until clean
    assert secret.exists() and not Path(device.root, "stolen").exists()
    os.unlink(state / "journal")
    os.symlink("/etc/passwd", state / "trust.json.tmp")
    state.chmod(0o777)
    refused(device.swupd_process("info"), "trust.json.tmp is a symbolic link")
    os.unlink(state / "trust.json.tmp")
    r = device.swupd_process("info")
    assert r.rc == 0, r.err
    assert not (state / "unchecked").exists()


def test_a_state_dir_closed_by_a_run_that_died_at_once_is_still_checked(device: Device, tmp_path: Path) -> None:
    """Killed right after closing a state directory found open (before it looked inside): the
    next run must still know that what is in it may be another user's."""
    secret, state = tmp_path / "secret", Path(device.state)
    secret.write_text("root's only")
    journal_moving(state, secret)
    give(state / "journal")
    state.chmod(0o777)
    r = device.swupd_process("info", env=dict(os.environ, SWUPD_FAULT="closed:kill"))
    assert r.rc < 0 and state.stat().st_mode & 0o777 == 0o700, r.err
    refused(device.swupd_process("info"), f"{state}/journal is owned by uid 65534")
    assert secret.exists() and not Path(device.root, "stolen").exists()


@pytest.mark.parametrize("name", ["trust.json.tmp", "version.tmp", "download/x.part"])
def test_a_hard_link_left_in_an_open_state_dir_is_refused(device: Device, tmp_path: Path, name: str) -> None:
    """Where the state directory was open, a hard link to a file of root's (as a user can make
    where links are not protected) could be written through by the next update."""
    victim = tmp_path / "victim"
    victim.write_text("root's own\n")
    state = Path(device.state)
    os.link(victim, state / name)
    state.chmod(0o777)
    refused(device.swupd_process("update"), f"{state}/{name} has other hard links")
    assert victim.read_text() == "root's own\n" and device.version() == 10
    refused(device.swupd_process("update"), f"{state}/{name} has other hard links")  # until clean
    os.unlink(state / name)
    r = device.swupd_process("update")
    assert r.rc == 0, r.err
    assert victim.read_text() == "root's own\n" and device.version() == 20


def test_directories_the_client_makes_are_closed_to_others_whatever_the_umask(
    stream: ck.Stream, tmp_path: Path
) -> None:
    root, state = tmp_path / "a/b/root", tmp_path / "c/d/state"
    umask0 = ["sh", "-c", 'umask 0; exec "$0" "$@"', ck.SWUPD]
    args = ["os-install", root, "--statedir", state, "--version", "10", *server_opts(stream)]
    r = subprocess.run([*umask0, *map(str, args)], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    for d in (tmp_path / "a", tmp_path / "a/b", tmp_path / "c", tmp_path / "c/d"):
        assert d.stat().st_mode & 0o777 == 0o755, d
    assert state.stat().st_mode & 0o777 == 0o700
    args = ["update", "--path", root, "--statedir", state, *server_opts(stream)]
    r = subprocess.run([*umask0, *map(str, args)], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert ck.os_release_version(str(root)) == 20


@pytest.mark.parametrize("umask", ["0", "002"])
def test_files_the_client_makes_are_closed_to_others_whatever_the_umask(
    stream: ck.Stream, tmp_path: Path, umask: str
) -> None:
    """Its state, its mirror setting and the units `autoupdate` writes into /etc: under a umask
    that opens them to others they would be another user's to change, and the client's own
    checks would refuse them on the next command."""
    root, state = tmp_path / "root", tmp_path / "state"
    opts = ["--path", root, "--statedir", state, *server_opts(stream)]

    def swupd(*args: object) -> subprocess.CompletedProcess:
        cmd = ["sh", "-c", f'umask {umask}; exec "$0" "$@"', ck.SWUPD, *map(str, args)]
        return subprocess.run(cmd, capture_output=True, text=True, check=False)

    r = swupd("os-install", root, "--statedir", state, "--version", "10", *server_opts(stream))
    assert r.returncode == 0, r.stderr
    for args in (["mirror", "--set", Path(stream.www).as_uri()], ["autoupdate", "--enable"], ["update"], ["info"]):
        r = swupd(*args, *opts)
        assert r.returncode == 0, (args, r.stderr)
    made = [state, root / "etc/swupd", root / "etc/systemd/system"]
    loose = [
        os.path.join(d, n)
        for top in made
        for d, dirs, files in os.walk(top)
        for n in dirs + files
        if os.lstat(os.path.join(d, n)).st_mode & 0o022
        and not os.path.islink(os.path.join(d, n))
        and not os.path.join(d, n).startswith((str(state / "objects/"), str(state / "stage/")))
    ]
    assert loose == []


def test_a_directory_another_user_slips_in_while_the_client_makes_its_own_is_refused(tmp_path: Path) -> None:
    """Under a sticky directory, what was missing when the path was checked may be made by
    another user before the client makes it: the client must not build inside theirs."""
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    for made in ("state directory", "ROOT"):
        target = sticky / made.replace(" ", "-") / "b/state"
        assert ownership.resolve(str(target), made, False) == str(target)  # nothing there yet
        theirs = target.parent.parent
        theirs.mkdir()
        os.chown(theirs, NOBODY, NOBODY)  # the other user, between the check and the making
        with pytest.raises(UnsafePathError, match=f"refusing {made} {target}: {theirs} is owned by uid 65534"):
            ownership.make_dirs(str(target), 0o700, what=made)


# -- os-install's target ------------------------------------------------------------------------


def test_os_install_reads_nothing_in_a_target_that_is_not_empty(
    stream: ck.Stream, content: FaultServer, tmp_path: Path
) -> None:
    """Even root's own: settings, state and hooks in it are none of os-install's business."""
    marker, root = tmp_path / "marker", tmp_path / "root"
    hook_writing(root / "etc/swupd/post-update.d/10-hook", marker)
    (root / "etc/swupd/versionurl").write_text("http://127.0.0.1:9/elsewhere\n")
    (root / "var/lib/swupd").mkdir(parents=True)
    (root / "var/lib/swupd/hooks-pending").write_text("1\n")
    before = ck.snapshot(str(root))
    r = ck.run_process("os-install", root, "--url", content.url(), "--key", stream.key, "--format", "1")
    refused(r, f"{root} is not empty")
    assert not marker.exists() and not content.log
    assert ck.diff_snapshots(before, ck.snapshot(str(root))) == ""


def test_os_install_resumes_in_a_target_holding_only_its_state(stream: ck.Stream, tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "var/lib/swupd").mkdir(parents=True)
    (root / "var/lib/swupd/download").mkdir(mode=0o700)
    (root / "var/lib/swupd").chmod(0o700)
    r = ck.run_process("os-install", root, "--version", "10", *server_opts(stream))
    assert r.rc == 0, r.err
    other = tmp_path / "other"
    (other / "var").mkdir(parents=True)
    (other / "var/lib").symlink_to(root / "var/lib")
    refused(ck.run_process("os-install", other, *server_opts(stream)), "is not empty")


# -- post-update hooks ----------------------------------------------------------------------------

HOOKS = "etc/swupd/post-update.d"
OS_HOOKS = "usr/lib/swupd/post-update.d"
HOOK_SPOIL: dict[str, Callable[[Path], Path]] = {
    "directory world-writable": lambda h: (h.parent.chmod(0o777), h.parent)[1],
    "directory not root's": lambda h: (os.chown(h.parent, NOBODY, NOBODY), h.parent)[1],
    "directory above not root's": lambda h: (os.chown(h.parent.parent, NOBODY, NOBODY), h.parent.parent)[1],
    "hook not root's": lambda h: (os.chown(h, NOBODY, NOBODY), h)[1],
    "hook group-writable": lambda h: (h.chmod(0o775), h)[1],
    "hook a link into the user's": lambda h: (
        (h.parent.parent / "user").mkdir(),
        os.rename(h, h.parent.parent / "user/hook"),
        give(h.parent.parent / "user"),
        h.symlink_to(h.parent.parent / "user/hook"),
        h.parent.parent / "user",
    )[4],
}


@pytest.mark.parametrize("spoil", HOOK_SPOIL)
def test_hooks_others_can_change_are_never_run(device: Device, tmp_path: Path, spoil: str) -> None:
    marker = tmp_path / "marker"
    hook = hook_writing(Path(device.root, OS_HOOKS, "10-hook"), marker)
    culprit = HOOK_SPOIL[spoil](hook)
    before = device.snapshot()
    r = device.swupd_process("update")
    assert not marker.exists(), "the hook ran"
    refused(r, str(culprit))
    # Refused before the transaction began: the tree is as it was.
    assert ck.diff_snapshots(before, device.snapshot()) == ""
    r = ck.run_process("update", "--no-scripts", *device.opts())
    assert r.rc == 0, r.err
    assert device.version() == 20 and not marker.exists()


def test_pending_hooks_wait_for_their_directory_to_be_root_s(device: Device, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    hook = hook_writing(Path(device.root, HOOKS, "10-hook"), marker)
    r = device.swupd_process("update")
    assert r.rc == 0 and marker.exists(), r.err
    marker.unlink()
    Path(device.state, "hooks-pending").write_text("1\n")  # as a crash after the transaction leaves it
    hook.parent.chmod(0o777)
    refused(device.swupd_process("info"), f"refusing hook directory {hook.parent}: it is writable by others")
    assert not marker.exists() and Path(device.state, "hooks-pending").exists()
    hook.parent.chmod(0o755)
    assert device.swupd_process("info").rc == 0
    assert marker.exists() and not Path(device.state, "hooks-pending").exists()
