"""The device's update server: nginx on the host's loopback, port PORT (the guest's
http://10.0.2.2:PORT), serving a symbolic link that is pointed at one published release at a time.

The port is baked into the device's settings, so one server at a time may hold it: a server
waits for the lock of its port (two test processes, or a test run beside scripts/powercut)."""

from __future__ import annotations

import fcntl
import os
import sys
import tempfile
from pathlib import Path

from .image import PORT, Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from support.nginx import Nginx


class Server:
    def __init__(self, image: Image, workdir: Path, version: int = 10):
        self.image = image
        workdir.mkdir(parents=True, exist_ok=True)
        self.link = workdir / "served"
        self.publish(version)
        self._lock = open(Path(tempfile.gettempdir()) / f"meta-swupd-vm-port-{PORT}.lock", "a")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        try:
            self.nginx = Nginx(self.link, workdir / "nginx", port=PORT)
        except BaseException:
            self._lock.close()
            raise

    def publish(self, version: int) -> None:
        """Release `version` is what the server serves from now on (an atomic rename)."""
        tmp = self.link.with_name("served.next")
        if os.path.lexists(tmp):
            tmp.unlink()
        tmp.symlink_to(self.image.www(version))
        os.replace(tmp, self.link)

    def stop(self) -> None:
        try:
            self.nginx.stop()
        finally:
            self._lock.close()
