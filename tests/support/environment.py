"""What a test needs of the machine, and the one policy for when the machine lacks it.

Locally a test that cannot run here (no root, no QEMU, no Yocto sources, a file system that
refuses xattrs or ACLs, no mount permission, no Chromium, ...) is skipped with the reason, so
a developer's run stays green and says what it left out. Under CI=true it fails instead: CI
runs as root on Debian 12 and must run everything, and a skip there would hide a tier that
silently stopped running.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def required() -> bool:
    """Whether every test must run (CI=true)."""
    return os.environ.get("CI") == "true"


def unavailable(reason: str) -> NoReturn:
    """Skip the running test (or fixture) for `reason`; under CI=true, fail it."""
    __tracebackhide__ = True  # report the caller's line, not this one
    if required():
        pytest.fail(f"cannot run here, and CI=true requires it: {reason}", pytrace=False)
    pytest.skip(reason)


def require_root(reason: str) -> None:
    """`unavailable(reason)` unless this process runs as root."""
    __tracebackhide__ = True
    if os.geteuid() != 0:
        unavailable(reason)
