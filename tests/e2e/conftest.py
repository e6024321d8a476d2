"""Fixtures for end-to-end runs: a stream built by swupd-server and served by nginx; a device
behind a slow, lossy link (tests/support/netns.py)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.netns import LossyLink, SetupError

TOP = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP / "examples"))

NGINX = "/usr/sbin/nginx"


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def nginx_available(tmp_path_factory):
    lock = tmp_path_factory.getbasetemp().parent / "nginx-install.lock"
    import fcntl

    with open(lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        problem = _install_nginx()
    if problem and os.environ.get("CI"):
        pytest.fail(problem)
    if problem:
        pytest.skip(problem)


class Nginx:
    """nginx serving one directory on a loopback port, with its own prefix, pid and logs.

    As root its worker keeps root's identity: the tests' directories are private to root."""

    def __init__(self, root: Path, workdir: Path) -> None:
        self.port = _free_port()
        self.prefix = workdir
        (workdir / "logs").mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "nginx.conf"
        self.conf.write_text(
            f"""daemon on;
{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/logs/error.log;
events {{ worker_connections 64; }}
http {{
    access_log {workdir}/logs/access.log;
    client_body_temp_path {workdir}/body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    types {{ application/octet-stream tar; text/plain latest sig; }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{self.port};
        root {root};
        location /version/ {{ add_header Cache-Control "no-cache"; }}
        location / {{ add_header Cache-Control "public, max-age=31536000, immutable"; }}
    }}
}}
"""
        )
        r = subprocess.run([NGINX, "-p", str(workdir), "-c", str(self.conf)], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"nginx did not start: {r.stderr.strip()}")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests(self) -> list[str]:
        log = self.prefix / "logs" / "access.log"
        return log.read_text().splitlines() if log.exists() else []

    def stop(self) -> None:
        subprocess.run([NGINX, "-p", str(self.prefix), "-c", str(self.conf), "-s", "stop"], capture_output=True)


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

    Skipped without root; as root, a machine that cannot build it fails under CI (where the
    tests must run) and skips elsewhere."""
    if os.geteuid() != 0:
        pytest.skip("a network namespace for the device needs root")
    link = LossyLink()
    try:
        link.open()
    except SetupError as e:
        if os.environ.get("CI"):
            pytest.fail(f"cannot build the lossy link: {e}")
        pytest.skip(f"cannot build the lossy link: {e}")
    print(f"link {link.host_addr} <-> {link.dev_addr} in {link.ns}: {link.mechanism}")
    yield link
    link.close()
