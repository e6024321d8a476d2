"""The README's quick start, run word for word on a hand-made tree: it must end with an updated
device and no error."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from pathlib import Path

from support.environment import require_root

TOP = Path(__file__).resolve().parents[2]


def _steps() -> str:
    text = (TOP / "README.md").read_text()
    section = text.split("## Quick start with a tree of your own", 1)[1]
    m = re.search(r"```sh\n(.*?)```", section, re.S)
    assert m, "the quick start has no sh block"
    return m.group(1)


def test_the_quick_start_ends_with_an_updated_device(tmp_path):
    require_root("the quick start runs as root (os-install sets owners)")
    script = tmp_path / "steps.sh"
    script.write_text(_steps())
    env = {**os.environ, "MS": str(TOP)}
    p = subprocess.Popen(["bash", "-e", str(script)], cwd=tmp_path, env=env, text=True, start_new_session=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        out, err = p.communicate(timeout=600)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)  # its HTTP server too, whatever happened
    r = subprocess.CompletedProcess(p.args, p.returncode, out, err)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Update successful: system updated from version 10 to version 20" in r.stdout
    assert "Hello from version 20\n" in r.stdout
    assert "Checked 12 files of version 20: 0 missing, 0 modified, 0 extra" in r.stdout
    assert "Error" not in r.stderr and "Traceback" not in r.stderr, r.stderr
