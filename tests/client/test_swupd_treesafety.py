"""The target tree as an adversary or a mess: symlinks planted above paths the update writes,
and post-update hooks that must run once per completed transaction, even across a crash."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import clientkit as ck
import pytest
from clientkit import Device
from support.environment import unavailable


def plant_link(device: Device, tmp_path: Path) -> tuple[Path, dict]:
    """/usr/share/data replaced by a link to a copy of it outside ROOT."""
    outside = tmp_path / "outside"
    ck.clone(str(Path(device.root, "usr/share/data")), str(outside))
    data = Path(device.root, "usr/share/data")
    os.rename(data, tmp_path / "moved-away")
    data.symlink_to(outside)
    return outside, ck.snapshot(str(outside))


def test_symlinked_directory_never_redirects_writes(device: Device, tmp_path: Path) -> None:
    """The update has files to write below the planted link: it must never follow it."""
    outside, outside_before = plant_link(device, tmp_path)
    r = device.swupd("update")
    assert ck.diff_snapshots(outside_before, ck.snapshot(str(outside))) == "", "wrote through the planted link"
    # The link stands where the manifests list a directory: the update puts the directory back.
    assert r.rc == 0, r.err
    assert not Path(device.root, "usr/share/data").is_symlink()
    for command in ("verify", "repair", "update"):
        r = device.swupd(command)
        assert ck.diff_snapshots(outside_before, ck.snapshot(str(outside))) == "", command
        assert "Traceback" not in r.err


def test_repair_recovers_from_a_planted_link(device: Device, stream: ck.Stream, tmp_path: Path) -> None:
    plant_link(device, tmp_path)
    before = device.tree()
    device.swupd("update")
    r = device.swupd("repair")
    assert r.rc == 0, r.err
    assert not Path(device.root, "usr/share/data").is_symlink()
    ck.assert_tree(device.root, stream.expected(20, ck.ALL_BUNDLES, old=before))


def test_a_symlinked_directory_is_restored_and_refilled(device: Device, stream: ck.Stream, tmp_path: Path) -> None:
    """After an update that exits 0, every path of every installed bundle is the new version's,
    also below a directory that a link had replaced: unchanged files included."""
    outside, outside_before = plant_link(device, tmp_path)
    before = device.tree()
    r = device.swupd("update")
    assert r.rc == 0, r.err
    ck.assert_tree(device.root, stream.expected(20, ck.ALL_BUNDLES, old=before))
    assert ck.diff_snapshots(outside_before, ck.snapshot(str(outside))) == ""
    v = device.swupd("verify")
    assert v.rc == 0 and "0 missing, 0 modified, 0 extra" in v.out, v.out + v.err


# A file capability (cap_net_raw=ep), as setcap writes it.
CAPABILITY = bytes.fromhex("0100000200200000000000000000000000000000")


def capabilities_supported(directory: str) -> bool:
    probe = os.path.join(directory, ".cap-probe")
    with open(probe, "wb"):
        pass
    try:
        os.setxattr(probe, "security.capability", CAPABILITY)
        return True
    except OSError:
        return False
    finally:
        os.unlink(probe)


@pytest.mark.parametrize("caps", [False, True], ids=["setuid", "setuid+capability"])
def test_a_hard_link_keeps_no_privilege_of_a_replaced_or_removed_file(
    device: Device, stream: ck.Stream, caps: bool
) -> None:
    """Hard links kept outside every manifest path to a setuid program the update replaces and
    to a setgid file it removes: afterwards their inodes grant nothing (no setuid, setgid or
    capability), while the new program keeps its setuid bit, also when a crash right after
    its move made another run finish the journal."""
    root = Path(device.root)
    if caps and not capabilities_supported(device.root):
        unavailable("the file system (or this process) cannot set security.capability")
    program, removed = root / "usr/bin/suid-tool", root / "usr/lib/plugins-1/plugin.so"
    os.chmod(removed, 0o2755)
    for f in (program, removed) if caps else ():
        os.setxattr(f, "security.capability", CAPABILITY)
    os.link(program, root / "kept-program")
    os.link(removed, root / "kept-plugin")
    before = device.tree()
    r = device.swupd_process("update", env=dict(os.environ, SWUPD_FAULT="journal-written:kill"))
    assert r.rc == -signal.SIGKILL, r.err
    actions = json.loads(Path(device.state, "journal").read_bytes())["actions"]
    after_move = next(i for i, a in enumerate(actions) if a[0] == "mv" and a[2] == "/usr/bin/suid-tool") + 2
    r = device.swupd_process("info", env=dict(os.environ, SWUPD_FAULT=f"action@{after_move}:kill"))
    assert r.rc == -signal.SIGKILL, r.err
    r = device.swupd_process("info")
    assert r.rc == 0, r.err
    for link in ("kept-program", "kept-plugin"):
        st = os.lstat(root / link)
        assert st.st_mode & 0o6000 == 0, f"{link}: {st.st_mode:o}"
        assert "security.capability" not in os.listxattr(root / link), link
    assert (root / "kept-program").read_bytes() == Path(stream.rootfs[10], "usr/bin/suid-tool").read_bytes()
    assert os.lstat(program).st_mode & 0o7777 == 0o4755
    ck.assert_tree(
        device.root, stream.expected(20, ck.ALL_BUNDLES, old=before), allow_extra=["/kept-program", "/kept-plugin"]
    )


HOOK = """#!/bin/sh
echo "ran for $SWUPD_ROOT" >> "$SWUPD_ROOT/var/lib/hook.log"
"""


def add_hook(dev: Device, name: str = "10-log", body: str = HOOK) -> Path:
    d = Path(dev.root, "etc/swupd/post-update.d")
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_text(body)
    (d / name).chmod(0o755)
    return Path(dev.root, "var/lib/hook.log")


def test_post_update_hooks_run_once(device: Device) -> None:
    log = add_hook(device)
    add_hook(device, "20-fails", "#!/bin/sh\nexit 3\n")
    r = device.swupd("update")
    assert r.rc == 0, r.err
    assert log.read_text() == f"ran for {device.root}\n"
    assert "post-update hook 20-fails failed with status 3" in r.err
    assert device.swupd("update").rc == 0  # up to date: no transaction, no hooks
    assert device.swupd("verify").rc == 0
    assert log.read_text() == f"ran for {device.root}\n"


def test_post_update_hooks_run_after_a_crash(device: Device) -> None:
    log = add_hook(device)
    r = device.swupd_process("update", env=dict(os.environ, SWUPD_FAULT="recorded:kill"))
    assert r.rc == -signal.SIGKILL
    assert not log.exists()
    r = device.swupd_process("info")  # any command finishes the transaction and its hooks
    assert r.rc == 0, r.err
    assert log.read_text() == f"ran for {device.root}\n"
    assert device.swupd("update").rc == 0
    assert log.read_text() == f"ran for {device.root}\n"


def test_a_hook_that_leads_nowhere_is_skipped(device: Device) -> None:
    """A link in a hook directory to a program since removed runs nothing; the other hooks
    run and the update completes, as with any entry that is not an executable file."""
    log = add_hook(device, "20-log")
    Path(device.root, "etc/swupd/post-update.d/10-gone").symlink_to("/usr/libexec/removed-long-ago")
    r = device.swupd_process("update")
    assert r.rc == 0, r.err
    assert device.version() == 20 and log.read_text() == f"ran for {device.root}\n"


@pytest.mark.parametrize("size", [0, 1, 4096, 3 << 20])
def test_reading_a_file_stops_at_its_end_or_the_limit(tmp_path: Path, size: int) -> None:
    """Old files for deltas are read straight from their descriptors: the whole file when it is
    under the limit, exactly `limit` bytes when it is not (which callers take as "too large")."""
    from swupd.apply.tree import read_fd

    data = bytes(range(256)) * (size // 256)
    (tmp_path / "f").write_bytes(data)
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        assert read_fd(fd, size + 1) == data
        os.lseek(fd, 0, os.SEEK_SET)
        assert read_fd(fd, max(size // 2, 1)) == data[: max(size // 2, 1)]
    finally:
        os.close(fd)
    fd = os.open("/proc/self/status", os.O_RDONLY)  # size 0, yet content
    try:
        assert read_fd(fd, 1 << 20).startswith(b"Name:")
    finally:
        os.close(fd)
