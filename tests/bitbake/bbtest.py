"""Running real BitBake in tests: build directories, the `bitbake` command, Tinfoil and oelint-adv.

BitBake comes from the pinned `bitbake-setup` wheel plus the project's harness
(tests/bitbake/harness, installed by tests/bitbake/install-harness, which conftest.py runs once
per test session). meta-testcore (tests/bitbake/meta-testcore) stands in for OE-core.

    builddir = make_builddir(tmp_path / "build", layers=[MY_LAYER], local_conf='OS_VERSION = "10"')
    r = bitbake(builddir, "my-image")                    # subprocess.CompletedProcess
    assert r.returncode == 0, describe(r)
    r = bitbake(builddir, "-e", "my-image", env={"OS_VERSION": "20"})   # passed through to BitBake

conftest.py wraps these as fixtures (`make_builddir`, `builddir`, `bitbake`, `oelint`).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOP = HERE.parent.parent
INSTALLER = HERE / "install-harness"
TESTCORE = HERE / "meta-testcore"
HARNESS_TEST_LAYER = HERE / "meta-harness-test"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_LOCAL_CONF = 'BB_NUMBER_THREADS = "2"\n'

# Knotty's summary line: "Tasks Summary: Attempted 12 tasks of which 12 didn't need to be rerun ..."
_SUMMARY = re.compile(r"Attempted (\d+) tasks of which (\d+) didn't need to be rerun")
_RAN = re.compile(r"NOTE: Running (?:noexec )?task \d+ of \d+ \((.+):(do_\w+)\)")


def venv() -> Path:
    """The virtual environment BitBake runs from: the one running the tests, else $SWUPD_VENV or .venv."""
    if sys.prefix != sys.base_prefix:
        return Path(sys.prefix)
    return Path(os.environ.get("SWUPD_VENV") or TOP / ".venv")


def bitbake_command() -> Path:
    return venv() / "bin" / "bitbake"


NO_FAKEROOT = "Debian's fakeroot is not installed (apt-get install fakeroot); BitBake builds need it"


def have_fakeroot() -> bool:
    """Builds run [fakeroot] tasks under Debian's fakeroot (install-harness installs it as root)."""
    return any(os.access(os.path.join(d, "fakeroot"), os.X_OK) for d in SYSTEM_PATH.split(":"))


def make_builddir(
    topdir: os.PathLike | str,
    layers: Iterable[os.PathLike | str] = (),
    local_conf: str = "",
) -> Path:
    """A build directory: conf/bblayers.conf with meta-testcore and `layers`, and conf/local.conf
    with BB_NUMBER_THREADS = "2" followed by `local_conf`. Returns its path (TOPDIR)."""
    top = Path(topdir).resolve()
    (top / "conf").mkdir(parents=True, exist_ok=True)
    paths = [TESTCORE, *(Path(p).resolve() for p in layers)]
    bblayers = "".join(f"    {p} \\\n" for p in paths)
    (top / "conf" / "bblayers.conf").write_text(
        f'# Written by tests/bitbake/bbtest.py\nBBPATH = "${{TOPDIR}}"\nBBFILES ?= ""\nBBLAYERS = " \\\n{bblayers}"\n'
    )
    (top / "conf" / "local.conf").write_text(
        "# Written by tests/bitbake/bbtest.py\n" + DEFAULT_LOCAL_CONF + local_conf + ("\n" if local_conf else "")
    )
    return top


def append_local_conf(builddir: os.PathLike | str, text: str) -> None:
    with open(Path(builddir) / "conf" / "local.conf", "a") as f:
        f.write(text if text.endswith("\n") else text + "\n")


