"""Fixtures for end-to-end runs: a stream built by swupd-server and served by nginx; a device
behind a slow, lossy link (tests/support/netns.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.environment import require_root, unavailable
from support.netns import LossyLink, SetupError
from support.nginx import NGINX, Nginx

TOP = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP / "examples"))


def _install_nginx() -> str | None:
    """nginx from Debian's package, installed when missing and we may (CI runs as root)."""
    if os.access(NGINX, os.X_OK):
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "nginx is not installed and cannot be installed here (not root or no apt-get)"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "nginx"]):
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if r.returncode != 0 and not os.access(NGINX, os.X_OK):
            return f"installing nginx failed: {r.stderr.strip()[-300:]}"
    return None if os.access(NGINX, os.X_OK) else "nginx did not install"


@pytest.fixture(scope="session")
def nginx_available(tmp_path_factory):
    lock = tmp_path_factory.getbasetemp().parent / "nginx-install.lock"
    import fcntl

    with open(lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        problem = _install_nginx()
    if problem:
        unavailable(problem)


@pytest.fixture
def nginx(nginx_available, tmp_path):
    servers = []

    def start(root: Path) -> Nginx:
        server = Nginx(root, tmp_path / f"nginx{len(servers)}")
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.stop()


@pytest.fixture
def lossy_link() -> Iterator[LossyLink]:
    """The device's network: a namespace of its own behind a slow, lossy link to the host.

    Needs root, and a kernel that can build it (support.environment: skipped with the reason
    where it cannot be built, failed under CI=true)."""
    require_root("a network namespace for the device needs root")
    link = LossyLink()
    try:
        link.open()
    except SetupError as e:
        unavailable(f"cannot build the lossy link: {e}")
    print(f"link {link.host_addr} <-> {link.dev_addr} in {link.ns}: {link.mechanism}")
    yield link
    link.close()
