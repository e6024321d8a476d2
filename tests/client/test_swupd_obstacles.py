"""Something in the way of an update: a directory where the new version installs a file or a
link, a file or a link where it makes a directory, an immutable directory. Every target is
checked before the journal is written: what stands in the way is moved aside (and reported),
and what cannot be changed stops the update before anything has changed."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from pathlib import Path

import clientkit as ck
import pytest
from clientkit import Device
from support.environment import unavailable


def aside_of(root: str, path: str) -> list[Path]:
    """What the client moved aside in the directory of `path` (`.deleted.<time>.<name>`)."""
    parent = Path(root, os.path.dirname(path).lstrip("/"))
    name = os.path.basename(path)
    return sorted(p for p in parent.iterdir() if p.name.startswith(".deleted.") and p.name.endswith("." + name))


def updated_cleanly(dev: Device, before: dict, moved: list[str]) -> list[Path]:
    """The update exits 0 and reports what it moved aside; the tree is exactly version 20 (plus
    those); `verify` is clean and no journal is left. Returns the moved-aside objects."""
    r = dev.swupd("update")
    assert r.rc == 0, r.err
    kept = [p for path in moved for p in aside_of(dev.root, path)]
    assert len(kept) == len(moved), (moved, kept)
    for p in kept:
        assert "/" + str(p.relative_to(dev.root)) in r.err, r.err
    extra = ["/" + str(p.relative_to(dev.root)) for p in kept]
    ck.assert_tree(dev.root, dev.stream.expected(20, ck.ALL_BUNDLES, old=before), allow_extra=extra)
    assert not Path(dev.state, "journal").exists()
    v = dev.swupd("verify")
    assert v.rc == 0 and "0 missing, 0 modified, 0 extra" in v.out, v.out + v.err
    return kept


def test_a_directory_where_a_file_goes_is_moved_aside(device: Device) -> None:
    """Version 20 adds /usr/share/doc/NEWS; the device has a directory of its own there."""
    mine = Path(device.root, "usr/share/doc/NEWS")
    mine.mkdir()
    (mine / "notes.txt").write_bytes(b"the user's notes\n")
    before = device.tree()
    kept = updated_cleanly(device, before, ["/usr/share/doc/NEWS"])
    assert (kept[0] / "notes.txt").read_bytes() == b"the user's notes\n"


def test_a_directory_where_a_link_goes_is_moved_aside(device: Device) -> None:
    """/usr/share/data/kind is a file in version 10 and a symlink in 20."""
    kind = Path(device.root, "usr/share/data/kind")
    kind.unlink()
    (kind / "deeper").mkdir(parents=True)
    (kind / "deeper/mine").write_bytes(b"mine\n")
    before = device.tree()
    kept = updated_cleanly(device, before, ["/usr/share/data/kind"])
    assert (kept[0] / "deeper/mine").read_bytes() == b"mine\n"


LONG = "n" * 250


@pytest.fixture(scope="module")
def long_name_stream(stream: ck.Stream, tmp_path_factory: pytest.TempPathFactory) -> ck.Stream:
    """Version 30: version 20 plus a file whose name is as long as a file system allows."""
    d = tmp_path_factory.mktemp("long-name-stream")
    rootfs = ck.clone(stream.rootfs[20], str(d / "rootfs-30"))
    Path(rootfs, "usr/share", LONG).write_bytes(b"shipped by 30\n")
    www = ck.copy_www(stream.www, str(d / "www"))
    ck.build_version(www, rootfs, 30, stream.private, stream.bundles_toml)
    return dataclasses.replace(stream, www=www, www30="", rootfs={**stream.rootfs, 30: rootfs})


def test_a_directory_with_the_longest_name_is_moved_aside(
    v10_all: Device, clone_device, long_name_stream: ck.Stream
) -> None:
    """`.deleted.<time>.` before a 250-byte name passes the file system's limit on a name: the
    name it is moved aside to is shortened, or the journal could never be finished."""
    dev = clone_device(v10_all, Path(long_name_stream.www).as_uri())
    dev.stream = long_name_stream
    mine = Path(dev.root, "usr/share", LONG)
    mine.mkdir()
    (mine / "notes.txt").write_bytes(b"the user's notes\n")
    before = dev.tree()
    r = dev.swupd("update")
    assert r.rc == 0, r.err
    assert dev.version() == 30 and not Path(dev.state, "journal").exists()
    kept = [p for p in Path(dev.root, "usr/share").iterdir() if p.name.startswith(".deleted.")]
    assert len(kept) == 1 and (kept[0] / "notes.txt").read_bytes() == b"the user's notes\n", kept
    assert "/usr/share/" + kept[0].name in r.err, r.err
    extra = ["/usr/share/" + kept[0].name]
    ck.assert_tree(dev.root, long_name_stream.expected(30, ck.ALL_BUNDLES, old=before), allow_extra=extra)


def test_a_file_with_the_longest_name_reaches_another_file_system(
    v10_all: Device, clone_device, long_name_stream: ck.Stream, tmp_path: Path
) -> None:
    """With the state directory on a file system of its own, the object is copied next to its
    target under a temporary name first: that name too must stay within the limit."""
    disk = tmp_path / "state-disk"
    disk.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0755", "tmpfs", str(disk)],
                       capture_output=True, text=True, check=False)  # fmt: skip
    if p.returncode != 0:
        unavailable(f"cannot mount a tmpfs: {p.stderr.strip() or p.returncode}")
    try:
        dev = clone_device(v10_all, Path(long_name_stream.www).as_uri())
        dev.stream, dev.state = long_name_stream, ck.clone(dev.state, str(disk / "state"))
        before = dev.tree()
        r = dev.swupd("update")
        assert r.rc == 0, r.err
        assert dev.version() == 30 and not Path(dev.state, "journal").exists()
        ck.assert_tree(dev.root, long_name_stream.expected(30, ck.ALL_BUNDLES, old=before))
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_file_where_a_directory_goes_is_moved_aside(device: Device) -> None:
    """Version 20 adds the directory /usr/lib/plugins-2; the device has a file there."""
    mine = Path(device.root, "usr/lib/plugins-2")
    mine.write_bytes(b"a file of the user's\n")
    before = device.tree()
    kept = updated_cleanly(device, before, ["/usr/lib/plugins-2"])
    assert kept[0].read_bytes() == b"a file of the user's\n"


def test_a_link_where_a_directory_goes_is_replaced_never_followed(device: Device, tmp_path: Path) -> None:
    """Links stand where version 20 adds a directory and where both versions have an unchanged
    one: each becomes a directory again, filled with every file below it, and nothing is
    written through the links."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "theirs").write_bytes(b"not the update's\n")
    snap = ck.snapshot(str(outside))
    Path(device.root, "usr/lib/plugins-2").symlink_to(outside)
    tools = Path(device.root, "opt/tools")
    shutil.rmtree(tools)
    tools.symlink_to(outside)
    before = device.tree()
    updated_cleanly(device, before, [])
    assert ck.diff_snapshots(snap, ck.snapshot(str(outside))) == ""


