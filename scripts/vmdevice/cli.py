"""Entry points of scripts/vm-image and scripts/powercut."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
from pathlib import Path

from . import image as img


def _image(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="vm-image", description="build (and boot) the test device")
    p.add_argument("--boot", action="store_true", help="boot version 10 and open a shell on it")
    args = p.parse_args(argv)
    image = img.build(log=lambda m: print(f"vm-image: {m}", file=sys.stderr, flush=True))
    print(image.root)
    if args.boot:
        from .runner import Device

        dev = Device(image, Path(tempfile.mkdtemp(prefix="swupd-device-")))
        print(f"booted in {dev.boot():.0f} s; console log {dev.console}", file=sys.stderr)
        try:
            os.system(f"ssh -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -p {dev.port} root@127.0.0.1")
        finally:
            dev.shutdown()
    return 0


def main() -> int:
    # A terminated run still stops its QEMU and nginx (the `finally` blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if len(sys.argv) < 2 or sys.argv[1] not in ("image", "powercut"):
        print("usage: python -m vmdevice.cli image|powercut ...", file=sys.stderr)
        return 2
    if sys.argv[1] == "image":
        return _image(sys.argv[2:])
    from .powercut import main as powercut

    return powercut(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
