"""Fixtures of the device-side tests: a misbehaving HTTP server and fetchers with short timeouts;
for the command tests, a published stream of the example OS and devices installed from it."""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if TESTS not in sys.path:  # `support` lives in tests/
    sys.path.insert(0, TESTS)

import clientkit as ck  # noqa: E402
from clientkit import DAY, Device  # noqa: E402
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


# -- update content and devices for the command tests (test_swupd_*.py) -----------------------


@pytest.fixture(scope="session")
def stream(tmp_path_factory: pytest.TempPathFactory) -> ck.Stream:
    """Versions 10 and 20 of the example OS in `www` (and 10, 20, 30 in `www30`), signed and
    published by swupd-server; plus `old_www`, 10 and 20 built with SOURCE_DATE_EPOCH a month
    ago. Built once per test process; tests that change content work on copies."""
    d = tmp_path_factory.mktemp("stream")
    keys = {}
    for name in ("release", "other"):
        private, public = str(d / f"{name}.key"), str(d / f"{name}.pub")
        ck.server_cli("keygen", "--private", private, "--public", public)
        keys[name] = (private, public)
    bundles = str(d / "bundles.toml")
    with open(bundles, "w") as f:
        f.write(ck.BUNDLES_TOML)
    rootfs = {v: ck.make_rootfs(str(d / f"rootfs-{v}"), v // 10) for v in (10, 20, 30)}
    www = str(d / "www")
    latest_of = {}
    for v in (10, 20):
        ck.build_version(www, rootfs[v], v, keys["release"][0], bundles)
        with open(f"{www}/version/format1/latest", "rb") as a, open(f"{www}/version/format1/latest.sig", "rb") as b:
            latest_of[v] = (a.read(), b.read())
    www30 = ck.copy_www(www, str(d / "www30"))
    ck.build_version(www30, rootfs[30], 30, keys["release"][0], bundles)
    with open(f"{www30}/version/format1/latest", "rb") as a, open(f"{www30}/version/format1/latest.sig", "rb") as b:
        latest_of[30] = (a.read(), b.read())
    old_www = str(d / "old_www")
    now = int(time.time())
    for v, days_ago in ((10, 30), (20, 20)):
        env = dict(os.environ, SOURCE_DATE_EPOCH=str(now - days_ago * DAY))
        ck.server_cli(
            "create-update", "--www", old_www, "--rootfs", rootfs[v], "--bundles", bundles, "--version", str(v),
            "--signing-key", keys["release"][0], "--compat", ck.COMPAT, "--jobs", "1", env=env,
        )  # fmt: skip
    return ck.Stream(
        www, rootfs, keys["release"][1], keys["release"][0], keys["other"][1], keys["other"][0], bundles,
        latest_of, old_www, www30,
    )  # fmt: skip


def _install_template(factory: pytest.TempPathFactory, stream: ck.Stream, name: str, bundles: str) -> Device:
    d = factory.mktemp(name)
    dev = Device(str(d / "root"), str(d / "state"), Path(stream.www).as_uri(), stream)
    args = ["--bundles", bundles] if bundles else []
    r = ck.run("os-install", dev.root, "--version", "10", *args, *dev.opts()[2:])
    assert r.rc == 0, r.err
    return dev


@pytest.fixture(scope="session")
def v10_all(tmp_path_factory: pytest.TempPathFactory, stream: ck.Stream) -> Device:
    """Version 10 with every bundle, as os-install made it: a template, never modified."""
    return _install_template(tmp_path_factory, stream, "v10-all", ",".join(ck.ALL_BUNDLES[1:]))


@pytest.fixture(scope="session")
def v10_core(tmp_path_factory: pytest.TempPathFactory, stream: ck.Stream) -> Device:
    """Version 10 with os-core alone: a template, never modified."""
    return _install_template(tmp_path_factory, stream, "v10-core", "")


@pytest.fixture
def clone_device(tmp_path: Path) -> Callable[..., Device]:
    """`clone_device(template, url=None)`: a private copy of a template device."""
    n = [0]

    def make(template: Device, url: str | None = None) -> Device:
        n[0] += 1
        d = tmp_path / f"device{n[0]}"
        d.mkdir()
        ck.clone(template.root, str(d / "root"))
        ck.clone(template.state, str(d / "state"))
        return Device(str(d / "root"), str(d / "state"), url or template.url, template.stream)

    return make


@pytest.fixture
def content(stream: ck.Stream) -> Iterator[FaultServer]:
    """The stream (versions 10 and 20) over HTTP."""
    with FaultServer(stream.www) as srv:
        yield srv
    assert not srv.errors, f"the test server itself failed: {srv.errors!r}"


@pytest.fixture
def device(v10_all: Device, clone_device: Callable[..., Device], content: FaultServer) -> Device:
    """A device at version 10 with every bundle, updating over HTTP from `content`."""
    return clone_device(v10_all, content.url())


@pytest.fixture
def private_www(stream: ck.Stream, tmp_path: Path) -> Path:
    """A copy of the stream's www/ that a test may damage."""
    return Path(ck.copy_www(stream.www, str(tmp_path / "www-copy")))


@pytest.fixture
def private_server(private_www: Path) -> Iterator[FaultServer]:
    with FaultServer(private_www) as srv:
        yield srv
    assert not srv.errors, f"the test server itself failed: {srv.errors!r}"
