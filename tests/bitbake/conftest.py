"""Fixtures of the layer's tests: upstream BitBake and OE-core (see oe.py).

Every test here is marked `bitbake`. When the tier cannot run on this machine (no upstream
sources, or host set-up that needs root) its tests are skipped with the reason, and under
CI=true they fail instead (support.environment.unavailable).

Fixtures:
    yocto -> oe.Yocto            the wrynose sources unpacked, the layer copied, host ready
"""

from __future__ import annotations

from pathlib import Path

import oe
import pytest
from support.environment import unavailable

HERE = Path(__file__).resolve().parent


def pytest_configure(config):
    config.addinivalue_line("markers", "bitbake: runs upstream BitBake and OE-core (tests/bitbake)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.bitbake)


@pytest.fixture(scope="session")
def yocto() -> oe.Yocto:
    try:
        return oe.Yocto.provide("wrynose")
    except oe.Unavailable as e:
        unavailable(f"upstream BitBake and OE-core cannot run here: {e}")