def chattr(path: Path, flag: str) -> None:
    subprocess.run(["chattr", flag, str(path)], check=True, capture_output=True)


def immutable_supported(path: Path) -> bool:
    probe = path / ".chattr-probe"
    probe.mkdir()
    try:
        chattr(probe, "+i")
    except (OSError, subprocess.CalledProcessError):
        return False
    finally:
        subprocess.run(["chattr", "-i", str(probe)], check=False, capture_output=True)
        probe.rmdir()
    return True


@pytest.mark.parametrize("locked", ["usr/share/doc", "usr/bin/ls"])
def test_what_cannot_be_changed_stops_the_update_before_anything_changed(device: Device, locked: str) -> None:
    """An immutable directory that the update adds to, or an immutable file it replaces: one
    error line, exit 15, the tree exactly as it was and no journal; once the flag is gone the
    update completes."""
    if shutil.which("chattr") is None or not immutable_supported(Path(device.root)):
        unavailable("no chattr, or the file system (or this process) cannot set the immutable flag")
    before, snap = device.tree(), device.snapshot()
    target = Path(device.root, locked)
    chattr(target, "+i")
    try:
        r = device.swupd_process("update")
        assert r.rc == 15, (r.rc, r.err)
        line = r.error_line()
        assert f"/{locked}" in line and "nothing was changed" in line, line
        assert ck.diff_snapshots(snap, device.snapshot()) == ""
        assert not Path(device.state, "journal").exists()
        assert device.version() == 10
    finally:
        chattr(target, "-i")
    r = device.swupd_process("update")
    assert r.rc == 0, r.err
    ck.assert_tree(device.root, device.stream.expected(20, ck.ALL_BUNDLES, old=before))


def test_a_mount_point_in_the_way_stops_the_update_before_anything_changed(device: Device) -> None:
    """A file system mounted where version 20 installs a file (/usr/share/doc/NEWS) cannot be
    moved aside: the update stops with nothing changed, and completes once it is unmounted."""
    mnt = Path(device.root, "usr/share/doc/NEWS")
    mnt.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=1m", "swupd-test", str(mnt)]
    if subprocess.run(mount, capture_output=True, check=False).returncode:
        mnt.rmdir()
        unavailable("this process cannot mount a tmpfs")
    try:
        before, snap = device.tree(), device.snapshot()
        r = device.swupd_process("update")
        assert r.rc == 15, (r.rc, r.err)
        line = r.error_line()
        assert "/usr/share/doc/NEWS is a mount point" in line and "nothing was changed" in line, line
        assert ck.diff_snapshots(snap, device.snapshot()) == ""
        assert not Path(device.state, "journal").exists()
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    del before["/usr/share/doc/NEWS"]
    r = device.swupd_process("update")
    assert r.rc == 0, r.err
    ck.assert_tree(device.root, device.stream.expected(20, ck.ALL_BUNDLES, old=before))


