"""Builds small but real root file systems from the host's own binaries.

Used by the demo and the tests: each tree holds real ELF programs with the shared libraries
they load (found with `ldd`), text files, symlinks, and whatever a test adds. Two trees made
with different `variant` values differ the way two OS versions do: some files change, some
appear, some go away.
"""

from __future__ import annotations

import os
import shutil
import subprocess

CORE_PROGRAMS = ["/bin/ls", "/bin/cat", "/bin/sh", "/bin/cp", "/bin/mv"]
APP_PROGRAMS = ["/bin/grep", "/usr/bin/find"]


def _libs(program: str) -> list[str]:
    out = subprocess.run(["ldd", program], capture_output=True, text=True, check=False).stdout
    libs = []
    for line in out.splitlines():
        parts = line.split()
        for p in parts:
            if p.startswith("/") and os.path.exists(p):
                libs.append(p)
    return libs


def _install(program: str, root: str, where: str) -> None:
    target = os.path.join(root, where.lstrip("/"), os.path.basename(program))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copy2(os.path.realpath(program), target)
    for lib in _libs(program):
        libdest = os.path.join(root, "usr/lib", os.path.basename(lib))
        os.makedirs(os.path.dirname(libdest), exist_ok=True)
        if not os.path.exists(libdest):
            shutil.copy2(os.path.realpath(lib), libdest)


def add_client_config(root: str, url: str, public_key: str, compat: str, fmt: int = 1) -> None:
    """What an image ships so its swupd knows where to update from and whom to trust, written
    as an image build writes it (`swupd-server prepare-rootfs`)."""
    from swupd_server.image import ClientSettings, settings_files, write_settings

    write_settings(root, settings_files(ClientSettings(url, url, fmt, compat, public_keys=[public_key])))


def make_tree(root: str, variant: int = 1) -> str:
    """A root file system at `root`; `variant` 2 is the next version of variant 1."""
    if os.path.exists(root):
        shutil.rmtree(root)
    for d in ("usr/bin", "usr/lib", "usr/share/doc", "etc", "var/lib", "opt/app/bin"):
        os.makedirs(os.path.join(root, d))
    os.symlink("usr/bin", os.path.join(root, "bin"))
    os.symlink("usr/lib", os.path.join(root, "lib"))
    os.symlink("usr/lib", os.path.join(root, "lib64"))
    for prog in CORE_PROGRAMS:
        _install(prog, root, "/usr/bin")
    for prog in APP_PROGRAMS:
        _install(prog, root, "/opt/app/bin")
    with open(os.path.join(root, "usr/lib/os-release"), "w") as f:
        f.write('NAME="Example OS"\nID=example\nVERSION_ID=0\nPRETTY_NAME="Example OS"\n')
    os.symlink("../usr/lib/os-release", os.path.join(root, "etc/os-release"))
    with open(os.path.join(root, "etc/motd"), "w") as f:
        f.write(f"Welcome to Example OS, build {variant}.\n")
    with open(os.path.join(root, "etc/hostname"), "w") as f:
        f.write("example\n")
    doc = os.path.join(root, "usr/share/doc/README")
    with open(doc, "w") as f:
        f.write("".join(f"line {i} of the example documentation\n" for i in range(400)))
    os.symlink("README", os.path.join(root, "usr/share/doc/LIESMICH"))
    with open(os.path.join(root, "opt/app/config.txt"), "w") as f:
        f.write("color=blue\n")
    if variant >= 2:
        # A "security update": a program and a library rebuilt, the documentation edited,
        # a new file, a removed file, a renamed versioned directory.
        with open(os.path.join(root, "usr/bin/ls"), "ab") as f:
            f.write(b"\0patched build 2\0")
        libc = os.path.join(root, "usr/lib/libc.so.6")
        with open(libc, "r+b") as f:
            f.seek(4096)
            f.write(b"PATCHED-LIBC")
        with open(doc, "a") as f:
            f.write("an added line for build 2\n")
        with open(os.path.join(root, "usr/share/doc/NEWS"), "w") as f:
            f.write("Build 2 fixes things.\n")
        os.remove(os.path.join(root, "etc/hostname"))
        with open(os.path.join(root, "opt/app/config.txt"), "w") as f:
            f.write("color=green\n")
    return root
