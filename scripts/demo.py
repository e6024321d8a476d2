"""The demo: a whole update cycle of a built-in example OS, end to end, on this machine.

Builds example root file systems from the host's own programs (version 10, then a version 20
with a patched program and library, edited, added and removed files), signs and publishes
both with `swupd-server`, serves them with a web server on loopback, installs version 10 into
a directory with `swupd os-install`, updates it to 20, adds and removes a bundle, damages a
file and repairs it, printing every command and what it did.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "examples"))

import exampletree  # noqa: E402

OUT = os.path.join(TOP, "demo-out")
BIN = os.path.dirname(sys.executable)
COMPAT = "demo-machine"


def run(*args: str, check: bool = True) -> int:
    shown = " ".join(os.path.relpath(a, TOP) if a.startswith(TOP) else a for a in args)
    print(f"\n$ {shown}", flush=True)
    rc = subprocess.run(args, check=False).returncode
    if check and rc != 0:
        sys.exit(f"demo: {os.path.basename(args[0])} {args[1]} failed with status {rc}")
    return rc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> int:
    started = time.monotonic()
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    server, client = os.path.join(BIN, "swupd-server"), os.path.join(BIN, "swupd")
    key, pub, www, device = (os.path.join(OUT, n) for n in ("signing.key", "signing.pub", "www", "device"))
    bundles = os.path.join(TOP, "examples", "bundles.toml")
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    print("== Build side: sign and publish versions 10 and 20")
    run(server, "keygen", "--private", key, "--public", pub)
    for version, variant in ((10, 1), (20, 2)):
        rootfs = exampletree.make_tree(os.path.join(OUT, f"rootfs-{version}"), variant)
        exampletree.add_client_config(rootfs, url, pub, COMPAT)
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
            COMPAT,
            "--strict",
        )
    run(server, "report", "--www", www)

    handler = functools.partial(_QuietHandler, directory=www)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    print(f"\n== Serving {os.path.relpath(www, TOP)} at {url}")

    print("\n== Device side")
    # os-install into an empty directory: the target has no configuration yet, so name it.
    run(
        client, "os-install", "--url", url, "--key", pub, "--format", "1", "--version", "10", "--bundles", "app", device
    )
    dev = ["--path", device]
    run(client, "info", *dev)
    run(client, "check-update", *dev)
    run(client, "update", *dev)
    with open(os.path.join(device, "usr/lib/os-release")) as f:
        print("".join(line for line in f if line.startswith("VERSION_ID")), end="")
    run(client, "bundle-add", "app-docs", *dev)
    run(client, "bundle-list", "--all", *dev)
    run(client, "bundle-remove", "app-docs", *dev)
    with open(os.path.join(device, "usr/bin/ls"), "wb") as f:
        f.write(b"damaged")
    os.remove(os.path.join(device, "usr/bin/cat"))
    print("\n(damaged /usr/bin/ls and deleted /usr/bin/cat)")
    run(client, "verify", *dev, check=False)
    run(client, "repair", *dev)
    run(client, "verify", *dev)
    httpd.shutdown()
    report = os.path.relpath(www, TOP) + "/report/index.html"
    print(f"\ndemo finished in {time.monotonic() - started:.1f}s; the report is {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
