"""Fixtures of the device-side tests: a misbehaving HTTP server and fetchers with short timeouts."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if TESTS not in sys.path:  # `support` lives in tests/
    sys.path.insert(0, TESTS)

from support.httpserver import FaultServer  # noqa: E402
from swupd.transport import Fetcher, NetConfig  # noqa: E402

# Short enough that the whole fetcher suite runs in seconds; long enough for a loaded machine.
FAST = NetConfig(
    connect_timeout=2.0,
    read_timeout=2.0,
    retries=2,
    backoff_base=0.01,
    backoff_max=0.05,
    user_agent="swupd-test",
)


@pytest.fixture
def www(tmp_path: Path) -> Path:
    """The directory the server serves."""
    d = tmp_path / "www"
    d.mkdir()
    return d


@pytest.fixture
def server(www: Path) -> Iterator[FaultServer]:
    with FaultServer(www) as srv:
        yield srv
    assert not srv.errors, f"the test server itself failed: {srv.errors!r}"


@pytest.fixture
def make_fetcher() -> Iterator[Callable[..., Fetcher]]:
    """`make_fetcher(**overrides)`: a Fetcher with FAST settings, closed after the test."""
    made: list[Fetcher] = []

    def make(**overrides: object) -> Fetcher:
        f = Fetcher(dataclasses.replace(FAST, **overrides))
        made.append(f)
        return f

    yield make
    for f in made:
        f.close()


@pytest.fixture
def fetcher(make_fetcher: Callable[..., Fetcher]) -> Fetcher:
    return make_fetcher()
