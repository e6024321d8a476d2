"""`verify`, `verify --fix`, `repair` and `verify --picky`."""

from __future__ import annotations

import os
from pathlib import Path

import clientkit as ck
from clientkit import Device
from support.environment import require_root, unavailable


def summary(out: str) -> str:
    return [line for line in out.splitlines() if line.startswith("Checked ")][-1]


def listed(out: str, label: str) -> list[str]:
    return sorted(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith(f"{label}: "))


def test_verify_clean(device: Device) -> None:
    snap = device.snapshot()
    r = device.swupd("verify")
    assert r.rc == 0, r.out + r.err
    n = len(ck.entries(device.stream.www, 10, ck.ALL_BUNDLES))
    assert summary(r.out) == f"Checked {n} files of version 10: 0 missing, 0 modified, 0 extra"
    assert ck.diff_snapshots(snap, device.snapshot()) == ""


def damage(root: Path) -> None:
    (root / "usr/bin/cat").unlink()
    (root / "usr/share/doc/README").unlink()
    (root / "usr/bin/ls").write_bytes(b"damaged")
    os.chmod(root / "usr/share/data/perm.txt", 0o666)  # metadata alone
    os.chown(root / "usr/share/data/owned.txt", 0, 0)  # 1000:1000 in version 20
    (root / "usr/share/data/link").unlink()
    (root / "usr/share/data/link").symlink_to("/etc/passwd")
    # Listed as deleted by version 20's manifest but present again.
    (root / "usr/lib/plugins-1").mkdir()
    (root / "usr/lib/plugins-1/plugin.so").write_bytes(b"back from the dead\n")


def test_verify_lists_missing_modified_and_extra(device: Device) -> None:
    assert device.swupd("update").rc == 0
    root = Path(device.root)
    damage(root)
    snap = device.snapshot()
    r = device.swupd("verify")
    assert r.rc == 1, r.out + r.err
    assert listed(r.out, "Missing") == ["/usr/bin/cat", "/usr/share/doc/README"]
    assert listed(r.out, "Modified") == [
        "/usr/bin/ls",
        "/usr/share/data/link",
        "/usr/share/data/owned.txt",
        "/usr/share/data/perm.txt",
    ]
    assert listed(r.out, "Extra") == ["/usr/lib/plugins-1", "/usr/lib/plugins-1/plugin.so"]
    assert "2 missing, 4 modified, 2 extra" in summary(r.out)
    assert ck.diff_snapshots(snap, device.snapshot()) == "", "verify without --fix changed the tree"


def test_verify_fix_and_repair_restore_the_tree(device: Device, clone_device, stream: ck.Stream) -> None:
    before = device.tree()
    assert device.swupd("update").rc == 0
    want = stream.expected(20, ck.ALL_BUNDLES, old=before)
    twin = clone_device(device)
    for dev, command in ((device, ["verify", "--fix"]), (twin, ["repair"])):
        damage(Path(dev.root))
        r = dev.swupd(*command)
        assert r.rc == 0, r.out + r.err
        assert "all fixed" in summary(r.out)
        ck.assert_tree(dev.root, want)
        r = dev.swupd("verify")
        assert r.rc == 0 and "0 missing, 0 modified, 0 extra" in r.out, r.out


def test_verify_bundles_option_checks_only_those(device: Device) -> None:
    (Path(device.root) / "usr/bin/cat").unlink()
    (Path(device.root) / "opt/app/bin/grep").write_bytes(b"x")
    r = device.swupd("verify", "--bundles", "app")
    assert r.rc == 1
    assert listed(r.out, "Modified") == ["/opt/app/bin/grep"]
    assert listed(r.out, "Missing") == ["/usr/bin/cat"]  # os-core is always part of the check
    r = device.swupd("verify", "--bundles", "tools")
    assert listed(r.out, "Modified") == []


