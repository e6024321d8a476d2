"""Helpers of the device-side tests: example OS versions, the swupd command, tree oracles.

The content the client is tested against is real: root file systems built here, published by
`swupd-server create-update`, signed with a key from `swupd-server keygen`. Manifests, hashes
and trees are read with the tests' own oracle (`support.oracle`, written from docs/format.md,
importing nothing from `swupd`), so the tests compare the device's tree with the build's input,
not the client with itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from unittest import mock

import exampletree
from support.oracle import Entry, Manifest, Obj, load_manifest, read_obj, read_tree
from support.trees import write_file as _write
from support.trees import xattrs_supported

BIN = os.path.dirname(sys.executable)
SWUPD = os.path.join(BIN, "swupd")
SERVER = os.path.join(BIN, "swupd-server")
COMPAT = "test-machine"
FORMAT = "1"

BUNDLES_TOML = """\
[bundle.app]
paths = ["/opt/app"]

[bundle.app-docs]
includes = ["app"]
paths = ["/usr/share/doc/**"]

[bundle.tools]
paths = ["/opt/tools", "/usr/share/common/**"]

[bundle.extras]
paths = ["/opt/extras", "/usr/share/common/**"]
"""
ALL_BUNDLES = ("os-core", "app", "app-docs", "tools", "extras")

# Paths whose content the device owns (the client's state prefixes that the example uses).
STATE_PREFIXES = ("/var/",)
# Objects the build adds to every version.
MARKERS = "/usr/share/clear/bundles"
GENERATED_DIRS = ("/usr/share/clear", MARKERS)


# -- example OS versions ----------------------------------------------------------------------


def make_rootfs(root: str, variant: int) -> str:
    """Version `variant` (1, 2, 3 for 10, 20, 30) of the example OS with the kinds of change a
    device must get right: content, mode, owner, setuid, xattrs, a file turned into a symlink,
    a retargeted symlink, a directory turned into a file, a directory deleted, a big random
    file, configuration under /etc and state under /var, and files shared by two bundles."""
    exampletree.make_tree(root, min(variant, 2))
    text = b"".join(b"setting %d = %d\n" % (i, i * i) for i in range(80))
    _write(root, "usr/share/data/same.txt", text)
    _write(root, "usr/share/common/shared.txt", b"shared by tools and extras\n")
    _write(root, "opt/tools/tool.sh", b"#!/bin/sh\necho tool\n", 0o755)
    _write(root, "opt/extras/extra.sh", b"#!/bin/sh\necho extra\n", 0o755)
    big = random.Random(variant if variant < 3 else 2).randbytes(300_000)
    _write(root, "usr/share/data/big.bin", big)
    if variant == 1:
        _write(root, "usr/share/data/perm.txt", text, 0o644)
        _write(root, "usr/share/data/owned.txt", text + b"owned\n")
        _write(root, "usr/share/data/kind", b"a regular file for now\n")
        os.symlink("same.txt", os.path.join(root, "usr/share/data/link"))
        _write(root, "usr/bin/suid-tool", b"#!/bin/sh\necho suid 1\n", 0o4755)
        _write(root, "usr/lib/plugins-1/plugin.so", b"plugin one\n" * 50)
        _write(root, "usr/share/swap/inner", b"inside a directory that becomes a file\n")
        _write(root, "etc/app.conf", b"mode=old\n")
        _write(root, "var/lib/app/state.txt", b"state of build 1\n")
        _write(root, "var/lib/old/state.db", b"state only build 1 has\n")
        xattr_value = b"one"
    else:
        _write(root, "usr/share/data/perm.txt", text, 0o600)
        _write(root, "usr/share/data/owned.txt", text + b"owned\n", 0o644, 1000, 1000)
        os.symlink("perm.txt", os.path.join(root, "usr/share/data/kind"))
        os.symlink("perm.txt", os.path.join(root, "usr/share/data/link"))
        _write(root, "usr/bin/suid-tool", b"#!/bin/sh\necho suid 2\n", 0o4755)
        _write(root, "usr/lib/plugins-2/plugin.so", b"plugin two\n" * 50)
        _write(root, "usr/share/swap", b"a file where a directory was\n")
        _write(root, "etc/app.conf", b"mode=new\n")
        _write(root, "var/lib/app/state.txt", b"state of build 2\n")
        xattr_value = b"two"
    if variant >= 3:
        with open(os.path.join(root, "usr/share/doc/NEWS"), "a") as f:
            f.write("Build 3 fixes more things.\n")
        _write(root, "usr/share/data/v30.txt", b"new in 30\n")
    path = _write(root, "usr/share/data/xattr.bin", text * 3)
    if xattrs_supported(root):
        os.setxattr(path, "user.note", xattr_value)
    return root


# -- the published content, read independently ------------------------------------------------


def mom(www: str, version: int) -> Manifest:
    return load_manifest(os.path.join(www, str(version), "Manifest.MoM"))


def bundle_manifest(www: str, version: int, bundle: str) -> Manifest:
    e = {e.name: e for e in mom(www, version).present()}[bundle]
    return load_manifest(os.path.join(www, str(e.version), f"Manifest.{bundle}"))


def closure(www: str, version: int, bundles) -> dict[str, Manifest]:
    todo, out = sorted(set(bundles) | {"os-core"}), {}
    while todo:
        b = todo.pop()
        if b not in out:
            out[b] = bundle_manifest(www, version, b)
            todo.extend(out[b].includes)
    return out


def entries(www: str, version: int, bundles) -> dict[str, Entry]:
    """Present entries of the bundles (and their includes) of a version, by path (decoded as
    the device's file names are, so that they compare with `read_tree` of a str root)."""
    out: dict[str, Entry] = {}
    for m in closure(www, version, bundles).values():
        for e in m.present():
            p = os.fsdecode(e.path)
            assert out.get(p, e).hash == e.hash, f"{p} has two hashes in version {version}"
            out[p] = e
    return out


# -- objects on disk ----------------------------------------------------------------------------


def snapshot(root: str, skip: tuple[str, ...] = ()) -> dict[str, tuple]:
    """Byte-level snapshot for before/after comparisons: objects plus the modification times of
    files and links (a directory's changes with what is made and removed inside it)."""
    return {p: (o, o.mtime_ns if o.kind in ("F", "L") else 0) for p, o in read_tree(root, skip).items()}


def diff_snapshots(before: dict, after: dict) -> str:
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(p for p in set(before) & set(after) if before[p] != after[p])
    if not (added or removed or changed):
        return ""
    return f"added {added[:10]}, removed {removed[:10]}, changed {changed[:10]}"


def hashes_to(o: Obj, digest: str) -> bool:
    """Whether `o` is an object a manifest can hold and has the file hash `digest`."""
    return o.kind in ("F", "D", "L") and o.hash() == digest


def is_state(path: str) -> bool:
    return path.startswith(STATE_PREFIXES)


def is_generated(path: str) -> bool:
    return path == "/usr/lib/os-release" or path in GENERATED_DIRS or path.startswith(MARKERS + "/")


@dataclass
class Stream:
    """A published stream: `www` (what is served), the rootfs of each version, keys."""

    www: str
    rootfs: dict[int, str]
    key: str  # public key file
    private: str
    other_key: str  # a public key that signed nothing
    other_private: str
    bundles_toml: str
    latest_of: dict[int, tuple[bytes, bytes]]  # latest and latest.sig as they were after each build
    old_www: str = ""  # versions 10 and 20 built with SOURCE_DATE_EPOCH a month ago
    www30: str = ""  # versions 10, 20 and 30

    def expected(self, version: int, bundles, old: dict[str, Obj] | None = None) -> dict[str, Obj | Entry]:
        """What a device with `bundles` holds at `version`: rootfs objects (manifest entries for
        generated ones). With `old` (the tree before an update), state paths keep their old
        object and state paths the new version dropped stay."""
        want: dict[str, Obj | Entry] = {}
        rootfs = self.rootfs[version]
        for p, e in entries(self.www30 or self.www, version, bundles).items():
            want[p] = e if is_generated(p) else read_obj(os.path.join(rootfs, p.lstrip("/")))
        for p, o in (old or {}).items():
            if is_state(p):
                want[p] = o
        return want


# What os-install writes for the installed system besides the OS (checked exactly by
# test_swupd_install.py): allowed beside any expected tree.
KEPT_SETTINGS = "/etc/swupd"


def compare_tree(root: str, want: dict, allow_extra=(), skip: tuple[str, ...] = ()) -> list[str]:
    """Differences between the tree and `want` (path -> Obj, or Entry for hash-only checks)."""
    have = read_tree(root, skip)
    allow_extra = (*allow_extra, KEPT_SETTINGS)
    problems = []
    for p, w in sorted(want.items()):
        h = have.get(p)
        if h is None:
            problems.append(f"{p}: missing")
        elif isinstance(w, Entry):
            if not hashes_to(h, w.hash):
                problems.append(f"{p}: {h.describe()} does not hash to its manifest entry")
        elif h != w:
            problems.append(f"{p}: {h.describe()}, expected {w.describe()}")
    for p in sorted(set(have) - set(want)):
        if not any(p == a or p.startswith(a.rstrip("/") + "/") for a in allow_extra):
            problems.append(f"{p}: not expected")
    return problems


def assert_tree(root: str, want: dict, allow_extra=(), skip: tuple[str, ...] = ()) -> None:
    problems = compare_tree(root, want, allow_extra, skip)
    assert not problems, "tree differs:\n" + "\n".join(problems[:40])


def os_release_version(root: str) -> int:
    with open(os.path.join(root, "usr/lib/os-release")) as f:
        m = re.search(r"^VERSION_ID=(\d+)$", f.read(), re.M)
    assert m, "no VERSION_ID"
    return int(m[1])


# -- running the client -----------------------------------------------------------------------


@dataclass
class Result:
    rc: int
    out: str
    err: str

    def error_line(self) -> str:
        """The one-line error of a failed run, checked to come without a traceback."""
        assert self.rc != 0, f"expected a failure, got 0: {self.out[-2000:]}"
        assert "Traceback" not in self.err + self.out, self.err
        lines = [line for line in self.err.splitlines() if line.startswith("Error: ")]
        assert len(lines) == 1, f"expected one error line: {self.err!r}"
        return lines[0]


FAST_NET = dict(connect_timeout=2.0, read_timeout=5.0, backoff_base=0.01, backoff_max=0.05)


def _release_leaked_locks(statedirs: list[str]) -> None:
    """`swupd.cli.run` never releases the state directory's lock (the process exits right
    after), so a second in-process call would find it held. Close those descriptors."""
    locks = {os.path.realpath(os.path.join(d, "lock")) for d in statedirs}
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target in locks:
            with contextlib.suppress(OSError):
                os.close(int(fd))


def _statedirs(args: list[str]) -> list[str]:
    out = []
    for i, a in enumerate(args):
        if a in ("--statedir", "-S") and i + 1 < len(args):
            out.append(args[i + 1])
        if a in ("--path", "-p") and i + 1 < len(args):
            out.append(os.path.join(args[i + 1], "var/lib/swupd"))
    if len(args) > 1 and args[0] == "os-install" and not args[1].startswith("-"):
        out.append(os.path.join(args[1], "var/lib/swupd"))
    return out


def run(*args: str, fast_net: bool = True) -> Result:
    """`swupd ARGS` in this process (stdout and stderr captured)."""
    from swupd import cli
    from swupd.transport.fetcher import NetConfig

    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    net = (lambda: dataclasses.replace(NetConfig(), **FAST_NET)) if fast_net else NetConfig
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), mock.patch.object(cli, "NetConfig", net):
            rc = cli.main(argv)
    finally:
        _release_leaked_locks(_statedirs(argv))
    return Result(rc, out.getvalue(), err.getvalue())


