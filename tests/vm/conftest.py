"""The `vm` tier: the test device booted with OE-core's runqemu (scripts/vmdevice).

Its tests need root (debootstrap, chroot) and QEMU; they install QEMU, OVMF and the disk tools
from Debian when missing. Where QEMU cannot run at all they skip with the reason, and under
`CI=true` they fail instead. They share one nginx port: its server holds a lock on the port
(vmdevice.serve), so on two test workers their devices run one after the other."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP / "scripts"))

from support.environment import require_root, unavailable  # noqa: E402
from vmdevice import image as img  # noqa: E402
from vmdevice.oecore import Unavailable  # noqa: E402


@pytest.fixture(scope="session")
def device_image() -> img.Image:
    require_root("the test device is built as root (debootstrap, chroot)")
    try:
        img.provide_host()
    except SystemExit as e:
        unavailable(f"cannot install QEMU and the disk tools: {e}")
    if not shutil.which("qemu-system-x86_64"):
        unavailable("qemu-system-x86_64 is not installed")
    r = subprocess.run(["qemu-system-x86_64", "-accel", "help"], capture_output=True, text=True)
    if "tcg" not in r.stdout:
        unavailable(f"QEMU cannot emulate here: {r.stdout.strip() or r.stderr.strip()}")
    try:
        from vmdevice.oecore import oe_core

        oe_core()
    except Unavailable as e:
        unavailable(str(e))
    return img.build(log=lambda m: print(f"vm-image: {m}", flush=True))
