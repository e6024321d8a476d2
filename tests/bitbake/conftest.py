"""Fixtures of the BitBake tests: real BitBake (bitbake-setup wheel + tests/bitbake/harness) over
meta-testcore, a stand-in for OE-core.

Every test in this directory is marked `bitbake` and first makes sure the harness is installed
(tests/bitbake/install-harness, once per test process, serialised across pytest-xdist workers
by a lock). When the packages cannot be installed (no access to PyPI) the tests are skipped with
the reason; SWUPD_REQUIRE_BITBAKE=1 turns that skip into a failure (for CI that must run them).

Fixtures:
    make_builddir(layers=(), local_conf="", name="build") -> Path   a new build directory in tmp_path
    builddir -> Path                                                 make_builddir() with no extra layer
    bitbake(builddir, *args, env=None, cwd=None, timeout=600, check=False) -> CompletedProcess
    oelint(*files, release="scarthgap", known_vars=(), suppress=(...), args=()) -> CompletedProcess
    fakeroot                                                         skips when Debian's fakeroot is missing
and module-level helpers in bbtest.py (tmp_path_factory users call bbtest.make_builddir).
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import bbtest
import pytest

HERE = Path(__file__).resolve().parent


def pytest_configure(config):
    config.addinivalue_line("markers", "bitbake: runs real BitBake (tests/bitbake); needs the harness installed")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.bitbake)


def _install_harness():
    """(ok, message): runs install-harness for the test venv under a lock shared by the workers."""
    venv = bbtest.venv()
    venv.mkdir(parents=True, exist_ok=True)
    with open(venv / ".bitbake-harness-pytest.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        r = subprocess.run([str(bbtest.INSTALLER), str(venv)], capture_output=True, text=True, timeout=1200)
    if r.returncode == 0:
        return True, r.stderr.strip()
    details = r.stderr.strip()
    last = details.splitlines()[-1] if details else f"exit status {r.returncode}"
    message = f"the BitBake test harness could not be installed: {last}\n{details}"
    if r.returncode != 2:  # 2: the packages are unavailable; anything else is a bug to see
        pytest.fail(message, pytrace=False)
    return False, message


@pytest.fixture(scope="session")
def bitbake_harness():
    ok, message = _install_harness()
    if not ok:
        if os.environ.get("SWUPD_REQUIRE_BITBAKE") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    # A .pth file added just now is not in this process's path yet (Tinfoil imports bb here).
    lib = str(bbtest.venv() / "lib" / "bitbake-harness")
    if lib not in sys.path:
        sys.path.append(lib)
    return bbtest.bitbake_command()


@pytest.fixture(autouse=True)
def _needs_harness(bitbake_harness):
    """Every test here needs the harness."""


@pytest.fixture
def fakeroot():
    """Builds run [fakeroot] tasks under Debian's fakeroot; skip when it is not installed."""
    if not bbtest.have_fakeroot():
        pytest.skip(bbtest.NO_FAKEROOT)


@pytest.fixture
def make_builddir(tmp_path):
    def make(layers=(), local_conf="", name="build"):
        return bbtest.make_builddir(tmp_path / name, layers=layers, local_conf=local_conf)

    return make


@pytest.fixture
def builddir(make_builddir):
    return make_builddir()


@pytest.fixture(name="bitbake")
def bitbake_fixture():
    return bbtest.bitbake


@pytest.fixture(name="oelint")
def oelint_fixture():
    return bbtest.oelint