def test_verify_picky(device: Device, stream: ck.Stream) -> None:
    root = Path(device.root)
    want = stream.expected(10, ck.ALL_BUNDLES)
    unknown = {
        "usr/share/unknown.txt": b"not from any bundle\n",
        "usr/share/userdir/nested/file": b"nested\n",
        "usr/bin/evil": b"#!/bin/sh\n",
    }
    untouched = {
        "var/lib/app/cache.db": b"state\n",
        "etc/local.conf": b"admin's\n",
        "usr/local/bin/mine": b"local\n",
        "opt/other/file": b"outside /usr\n",
    }
    for rel, data in {**unknown, **untouched}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / "usr/share/unknown-link").symlink_to("/etc/shadow")
    r = device.swupd("verify")
    assert r.rc == 0, "unknown files count only with --picky"
    r = device.swupd("verify", "--picky")
    assert r.rc == 1
    assert listed(r.out, "Extra") == [
        "/usr/bin/evil",
        "/usr/share/unknown-link",
        "/usr/share/unknown.txt",
        "/usr/share/userdir",
        "/usr/share/userdir/nested",
        "/usr/share/userdir/nested/file",
    ]
    r = device.swupd("verify", "--picky", "--fix")
    assert r.rc == 0, r.out + r.err
    for rel in [*unknown, "usr/share/userdir", "usr/share/unknown-link"]:
        assert not os.path.lexists(root / rel), rel
    for rel, data in untouched.items():
        assert (root / rel).read_bytes() == data, rel
    ck.assert_tree(
        device.root, want, allow_extra=["/var/lib/app/cache.db", "/etc/local.conf", "/usr/local", "/opt/other"]
    )
    r = device.swupd("repair", "--picky")
    assert r.rc == 0 and "0 extra" in summary(r.out), r.out


def test_repair_keeps_changed_configuration_and_verify_reports_it_apart(device: Device, stream: ck.Stream) -> None:
    """/etc is the administrator's: `repair` and `verify --fix` never overwrite a changed file
    there (they restore a missing one), and `verify` lists it as `Config:`, not as damage."""
    root = Path(device.root)
    (root / "etc/motd").write_bytes(b"the administrator's greeting\n")
    os.chmod(root / "etc/hostname", 0o600)  # metadata alone counts too
    (root / "usr/bin/cat").unlink()
    r = device.swupd("verify")
    assert r.rc == 1, r.out + r.err
    assert listed(r.out, "Config") == ["/etc/hostname", "/etc/motd"]
    assert listed(r.out, "Modified") == [] and listed(r.out, "Missing") == ["/usr/bin/cat"]
    for command in (["verify", "--fix"], ["repair"]):
        r = device.swupd(*command)
        assert r.rc == 0, r.out + r.err
        assert listed(r.out, "Config") == ["/etc/hostname", "/etc/motd"], r.out
        assert (root / "etc/motd").read_bytes() == b"the administrator's greeting\n"
        assert os.stat(root / "etc/hostname").st_mode & 0o777 == 0o600
    want = stream.expected(10, ck.ALL_BUNDLES)
    for kept in ("/etc/motd", "/etc/hostname"):
        want[kept] = ck.read_obj(device.root + kept)
    ck.assert_tree(device.root, want)
    r = device.swupd("verify")
    assert r.rc == 0, r.out + r.err
    assert "0 missing, 0 modified, 0 extra, 2 configuration changed locally (kept)" in summary(r.out), r.out
    (root / "etc/motd").unlink()  # the way back to the shipped file: remove it, then repair
    assert device.swupd("repair").rc == 0
    assert (root / "etc/motd").read_bytes() == Path(stream.rootfs[10], "etc/motd").read_bytes()


def test_verify_after_an_update_that_kept_configuration(device: Device) -> None:
    """An update keeps the administrator's /etc/app.conf (version 20 changes it) and
    /etc/hostname (version 20 deletes it); `verify` reports both as Config and succeeds."""
    root = Path(device.root)
    (root / "etc/app.conf").write_bytes(b"mode=mine\n")
    (root / "etc/hostname").write_bytes(b"my-device\n")
    assert device.swupd("update").rc == 0
    r = device.swupd("verify")
    assert r.rc == 0, r.out + r.err
    assert listed(r.out, "Config") == ["/etc/app.conf", "/etc/hostname"], r.out
    assert listed(r.out, "Modified") == [] and listed(r.out, "Extra") == [], r.out
    r = device.swupd("repair")
    assert r.rc == 0 and (root / "etc/app.conf").read_bytes() == b"mode=mine\n", r.out + r.err


def test_a_mounted_file_system_is_not_a_modified_directory(device: Device) -> None:
    """A listed directory with another file system mounted on it (a device's EFI system partition
    at /efi, mounted with umask=0077) shows that file system's owner and mode: verify counts it
    in place, and --fix leaves the mount alone."""
    import subprocess

    target = Path(device.root) / "usr/share/doc"
    require_root("mounting a file system needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0700,uid=0,gid=0", "tmpfs", str(target)],
                       capture_output=True, text=True)  # fmt: skip
    if r.returncode != 0:
        unavailable(f"cannot mount a tmpfs: {r.stderr.strip()}")
    try:
        r = device.swupd("verify")
        assert listed(r.out, "Modified") == [], r.out
        r = device.swupd("verify", "--fix")
        assert listed(r.out, "Modified") == [], r.out
        assert os.stat(target).st_mode & 0o777 == 0o700
    finally:
        subprocess.run(["umount", str(target)], check=False)
