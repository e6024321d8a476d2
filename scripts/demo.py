"""The demo: publish two versions of a built-in example OS and show what was made.

Builds example root file systems from the host's own programs (version 10, then a version 20
with a patched program and library, edited, added and removed files), makes a signing key,
publishes both with `swupd-server create-update` into demo-out/www, writes the HTML report and
prints what happened.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "examples"))

import exampletree  # noqa: E402

OUT = os.path.join(TOP, "demo-out")
BIN = os.path.dirname(sys.executable)


def run(*args: str) -> None:
    print("$", " ".join(os.path.relpath(a, TOP) if a.startswith(TOP) else a for a in args), flush=True)
    if subprocess.run(args, check=False).returncode != 0:
        sys.exit(f"demo: {os.path.basename(args[0])} {args[1]} failed")


def main() -> int:
    started = time.monotonic()
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    server = os.path.join(BIN, "swupd-server")
    key, pub, www = (os.path.join(OUT, n) for n in ("signing.key", "signing.pub", "www"))
    bundles = os.path.join(TOP, "examples", "bundles.toml")
    run(server, "keygen", "--private", key, "--public", pub)
    for version, variant in ((10, 1), (20, 2)):
        rootfs = exampletree.make_tree(os.path.join(OUT, f"rootfs-{version}"), variant)
        run(
            server,
            "create-update",
            "--www",
            www,
            "--rootfs",
            rootfs,
            "--bundles",
            bundles,
            "--version",
            str(version),
            "--signing-key",
            key,
            "--compat",
            "demo-machine",
            "--strict",
        )
    run(server, "report", "--www", www)
    print()
    for name in ("version/format1/latest", "20/Manifest.MoM", "20/Manifest.app"):
        print(f"--- www/{name}")
        with open(os.path.join(www, name)) as f:
            print(f.read().rstrip())
    print("\n--- packs and fullfiles of version 20")
    for name in sorted(os.listdir(os.path.join(www, "20"))):
        if name.startswith("pack-"):
            print(f"{os.path.getsize(os.path.join(www, '20', name)):>10}  www/20/{name}")
    print(f"{len(os.listdir(os.path.join(www, '20', 'files'))):>10}  fullfiles new in www/20/files/")
    print(f"\ndemo finished in {time.monotonic() - started:.1f}s; open {os.path.relpath(www, TOP)}/report/index.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
