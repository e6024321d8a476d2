"""The run-wide patience of the transport: a server that hangs, drips or keeps failing is given
up on as a whole, within `give_up_after` seconds of work without progress or `max_failures`
failed attempts in a row, whatever phase of a request it stalls in."""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.httpserver import FaultServer
from swupd.format.errors import NetworkError, UsageError
from swupd.transport import Fetcher, NetConfig
from swupd.transport.netconfig import with_overrides

DATA = os.urandom(200_000)


def publish(www: Path, name: str, data: bytes = DATA) -> bytes:
    (www / name).write_bytes(data)
    return data


@pytest.fixture
def header_drip() -> Iterator[str]:
    """A server that reads the request, then sends its status line one byte every 0.1 s."""
    lsock = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\n" * 1000:
                if stop.wait(0.1):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = lsock.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{lsock.getsockname()[1]}/a"
    stop.set()
    lsock.close()


def test_a_server_that_never_answers_is_cut_off(
    server: FaultServer, www: Path, make_fetcher: Callable[..., Fetcher], tmp_path: Path
) -> None:
    """The read timeout would let each attempt wait 30 s; the run's patience ends it at 1 s."""
    publish(www, "a")
    server.hang()
    fetcher = make_fetcher(read_timeout=30.0, give_up_after=1.0)
    began = time.monotonic()
    with pytest.raises(NetworkError, match=r"no progress in 1 s of network work; giving up") as e:
        fetcher.fetch_file(server.url("a"), tmp_path / "a", len(DATA))
    assert time.monotonic() - began < 2.5
    assert "\n" not in str(e.value)
    # Given up on: later requests are refused without asking the server.
    n = len(server.log)
    with pytest.raises(NetworkError, match="giving up"):
        fetcher.fetch_bytes(server.url("a"), len(DATA))
    assert len(server.log) == n


def test_a_status_line_sent_a_byte_at_a_time_is_cut_off(
    header_drip: str, make_fetcher: Callable[..., Fetcher], tmp_path: Path
) -> None:
    """Bytes keep arriving, so no read times out and no body speed is measured: only the
    watchdog ends the wait for the headers."""
    fetcher = make_fetcher(read_timeout=5.0, give_up_after=1.5)
    began = time.monotonic()
    with pytest.raises(NetworkError, match=r"no progress in 1\.5 s"):
        fetcher.fetch_file(header_drip, tmp_path / "a", 1000)
    assert time.monotonic() - began < 3


def test_a_dripping_body_is_cut_off(
    server: FaultServer, www: Path, make_fetcher: Callable[..., Fetcher], tmp_path: Path
) -> None:
    publish(www, "a")
    server.drip(1)
    fetcher = make_fetcher(read_timeout=5.0, speed_window=30.0, give_up_after=1.5)
    began = time.monotonic()
    with pytest.raises(NetworkError, match=r"no progress in 1\.5 s"):
        fetcher.fetch_file(server.url("a"), tmp_path / "a", len(DATA))
    assert time.monotonic() - began < 3


def test_failures_are_counted_over_every_url(
    server: FaultServer, www: Path, make_fetcher: Callable[..., Fetcher], tmp_path: Path
) -> None:
    """Each URL would get 5 attempts; the server as a whole gets 3, then nothing is asked."""
    names = [f"f{i}" for i in range(10)]
    for n in names:
        publish(www, n, b"x")
    server.fail(503, times=None)
    fetcher = make_fetcher(retries=4, max_failures=3, max_parallel=1)
    result = fetcher.fetch_many([(server.url(n), tmp_path / n, 10) for n in names])
    assert len(server.log) == 3
    assert all(isinstance(e, NetworkError) for e in result.values())
    assert "3 failed attempts in a row; giving up" in str(result[server.url("f9")])


def test_success_resets_the_failure_count(
    server: FaultServer, www: Path, make_fetcher: Callable[..., Fetcher], tmp_path: Path
) -> None:
    publish(www, "a", b"a")
    fetcher = make_fetcher(retries=4, max_failures=3)
    for _ in range(3):
        server.fail(503, times=2, path="/a")
        assert fetcher.fetch_bytes(server.url("a"), 10) == b"a"
    assert len(server.log) == 9


def test_a_slow_but_steady_download_outlasts_the_patience(
    server: FaultServer, www: Path, make_fetcher: Callable[..., Fetcher], tmp_path: Path
) -> None:
    """Progress within a transfer counts: a 3 s download is not cut off at 1 s."""
    publish(www, "a", DATA[:150_000])
    server.drip(50_000)
    fetcher = make_fetcher(min_speed=10_000, speed_window=0.2, give_up_after=1.0)
    assert fetcher.fetch_file(server.url("a"), tmp_path / "a", len(DATA)) == 150_000
    assert len(server.log) == 1


def test_local_work_between_requests_does_not_count(
    server: FaultServer, www: Path, make_fetcher: Callable[..., Fetcher], tmp_path: Path
) -> None:
    publish(www, "a")
    publish(www, "b", b"b")
    server.hang(path="/a")
    fetcher = make_fetcher(read_timeout=0.4, retries=0, give_up_after=1.2)
    with pytest.raises(NetworkError, match=r"no answer within 0\.4 s"):
        fetcher.fetch_bytes(server.url("a"), len(DATA))
    time.sleep(1.0)  # the client working on something else
    assert fetcher.fetch_bytes(server.url("b"), 10) == b"b"


def test_overrides() -> None:
    cfg = with_overrides(NetConfig(), " give_up_after=2.5, max_failures=3 ,read_timeout=1")
    assert (cfg.give_up_after, cfg.max_failures, cfg.read_timeout) == (2.5, 3, 1.0)
    assert with_overrides(NetConfig(), "") == NetConfig()
    for bad in ("give_up_after", "user_agent=x", "speed=3", "max_failures=two", "give_up_after=-1",
                "read_timeout=inf", "connect_timeout=0"):  # fmt: skip
        with pytest.raises(UsageError, match=r"SWUPD_NET|must be positive"):
            with_overrides(NetConfig(), bad)


def test_the_documented_bound_follows_from_the_defaults() -> None:
    """README states the defaults and the worst case; both must be what NetConfig does, and the
    worst case, with half a minute left for start-up and local work, within 3 minutes."""
    readme = Path(__file__).resolve().parents[2].joinpath("README.md").read_text()
    start = readme.index("**Bounded time.**")
    text = " ".join(readme[start : readme.index("\n- **", start)].split())
    d = NetConfig()
    for said in (
        f"connect within {d.connect_timeout:g} s",
        f"receive something at least every {d.read_timeout:g} s",
        f"over every {d.speed_window:g} s window, at least {d.min_speed / 1024:g} KiB/s",
        f"a file gets {d.retries} retries",
        f"after {d.max_failures} failed attempts in a row",
        f"or {d.give_up_after:g} s of network work without progress",
        f"or {d.min_speed * d.speed_window / 1024:g} KiB of one transfer",
        f"({d.worst_case_seconds():g} s of network work plus start-up and local work)",
    ):
        assert said in text, said
    minutes = int(re.search(r"ends an update within (\d+) minutes", text)[1])
    assert minutes <= 3
    assert d.worst_case_seconds() + 30 <= minutes * 60
    # Without the run's patience, one URL alone could take longer than the bound.
    one_url = (d.retries + 1) * (d.connect_timeout + d.read_timeout) + sum(
        min(d.backoff_max, d.backoff_base * 2**i) for i in range(d.retries)
    )
    assert one_url > minutes * 60
