"""One test device booted with OE-core's `runqemu`, driven over SSH, and powered off hard.

    dev = Device(image, workdir)     # its own copy of the disk and of the firmware's variables
    dev.boot()                       # runqemu ... nographic slirp ovmf; waits for sshd
    dev.ssh("swupd update")
    dev.power_cut()                  # SIGKILL of QEMU: the guest's page cache is lost

QEMU's user-mode network (slirp) only: the guest reaches the host's loopback as 10.0.2.2, and
runqemu forwards a host port on 127.0.0.1 to the guest's sshd. TCG unless /dev/kvm works.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import ClassVar

from .image import NAME, Image, write_qemuboot
from .oecore import oe_core

SSH_OPTS = ("-o", "UserKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "LogLevel=ERROR",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=10")  # fmt: skip


class DeviceError(Exception):
    """The device did not boot, or did not answer."""


def kvm_works() -> bool:
    """KVM needs /dev/kvm and a CPU with virtualisation extensions (these machines have the
    former without the latter)."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    with open("/proc/cpuinfo") as f:
        flags = f.read()
    return bool(re.search(r"^flags\s*:.*\b(vmx|svm)\b", flags, re.M))


class Device:
    live: ClassVar[set[Device]] = set()  # devices whose QEMU runs, so that an interrupted run can stop them

    def __init__(self, image: Image, workdir: Path, disk: Path | None = None):
        self.work = workdir
        self.deploy = workdir / "deploy"
        self.deploy.mkdir(parents=True, exist_ok=True)
        self.disk = self.deploy / f"{NAME}.wic"
        if not self.disk.exists():
            run_cp(disk or image.disk, self.disk)
            shutil.copy(image.deploy / "ovmf.bin", self.deploy / "ovmf.bin")
        self.conf = write_qemuboot(self.deploy)
        self.proc: subprocess.Popen | None = None
        self._lock = threading.RLock()
        self._on = False
        self.port = 0
        self.boots = 0
        self.console = workdir / "console.log"

    # --- power -------------------------------------------------------------------------------
    # QEMU runs with -no-reboot: a reboot the guest asks for ends QEMU, and the watcher starts
    # runqemu again at once, so every boot is a cold start of the firmware (OVMF under TCG was
    # seen to hang now and then on a warm reset).
    def _launch(self) -> None:
        self.boots += 1
        args = [str(oe_core() / "scripts" / "runqemu"), str(self.conf), "wic", "nographic", "slirp", "ovmf"]
        if kvm_works():
            args.append("kvm")
        with open(self.console, "a") as log:
            log.write(f"\n===== boot {self.boots}\n")
            log.flush()
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True, cwd=self.work)  # fmt: skip
        self.port = 0

    def _watch(self) -> None:
        while True:
            with self._lock:
                proc = self.proc
            if proc is None:
                return
            proc.wait()
            with self._lock:
                if not self._on or self.proc is not proc:
                    return
                last = self.console.read_text(errors="replace").rsplit("===== boot", 1)[-1]
                if "reboot: Restarting system" not in last:
                    self._on = False  # powered off, or QEMU ended by itself
                    return
                self._launch()

    def boot(self, timeout: float = 420) -> float:
        """Power on and wait until sshd answers; returns the seconds it took."""
        started = time.monotonic()
        with self._lock:
            self._on = True
            self._launch()
            Device.live.add(self)
        threading.Thread(target=self._watch, daemon=True).start()
        self.wait_for_ssh(timeout)
        return time.monotonic() - started

    def wait_for_ssh(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                proc, on = self.proc, self._on
            if proc is None or (proc.poll() is not None and not on):
                raise DeviceError(f"QEMU is not running: {self.tail()}")
            if not self.port:
                # This boot's own forward: an earlier boot's port may be another device's now.
                this_boot = self.console.read_text(errors="replace").rsplit("===== boot", 1)[-1]
                m = re.findall(r"hostfwd=tcp:127\.0\.0\.1:(\d+)-:22", this_boot)
                self.port = int(m[-1]) if m else 0
            if self.port and self.ssh("true", timeout=20, check=False).returncode == 0:
                return
            time.sleep(2)
        self.power_cut()
        raise DeviceError(f"no ssh within {timeout:.0f} s: {self.tail()}")

    def qemu_pid(self) -> int | None:
        """QEMU itself, runqemu's child (killing runqemu alone would leave QEMU running)."""
        if self.proc is None:
            return None
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == self.proc.pid and "qemu-system" in os.readlink(f"/proc/{pid}/exe"):
                    return int(pid)
            except (OSError, IndexError, ValueError):
                continue
        return None

    def power_cut(self) -> None:
        """SIGKILL of QEMU: whatever the guest had not yet written to its disk is gone."""
        with self._lock:
            self._on = False
            Device.live.discard(self)
            proc = self.proc
            if proc is None:
                return
            pid = self.qemu_pid()
            if pid:
                os.kill(pid, signal.SIGKILL)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            self.proc = None
            self.port = 0

    def shutdown(self, timeout: float = 180) -> None:
        """A clean power-off from inside the guest."""
        with self._lock:
            proc = self.proc
        if proc is None:
            return
        self.ssh("systemctl poweroff", timeout=30, check=False)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        self.power_cut()

    def reboot(self, timeout: float = 420) -> float:
        """Reboot from inside the guest and wait for sshd: QEMU ends, the watcher starts it again."""
        with self._lock:
            before = self.boots
        self.ssh("systemctl reboot", timeout=30, check=False)
        started = time.monotonic()
        while time.monotonic() < started + 180:
            with self._lock:
                if self.boots > before:
                    break
                if not self._on:
                    raise DeviceError(f"QEMU did not come back on reboot: {self.tail()}")
            time.sleep(1)
        else:
            raise DeviceError(f"the guest did not reboot: {self.tail()}")
        self.wait_for_ssh(timeout)
        return time.monotonic() - started

    # --- talking to it -------------------------------------------------------------------------
    @property
    def target(self) -> str:
        """What oeqa's `--target-ip` takes: address and forwarded ssh port."""
        return f"127.0.0.1:{self.port}"

    def ssh(self, command: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess:
        cmd = ["ssh", *SSH_OPTS, "-p", str(self.port), "root@127.0.0.1", command]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            r = subprocess.CompletedProcess(cmd, 255, e.stdout or "", f"timed out after {timeout} s")
        if check and r.returncode != 0:
            raise DeviceError(f"`{command}` failed with status {r.returncode}: {(r.stdout + r.stderr)[-2000:]}")
        return r

    def start(self, command: str) -> subprocess.Popen:
        """A command left running on the device (its output in the console log's directory)."""
        out = open(self.work / "command.log", "a")
        return subprocess.Popen(["ssh", *SSH_OPTS, "-p", str(self.port), "root@127.0.0.1", command],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.console.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def run_cp(src: Path, dst: Path) -> None:
    subprocess.run(["cp", "--sparse=always", str(src), str(dst)], check=True)
