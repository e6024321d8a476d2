"""Helpers of the build-side tests: running the command, making trees, snapshots of www/."""

from __future__ import annotations

import contextlib
import io
import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass

import exampletree
import reader
from support import oracle
from support.trees import write_file as _write
from support.trees import xattrs_supported
from swupd_server.cli import main

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE_BUNDLES = os.path.join(TOP, "examples", "bundles.toml")
SERVER = os.path.join(os.path.dirname(sys.executable), "swupd-server")
JOBS = "2"


@dataclass
class Result:
    rc: int
    out: str
    err: str

    def one_line_error(self) -> str:
        """The error message, checked to be one line without a traceback."""
        assert self.rc != 0, f"expected a failure, got rc 0; stdout: {self.out[-2000:]}"
        assert "Traceback" not in self.err and "Traceback" not in self.out, self.err
        lines = self.err.strip("\n").split("\n")
        assert len(lines) == 1 and lines[0], f"error is not one line: {self.err!r}"
        assert lines[0].startswith("swupd-server: "), lines[0]
        return lines[0]


def cli(*args: str) -> Result:
    """Run `swupd-server` in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in args])
    return Result(rc, out.getvalue(), err.getvalue())


def cli_process(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Result:
    """Run the installed `swupd-server` command."""
    p = subprocess.run([SERVER, *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout, check=False)
    return Result(p.returncode, p.stdout, p.stderr)


def create_args(www, rootfs, version, key, bundles=EXAMPLE_BUNDLES, *extra) -> list[str]:
    return [
        "create-update",
        "--www", str(www),
        "--rootfs", str(rootfs),
        "--bundles", str(bundles),
        "--version", str(version),
        "--signing-key", str(key),
        "--jobs", JOBS,
        *map(str, extra),
    ]  # fmt: skip


def create(www, rootfs, version, key, bundles=EXAMPLE_BUNDLES, *extra) -> Result:
    """create-update in this process; fails the test unless it succeeds."""
    r = cli(*create_args(www, rootfs, version, key, bundles, *extra))
    assert r.rc == 0, f"create-update {version} failed ({r.rc}): {r.err}"
    return r


def make_stream_tree(root: str, variant: int) -> str:
    """exampletree's tree plus changes the example does not make: a file moved unchanged, a
    permission-only and an owner-only change, a file turned into a symlink, an xattr change,
    a library moving to a versioned directory, a directory removed with its content."""
    exampletree.make_tree(root, variant)
    blob = random.Random(7).randbytes(300_000)
    with open("/bin/cat", "rb") as f:
        elf = f.read()
    text = b"".join(b"setting %d = %d\n" % (i, i * i) for i in range(80))
    _write(root, "usr/share/data/same.txt", text)
    if variant == 1:
        _write(root, "usr/share/data/blob.bin", blob)
        _write(root, "usr/share/data/perm.txt", text, 0o644)
        _write(root, "usr/share/data/owned.txt", text + b"owned\n")
        _write(root, "usr/share/data/kind", b"a regular file for now\n")
        _write(root, "usr/lib/py3.10/ext.so", elf, 0o755)
        _write(root, "var/lib/old/state.db", text + b"state\n")
        xattr_value = b"one"
    else:
        _write(root, "usr/share/data2/blob.bin", blob)
        _write(root, "usr/share/data/perm.txt", text, 0o600)
        _write(root, "usr/share/data/owned.txt", text + b"owned\n", 0o644, 1000, 1000)
        os.symlink("perm.txt", os.path.join(root, "usr/share/data/kind"))
        patched = bytearray(elf)
        patched[1000:1016] = b"patched-ext-so-2"
        _write(root, "usr/lib/py3.11/ext.so", bytes(patched), 0o755)
        xattr_value = b"two"
    path = _write(root, "usr/share/data/xattr.bin", text * 3)
    if xattrs_supported(root):
        os.setxattr(path, "user.note", xattr_value)
    return root


def snapshot(root: str) -> dict[bytes, tuple]:
    """Every file of a tree with its bytes (or link target), for before/after comparisons."""
    out: dict[bytes, tuple] = {}
    broot = os.fsencode(root)
    for dirpath, dirnames, filenames in os.walk(broot):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, broot)
            if os.path.islink(path):
                out[rel] = ("L", os.readlink(path))
            elif os.path.isdir(path):
                out[rel] = ("D",)
            else:
                with open(path, "rb") as f:
                    out[rel] = ("F", f.read())
    return out


def assert_same_snapshot(before: dict, after: dict) -> None:
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(p for p in set(before) & set(after) if before[p] != after[p])
    assert not (added or removed or changed), (
        f"www changed: added {added[:10]}, removed {removed[:10]}, changed {changed[:10]}"
    )


def copy_www(src: str, dest: str) -> str:
    shutil.copytree(src, dest, symlinks=True)
    return dest


def all_entries(bundles: dict[str, oracle.Manifest]) -> dict[bytes, oracle.Entry]:
    """Present entries of every bundle by path (a path in several bundles has one hash)."""
    out: dict[bytes, oracle.Entry] = {}
    for m in bundles.values():
        for e in m.present():
            assert out.get(e.path, e).hash == e.hash, f"{e.path!r} has two hashes"
            out[e.path] = e
    return out


GENERATED = {b"/usr/lib/os-release"}
MARKERS = b"/usr/share/clear/bundles"


def is_generated(path: bytes) -> bool:
    """Objects the build adds to every rootfs: os-release and the bundle markers with their dirs."""
    return path in GENERATED or path in (b"/usr/share/clear", MARKERS) or path.startswith(MARKERS + b"/")


def compare_to_rootfs(result: dict[bytes, oracle.Obj], rootfs: str, entries: dict[bytes, oracle.Entry]) -> None:
    """`result` (a tree made from published content) holds exactly the rootfs, object by object;
    generated objects (os-release, bundle markers) match the manifests instead."""
    expected = reader.tree(rootfs)
    problems = []
    for path, obj in sorted(result.items()):
        if path in expected and path not in GENERATED:
            if obj != expected[path]:
                problems.append(f"{path!r}: got {obj.describe()}, rootfs has {expected[path].describe()}")
        elif is_generated(path):
            e = entries.get(path)
            if e is None or obj.hash() != e.hash:
                problems.append(f"generated {path!r} does not match its manifest entry")
        else:
            problems.append(f"{path!r} is not in the rootfs")
    for path in sorted(set(expected) - set(result)):
        problems.append(f"{path!r} of the rootfs is missing")
    assert not problems, "\n".join(problems[:30])