def clean_env(builddir: os.PathLike | str, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> dict:
    """The environment BitBake runs in: HOME (a directory of the build directory), a PATH with
    the venv's bin/ first, LANG=C.UTF-8, BBPATH when not run from the build directory, and `env`,
    whose names are added to BB_ENV_PASSTHROUGH_ADDITIONS so that BitBake passes them into its
    datastore."""
    top = Path(builddir).resolve()
    home = top / "home"
    home.mkdir(parents=True, exist_ok=True)
    result = {"HOME": str(home), "PATH": f"{venv() / 'bin'}:{SYSTEM_PATH}", "LANG": "C.UTF-8"}
    if cwd is not None and Path(cwd).resolve() != top:
        result["BBPATH"] = str(top)
    if env:
        result.update(env)
        names = set(result.get("BB_ENV_PASSTHROUGH_ADDITIONS", "").split()) | set(env)
        names.discard("BB_ENV_PASSTHROUGH_ADDITIONS")
        result["BB_ENV_PASSTHROUGH_ADDITIONS"] = " ".join(sorted(names))
    return result


def bitbake(
    builddir: os.PathLike | str,
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: os.PathLike | str | None = None,
    timeout: float = 600,
    check: bool = False,
) -> subprocess.CompletedProcess:
    """Runs `bitbake ARGS` for the build directory (from it unless `cwd` is given) in a clean
    environment (see clean_env). Returns the CompletedProcess (text stdout and stderr; knotty
    prints errors on stderr). check=True raises AssertionError with the output on failure."""
    top = Path(builddir).resolve()
    workdir = Path(cwd).resolve() if cwd is not None else top
    r = subprocess.run(
        [str(bitbake_command()), *args],
        cwd=workdir,
        env=clean_env(top, env, workdir),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    r.builddir = top
    wait_for_server_exit(top)
    if check and r.returncode != 0:
        raise AssertionError(describe(r))
    return r


def wait_for_server_exit(builddir: os.PathLike | str, timeout: float = 30) -> bool:
    """Waits until the build directory's BitBake server has let go of bitbake.lock (it lingers
    about a second after its client), so that the next command starts a fresh server instead of
    reconnecting to one that is shutting down. True when the server is gone."""
    lockfile = Path(builddir) / "bitbake.lock"
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(lockfile, "a") as f:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True  # closing the file releases the lock
        except FileNotFoundError:
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)


def describe(r: subprocess.CompletedProcess, lines: int = 60) -> str:
    """A failed bitbake run for an assertion message: the command, its output and the end of
    bitbake-cookerdaemon.log (where server-side tracebacks go)."""
    parts = [f"$ {' '.join(map(str, r.args))}  -> exit {r.returncode}"]
    for name in ("stdout", "stderr"):
        text = getattr(r, name) or ""
        if text.strip():
            parts.append(f"--- {name} (last {lines} lines) ---\n" + "\n".join(text.splitlines()[-lines:]))
    top = getattr(r, "builddir", None)
    log = Path(top) / "bitbake-cookerdaemon.log" if top else None
    if log and log.exists():
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        parts.append(f"--- {log} (last {lines} lines) ---\n" + "\n".join(tail))
    return "\n".join(parts)


@dataclass(frozen=True)
class TaskSummary:
    attempted: int
    not_rerun: int


def task_summary(r: subprocess.CompletedProcess) -> TaskSummary | None:
    """Knotty's "Tasks Summary" numbers, or None when the run printed none."""
    m = _SUMMARY.search(r.stdout + r.stderr)
    return TaskSummary(int(m.group(1)), int(m.group(2))) if m else None


def tasks_run(r: subprocess.CompletedProcess) -> list[tuple[str, str]]:
    """(recipe file name, task) of every task the run started, noexec ones included, in order."""
    return [(Path(fn).name, task) for fn, task in _RAN.findall(r.stdout + r.stderr)]


def read_pkgdata_files(pkgdata_dir: os.PathLike | str, package: str) -> dict[str, int]:
    """FILES_INFO of a package from its runtime package data: path -> size."""
    for line in (Path(pkgdata_dir) / "runtime" / package).read_text().splitlines():
        key, _, value = line.partition(": ")
        if key == f"FILES_INFO:{package}":
            return json.loads(value)
    raise KeyError(f"no FILES_INFO:{package} in the package data")


def parse_env_output(text: str) -> dict[str, str]:
    """Variables of `bitbake -e` output (VAR="value" lines; shell functions are left out)."""
    result = {}
    for line in text.splitlines():
        m = re.match(r'^(?:export )?([A-Za-z0-9_:.\-${}@/+]+)="(.*)"$', line)
        if m:
            result[m.group(1)] = m.group(2).replace('\\"', '"').replace("\\$", "$")
    return result


# -- oelint-adv -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    severity: str
    rule: str
    message: str


def oelint(
    *files: os.PathLike | str,
    release: str = "scarthgap",
    known_vars: Iterable[str] = (),
    suppress: Iterable[str] = ("oelint.vars.homepageping",),
    args: Iterable[str] = (),
    cwd: os.PathLike | str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess:
    """Runs oelint-adv quietly on `files` for a release. `known_vars` are added to its known
    variables (a --constantmods file), `suppress` lists rules to silence (by default the one that
    pings HOMEPAGE over the network). The result's `findings` lists what it reported; exit
    status 1 means findings. HOME is a fresh directory, so no user configuration applies."""
    with tempfile.TemporaryDirectory(prefix="oelint-") as tmp:
        cmd = [str(venv() / "bin" / "oelint-adv"), "--quiet", f"--release={release}"]
        cmd += [f"--suppress={rule}" for rule in suppress]
        known = list(known_vars)
        if known:
            mods = Path(tmp) / "constantmods.json"
            mods.write_text(json.dumps({"variables": {"known": known}}))
            cmd.append(f"--constantmods=+{mods}")
        cmd += list(args)
        cmd += ["--", *(str(f) for f in files)]
        env = {"HOME": tmp, "PATH": f"{venv() / 'bin'}:{SYSTEM_PATH}", "LANG": "C.UTF-8"}
        r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    r.findings = parse_oelint(r.stdout + r.stderr)
    return r


def parse_oelint(text: str) -> list[Finding]:
    """Findings of oelint-adv's default output format (path:line:severity:rule:message)."""
    findings = []
    for line in text.splitlines():
        m = re.match(r"^(.+?):(\d+):(info|warning|error):([\w.\-]+):(.*)$", line)
        if m:
            findings.append(Finding(m.group(1), int(m.group(2)), m.group(3), m.group(4), m.group(5)))
    return findings
