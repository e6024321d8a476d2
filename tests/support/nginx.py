"""nginx serving one directory on a loopback port, with its own prefix, pid and logs: the way a
stream is really published. Used by the end-to-end tests and by scripts/bench-client."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

NGINX = "/usr/sbin/nginx"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Nginx:
    """As root its worker keeps root's identity: the served directories may be private to root.
    Each access-log line starts with the bytes sent for the request."""

    def __init__(self, root: Path | str, workdir: Path | str, port: int = 0) -> None:
        workdir = Path(workdir)
        self.port = port or free_port()
        self.prefix = workdir
        (workdir / "logs").mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "nginx.conf"
        self.conf.write_text(
            f"""daemon on;
{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/logs/error.log;
events {{ worker_connections 256; }}
http {{
    log_format sent '$bytes_sent "$request" $status';
    access_log {workdir}/logs/access.log sent;
    sendfile on;
    tcp_nodelay on;
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

    def bytes_sent(self) -> int:
        """Bytes sent so far, headers included (nginx writes a request's line when it ends)."""
        return sum(int(line.split(" ", 1)[0]) for line in self.requests() if line[:1].isdigit())

    def stop(self) -> None:
        """Returns once the master has exited: `nginx -s stop` only signals it, and the next
        server on the same port must not find the port still bound."""
        pidfile = self.prefix / "nginx.pid"
        try:
            pid = int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pid = 0
        subprocess.run([NGINX, "-p", str(self.prefix), "-c", str(self.conf), "-s", "stop"], capture_output=True)
        deadline = time.monotonic() + 30
        while pid and _running(pid):
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                deadline += 30
            time.sleep(0.05)


def _running(pid: int) -> bool:
    """A zombie has let go of its sockets: it counts as gone (no init may be reaping here)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