@pytest.mark.parametrize("target", ["usr/share/doc/NEWS", "usr/bin/ls", "etc/hostname"])
def test_a_bind_mount_from_the_same_file_system_stops_the_update(device: Device, tmp_path: Path, target: str) -> None:
    """Bound from the same file system (as containers bind /etc/hostname), a mount point has
    the device number of the directory it is in: a directory where version 20 installs a file,
    a program it replaces and a file it removes must still stop the update with nothing
    changed, not fail the journal on every run after the commit point."""
    host = Path(device.root, target)
    source = tmp_path / "bound"
    if target.endswith("NEWS"):
        source.mkdir()
        host.mkdir()
    else:
        source.write_bytes(host.read_bytes())
    before, snap = device.tree(), device.snapshot()
    if subprocess.run(["mount", "--bind", str(source), str(host)], capture_output=True, check=False).returncode:
        unavailable("this process cannot make bind mounts")
    try:
        r = device.swupd_process("update")
        assert r.rc == 15, (r.rc, r.err)
        line = r.error_line()
        assert f"/{target} is a mount point" in line and "nothing was changed" in line, line
        assert not Path(device.state, "journal").exists()
    finally:
        subprocess.run(["umount", str(host)], check=True)
    assert ck.diff_snapshots(snap, device.snapshot()) == ""
    r = device.swupd_process("update")
    assert r.rc == 0, r.err
    ck.assert_tree(device.root, device.stream.expected(20, ck.ALL_BUNDLES, old=before))


def test_a_read_only_directory_stops_the_update_before_anything_changed(device: Device) -> None:
    """/usr/share/doc bound read-only onto itself (as a read-only mount would be): one error
    line, exit 15, nothing changed, no journal; writable again, the update completes."""
    doc = Path(device.root, "usr/share/doc")
    before, snap = device.tree(), device.snapshot()
    if subprocess.run(["mount", "--bind", str(doc), str(doc)], capture_output=True, check=False).returncode:
        unavailable("this process cannot make bind mounts")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(doc)], check=True, capture_output=True)
        r = device.swupd_process("update")
        assert r.rc == 15, (r.rc, r.err)
        line = r.error_line()
        assert "/usr/share/doc is on a read-only file system" in line and "nothing was changed" in line, line
        assert ck.diff_snapshots(snap, device.snapshot()) == ""
        assert not Path(device.state, "journal").exists()
    finally:
        subprocess.run(["umount", str(doc)], check=True)
    r = device.swupd_process("update")
    assert r.rc == 0, r.err
    ck.assert_tree(device.root, device.stream.expected(20, ck.ALL_BUNDLES, old=before))


def test_repair_moves_a_file_where_a_directory_belongs_aside(device: Device, stream: ck.Stream) -> None:
    """/usr/share/doc replaced by a file of the user's: `repair` makes the directory again,
    fills it, and keeps the file under another name."""
    doc = Path(device.root, "usr/share/doc")
    shutil.rmtree(doc)
    doc.write_bytes(b"the user's file\n")
    r = device.swupd("repair")
    assert r.rc == 0, r.out + r.err
    kept = aside_of(device.root, "/usr/share/doc")
    assert len(kept) == 1 and kept[0].read_bytes() == b"the user's file\n", kept
    moved = "/" + str(kept[0].relative_to(device.root))
    assert moved in r.err, r.err
    ck.assert_tree(device.root, stream.expected(10, ck.ALL_BUNDLES), allow_extra=[moved])


@pytest.mark.parametrize("case", ["dir-for-file", "file-for-dir"])
def test_a_crash_after_clearing_the_way_is_finished_by_the_next_run(device: Device, case: str) -> None:
    """Killed right after the action that moved something out of the way: the next run
    finishes the journal, the moved object intact, the tree exactly version 20."""
    root = Path(device.root)
    path = "/usr/share/doc/NEWS" if case == "dir-for-file" else "/usr/lib/plugins-2"
    if case == "dir-for-file":
        (root / path.lstrip("/")).mkdir()
        (root / path.lstrip("/") / "mine").write_bytes(b"mine\n")
    else:
        (root / path.lstrip("/")).write_bytes(b"mine\n")
    before = device.tree()
    r = device.swupd_process("update", env=dict(os.environ, SWUPD_FAULT="journal-written:kill"))
    assert r.rc < 0, r.err
    actions = json.loads(Path(device.state, "journal").read_bytes())["actions"]
    clearing = next(i for i, a in enumerate(actions) if a[0] in ("rm", "aside") and a[1] == path)
    r = device.swupd_process("info", env=dict(os.environ, SWUPD_FAULT=f"action@{clearing + 2}:kill"))
    assert r.rc < 0, r.err
    kept = aside_of(device.root, path)
    assert len(kept) == 1, kept
    r = device.swupd_process("info")
    assert r.rc == 0, r.err
    assert aside_of(device.root, path) == kept
    mine = kept[0] / "mine" if case == "dir-for-file" else kept[0]
    assert mine.read_bytes() == b"mine\n"
    extra = ["/" + str(kept[0].relative_to(device.root))]
    ck.assert_tree(device.root, device.stream.expected(20, ck.ALL_BUNDLES, old=before), allow_extra=extra)
