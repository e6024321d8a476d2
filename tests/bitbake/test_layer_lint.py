"""The layer's files pass oelint-adv for the series the layer supports (offline, no BitBake)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

LAYER = Path(__file__).resolve().parents[2] / "meta-swupd"
OELINT = Path(sys.executable).parent / "oelint-adv"
# Variables the layer defines (oelint would take them for misspellings of known ones), and
# the rule that pings HOMEPAGE over the network.
KNOWN = ("BUNDLE_CONTENTS", "BUNDLE_INCLUDES", "SWUPD_LAYERDIR", "SWUPD_CONTENT_URL")
SUPPRESS = ("oelint.vars.homepageping", "oelint.bbclass.underscores")  # `swupd-image` is the class's historic name


def test_layer_is_lint_clean():
    files = sorted(str(p) for p in LAYER.rglob("*") if p.suffix in (".bb", ".bbappend", ".bbclass", ".conf"))
    with tempfile.TemporaryDirectory(prefix="oelint-") as tmp:
        mods = Path(tmp) / "constantmods.json"
        mods.write_text(json.dumps({"variables": {"known": list(KNOWN)}}))
        cmd = [str(OELINT), "--quiet", "--release=wrynose", *(f"--suppress={r}" for r in SUPPRESS)]
        cmd += [f"--constantmods=+{mods}", "--", *files]
        r = subprocess.run(cmd, env={"HOME": tmp, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    findings = [ln for ln in (r.stdout + r.stderr).splitlines() if re.match(r"^.+?:\d+:(info|warning|error):", ln)]
    assert not findings, "\n".join(findings)
    assert r.returncode == 0, r.stdout + r.stderr
