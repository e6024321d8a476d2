"""Shared set-up of the whole suite: the example OS builder is importable as `exampletree`, and
test helpers as `support.*`; fixtures every tier uses."""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "examples"))
sys.path.insert(0, os.path.join(TOP, "tests"))

from support.environment import unavailable  # noqa: E402 (importable once tests/ is on the path)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs to fill up (needs root and permission to mount)."""
    d = tmp_path / "small"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(d)], capture_output=True, text=True)
    if r.returncode != 0:
        unavailable(f"cannot mount a small tmpfs to fill up: {r.stderr.strip() or r.returncode}")
    try:
        yield d
    finally:
        subprocess.run(["umount", str(d)], check=True)
