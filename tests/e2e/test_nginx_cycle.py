"""The whole cycle against nginx, the way a stream is really published: build two versions,
serve www/ with nginx, install the first into a directory, update to the second, add and
remove a bundle, damage a file and repair it, with the tree checked at every step."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import exampletree

BIN = Path(sys.executable).parent
BUNDLES = Path(__file__).resolve().parents[2] / "examples" / "bundles.toml"


def run(*args: object) -> subprocess.CompletedProcess:
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    assert "Traceback" not in r.stderr, r.stderr
    return r


def build_stream(base: Path, url_for_image: str) -> tuple[Path, Path]:
    base.mkdir(parents=True)
    key, pub, www = base / "key", base / "key.pub", base / "www"
    assert run(BIN / "swupd-server", "keygen", "--private", key, "--public", pub).returncode == 0
    for version, variant in ((10, 1), (20, 2)):
        root = exampletree.make_tree(str(base / f"rootfs-{version}"), variant)
        exampletree.add_client_config(root, url_for_image, str(pub), "e2e")
        r = run(
            BIN / "swupd-server",
            "create-update",
            "--www",
            www,
            "--rootfs",
            root,
            "--bundles",
            BUNDLES,
            "--version",
            version,
            "--signing-key",
            key,
            "--compat",
            "e2e",
        )
        assert r.returncode == 0, r.stderr
    return www, pub


def test_install_update_bundles_repair_over_nginx(nginx, tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    server = nginx(www)
    built, pub = build_stream(tmp_path / "build", server.url)
    os.rmdir(www)
    os.rename(built, www)
    device = tmp_path / "device"
    r = run(
        BIN / "swupd",
        "os-install",
        "--url",
        server.url,
        "--key",
        pub,
        "--format",
        "1",
        "--version",
        "10",
        "--bundles",
        "app",
        device,
    )
    assert r.returncode == 0, r.stderr
    assert "VERSION_ID=10\n" in (device / "usr/lib/os-release").read_text()
    assert any("pack-os-core-from-0.tar" in line for line in server.requests())
    dev = ["--path", device]
    r = run(BIN / "swupd", "check-update", *dev)
    assert r.returncode == 0 and "new OS version available: 20" in r.stdout
    r = run(BIN / "swupd", "update", *dev)
    assert r.returncode == 0, r.stderr
    assert (device / "etc/motd").read_text() == "Welcome to Example OS, build 2.\n"
    assert not (device / "etc/hostname").exists()
    assert any("pack-os-core-from-10.tar" in line for line in server.requests())
    assert run(BIN / "swupd", "update", *dev).stdout.strip().endswith("up to date at version 20")
    r = run(BIN / "swupd", "bundle-add", "app-docs", *dev)
    assert r.returncode == 0 and (device / "usr/share/doc/NEWS").is_file(), r.stderr
    r = run(BIN / "swupd", "bundle-remove", "app-docs", *dev)
    assert r.returncode == 0 and not (device / "usr/share/doc").exists(), r.stderr
    (device / "usr/bin/ls").write_bytes(b"damaged")
    assert run(BIN / "swupd", "verify", *dev).returncode == 1
    assert run(BIN / "swupd", "repair", *dev).returncode == 0
    assert run(BIN / "swupd", "verify", *dev).returncode == 0
    with open("/bin/ls", "rb") as real, open(device / "usr/bin/ls", "rb") as repaired:
        assert repaired.read(4) == real.read(4) == b"\x7fELF"
