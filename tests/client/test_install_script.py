"""client/install: the install steps the swupd-client and swupd-boot-efi recipes and the test
device's image builder share."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]
INSTALL = TOP / "client" / "install"
SITE = "/usr/lib/python3/site-packages"


def install(dest: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(INSTALL), *args, str(dest)], capture_output=True, text=True)


def test_client_lands_where_the_recipe_says(tmp_path: Path) -> None:
    r = install(tmp_path, "client", "--python", sys.executable, "--sitedir", SITE, "--bindir", "/usr/bin",
                "--unitdir", "/lib/systemd/system", "--statedir", "/var/lib/swupd")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "usr/lib/python3/site-packages/swupd/cli.py").is_file()
    assert list((tmp_path / "usr/lib/python3/site-packages/swupd/__pycache__").glob("cli.*.pyc"))
    assert os.access(tmp_path / "usr/bin/swupd", os.X_OK)
    units = {p.name for p in (tmp_path / "lib/systemd/system").iterdir()}
    assert units == {"swupd-update.service", "swupd-update.timer"}
    assert (tmp_path / "var/lib/swupd").stat().st_mode & 0o777 == 0o700
    # Compiled with the paths the device sees, not the staging directory's.
    (cache,) = (tmp_path / "usr/lib/python3/site-packages/swupd/__pycache__").glob("cli.*.pyc")
    assert str(tmp_path).encode() not in cache.read_bytes()


def test_the_man_page_and_completions_land_where_the_recipe_says(tmp_path: Path) -> None:
    """As scripts/gen-docs made them; without --mandir and --datadir, under /usr/share."""
    r = install(tmp_path / "a", "client", "--python", sys.executable, "--mandir", "/usr/man", "--datadir", "/opt/share")
    assert r.returncode == 0, r.stderr
    r = install(tmp_path / "b", "client", "--python", sys.executable)
    assert r.returncode == 0, r.stderr
    for dest, mandir, datadir in (("a", "usr/man", "opt/share"), ("b", "usr/share/man", "usr/share")):
        made = {
            "man/swupd.1": f"{mandir}/man1/swupd.1",
            "completion/bash/swupd": f"{datadir}/bash-completion/completions/swupd",
            "completion/zsh/_swupd": f"{datadir}/zsh/site-functions/_swupd",
        }
        for src, rel in made.items():
            installed = tmp_path / dest / rel
            assert installed.read_bytes() == (TOP / "client" / src).read_bytes(), installed
            assert installed.stat().st_mode & 0o777 == 0o644


def test_byte_code_stays_valid_when_an_update_gives_the_sources_new_times(tmp_path: Path) -> None:
    """An update installs the files it changes with new times; the caches the package shipped
    must still be the ones Python uses, or Python writes new ones that `verify` calls modified."""
    assert install(tmp_path, "client", "--python", sys.executable, "--sitedir", SITE).returncode == 0
    site = tmp_path / SITE.lstrip("/")
    caches = {p: p.read_bytes() for p in site.rglob("*.pyc")}
    later = time.time() + 3600
    for src in site.rglob("*.py"):
        os.utime(src, (later, later))
    code = "import swupd.cli, swupd.ops.update, swupd.format.delta"
    env = {"PYTHONPATH": str(site), "PATH": os.environ["PATH"]}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert {p: p.read_bytes() for p in site.rglob("*.pyc")} == caches


def test_boot_hook_names_the_board_s_files(tmp_path: Path) -> None:
    r = install(tmp_path, "boot-efi", "--efi-dir", "/efi", "--kernel", "vmlinuz", "--initrd", "initrd.img")
    assert r.returncode == 0, r.stderr
    hook = tmp_path / "usr/lib/swupd/post-update.d/50-boot-efi"
    assert os.access(hook, os.X_OK)
    text = hook.read_text()
    assert "@" not in text.replace("$@", "")
    assert "esp=$root/efi" in text and "/boot/vmlinuz" in text and "initrd_name=initrd.img" in text


def test_bad_usage_is_one_line_and_fails(tmp_path: Path) -> None:
    r = install(tmp_path, "firmware")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "usage" in r.stderr
    r = install(tmp_path, "client", "--colour", "red")
    assert r.returncode == 2 and "unknown option --colour" in r.stderr
