"""Fixtures of the layer's tests: upstream BitBake and OE-core (see oe.py).

Every test here is marked `bitbake`. When the tier cannot run on this machine (no upstream
sources, or host set-up that needs root) its tests are skipped with the reason;
SWUPD_REQUIRE_YOCTO=1 turns that skip into a failure, for CI that must run them.

Fixtures:
    yocto -> oe.Yocto            the wrynose sources unpacked, the layer copied, host ready
"""

from __future__ import annotations

import os
from pathlib import Path

import oe
import pytest

HERE = Path(__file__).resolve().parent


def pytest_configure(config):
    config.addinivalue_line("markers", "bitbake: runs upstream BitBake and OE-core (tests/bitbake)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.bitbake)


def _unavailable(message: str):
    if os.environ.get(oe.REQUIRE) == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def yocto() -> oe.Yocto:
    try:
        return oe.Yocto.provide("wrynose")
    except oe.Unavailable as e:
        _unavailable(f"upstream BitBake and OE-core cannot run here: {e}")
