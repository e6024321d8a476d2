"""The layer's oeqa runtime test (meta-swupd/lib/oeqa/runtime/cases/swupd.py), run by OE-core's
own runner, `oe-test runtime`, against a booted device over SSH."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from .image import Image
from .oecore import bitbake_lib, oe_core
from .runner import Device

CASES = Path(__file__).resolve().parents[2] / "meta-swupd" / "lib" / "oeqa" / "runtime" / "cases"
TESTS = (
    "test_swupd_info", "test_swupd_check_update", "test_swupd_update", "test_swupd_reboot_into_the_update",
    "test_swupd_verify", "test_swupd_bundle_remove_and_add", "test_swupd_autoupdate_timer",
)  # fmt: skip


def run(
    image: Image, device: Device, served: Path, workdir: Path, timeout: float = 5400
) -> subprocess.CompletedProcess:
    """oe-test runtime with the swupd suite; nginx serves `served`, which the test points at
    version 20, then 30."""
    workdir.mkdir(parents=True, exist_ok=True)
    td = {
        "MACHINE": "qemux86-64",
        "MLPREFIX": "",
        "SWUPD_TEST_SERVE": "0",
        "SWUPD_TEST_WWW": str(served),
        "SWUPD_TEST_RELEASES": f"20:{image.www(20)} 30:{image.www(30)}",
    }
    (workdir / "td.json").write_text(json.dumps(td))
    # What OEHasPackage reads: the image's packages, one per line.
    (workdir / "packages.manifest").write_text("swupd-client\nswupd-boot-efi\nopenssh-sshd\n")
    cmd = [
        str(oe_core() / "scripts" / "oe-test"), "runtime", "--target-type", "simpleremote",
        "--target-ip", device.target, "--server-ip", "10.0.2.2",
        "--packages-manifest", str(workdir / "packages.manifest"), "--test-data-file", str(workdir / "td.json"),
        "--output-log", str(workdir / "oe-test.log"), "--run-tests", "swupd", "--", str(CASES),
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(bitbake_lib()))
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=workdir, env=env)


def results(output: str) -> dict[str, str]:
    """{test name: PASSED/FAILED/SKIPPED/ERROR} from oe-test's RESULTS lines."""
    found = {}
    for line in output.splitlines():
        if "RESULTS - swupd.SwupdTest." in line:
            name, _, status = line.split("RESULTS - swupd.SwupdTest.", 1)[1].partition(":")
            found[name.strip()] = status.split()[0] if status.split() else ""
    return found