def run_process(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Result:
    """The installed `swupd` command."""
    p = subprocess.run([SWUPD, *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout, check=False)
    return Result(p.returncode, p.stdout, p.stderr)


def server_cli(*args: str, env: dict[str, str] | None = None) -> None:
    p = subprocess.run([SERVER, *map(str, args)], capture_output=True, text=True, env=env, check=False)
    assert p.returncode == 0, f"swupd-server {args[0]} failed: {p.stderr}"


def build_version(www: str, rootfs: str, version: int, private: str, bundles_toml: str, *extra: str) -> None:
    """create-update in this process (as fast as it gets), failing the test unless it works."""
    from swupd_server.cli import main

    argv = [
        "create-update", "--www", www, "--rootfs", rootfs, "--bundles", bundles_toml, "--version", str(version),
        "--signing-key", private, "--compat", COMPAT, "--jobs", "1", *extra,
    ]  # fmt: skip
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    assert rc == 0, f"create-update {version} failed ({rc}): {err.getvalue()}"


def clone(src: str, dest: str) -> str:
    """Copy a tree keeping owners, modes, xattrs and links (cp -a)."""
    subprocess.run(["cp", "-a", src, dest], check=True)
    return dest


def copy_www(src: str, dest: str) -> str:
    shutil.copytree(src, dest, symlinks=True)
    return dest


# -- devices ----------------------------------------------------------------------------------

DAY = 86400


@dataclass
class Device:
    """A target root and its state directory (kept outside the root, so that snapshots of the
    root are the OS alone), talking to `url`."""

    root: str
    state: str
    url: str
    stream: Stream

    def opts(self, url: str | None = None, key: str | None = None, compat: str = COMPAT) -> list[str]:
        return [
            "--path", self.root, "--statedir", self.state, "--url", url or self.url,
            "--key", key or self.stream.key, "--format", FORMAT, "--compat", compat,
        ]  # fmt: skip

    def swupd(self, command: str, *args: str, url: str | None = None, **kw: object) -> Result:
        """`swupd COMMAND ARGS` in this process, with this device's global options."""
        return run(command, *args, *self.opts(url, **kw))  # type: ignore[arg-type]

    def swupd_process(self, command: str, *args: str, url: str | None = None, env=None, timeout=60) -> Result:
        return run_process(command, *args, *self.opts(url), env=env, timeout=timeout)

    def snapshot(self) -> dict:
        return snapshot(self.root)

    def tree(self) -> dict[str, Obj]:
        return read_tree(self.root)

    def version(self) -> int:
        return os_release_version(self.root)


# -- forging content ----------------------------------------------------------------------------


def sign(private_key_file: str, data: bytes) -> bytes:
    """A `.sig` file over `data` by the key in `private_key_file` (docs/format.md, Signatures)."""
    import nacl.signing

    with open(private_key_file) as f:
        key = nacl.signing.SigningKey(bytes.fromhex(f.read().split()[-1]))
    keyid = hashlib.sha256(bytes(key.verify_key)).hexdigest()[:16]
    return f"ed25519 {keyid} {key.sign(data).signature.hex()}\n".encode()


def zstd(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=3).compress(data)


def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for info, data in members:
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def member(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, mode: int = 0o644, **kw) -> tuple:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = kind, mode, 1
    for k, v in kw.items():
        setattr(info, k, v)
    if kind in (tarfile.REGTYPE, tarfile.AREGTYPE):
        info.size = len(data)
        return info, data
    return info, None


def fullfile(digest: str, data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0) -> bytes:
    """A well-formed fullfile (a zstd tar with one regular member named `digest`)."""
    return zstd(tar_bytes([member(digest, data, mode=mode, uid=uid, gid=gid)]))


def new_entries(www: str, old: int, new: int, bundles=ALL_BUNDLES) -> dict[str, Entry]:
    """Present entries of `new` whose object `old` did not have (what an update must obtain)."""
    before = {e.hash for e in entries(www, old, bundles).values()}
    return {p: e for p, e in entries(www, new, bundles).items() if e.hash not in before}


# Runs the measured command from a fresh, small interpreter: Linux keeps a process's peak RSS
# across exec, so a child forked straight from a large pytest worker would report the worker's.
_RUSAGE_RUNNER = """
import os, sys
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}")
"""


def wait_rusage(args: list[str], env=None, timeout: float = 60) -> tuple[Result, int]:
    """Run a command; its result and peak resident memory in KiB (from wait4)."""
    import signal
    import tempfile

    with tempfile.NamedTemporaryFile("r", suffix=".rusage") as report:
        runner = [sys.executable, "-S", "-c", _RUSAGE_RUNNER, report.name, *map(str, args)]
        p = subprocess.Popen(runner, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, err = p.communicate()
        rc, maxrss = (int(x) for x in (report.read().split() or ["-9", "0"]))
    return Result(rc, out.decode(errors="replace"), err.decode(errors="replace")), maxrss


def old_or_new(root: str, old: dict[str, Obj], new: dict, skip: tuple[str, ...] = ()) -> list[str]:
    """Paths that are neither as they were before a transaction nor as it leaves them.

    A directory that becomes a file or link cannot be swapped in one rename: between removing
    the directory and moving the new object in, the path is absent, and that is allowed."""
    have = read_tree(root, skip)
    problems = []
    for p in sorted(set(old) | set(new) | set(have)):
        h = have.get(p)
        was = old.get(p)
        is_old = h == was if p in old else h is None
        n = new.get(p)
        if isinstance(n, Entry):
            is_new = h is not None and hashes_to(h, n.hash)
        else:
            is_new = h == n if p in new else h is None
        dir_to_other = was is not None and was.kind == "D" and n is not None and getattr(n, "kind", "D") != "D"
        if not (is_old or is_new or (h is None and dir_to_other)):
            problems.append(f"{p}: {h.describe() if h else 'absent'}")
    return problems
