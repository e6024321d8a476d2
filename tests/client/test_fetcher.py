"""The transport layer against a real HTTP server on loopback that fails, stalls, lies and attacks."""

from __future__ import annotations

import os
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from support.httpserver import FaultServer
from swupd.format.errors import DiskFullError, NetworkError, NotFoundError, SizeLimitError, UsageError
from swupd.transport import Fetcher

DATA = os.urandom(200_000)


def publish(www: Path, name: str, data: bytes = DATA) -> bytes:
    (www / name).parent.mkdir(parents=True, exist_ok=True)
    (www / name).write_bytes(data)
    return data


def statuses(srv: FaultServer, path: str) -> list[int | None]:
    return [e.status for e in srv.requests(path)]


def assert_one_line_naming(err: BaseException, url: str) -> None:
    assert "\n" not in str(err) and url in str(err), str(err)


def no_leftovers(dest: Path) -> bool:
    return not dest.exists() and not Path(str(dest) + ".part").exists()


# -- success paths ------------------------------------------------------------------------------


def test_fetch_bytes(server: FaultServer, www: Path, fetcher: Fetcher) -> None:
    publish(www, "10/Manifest.MoM", b"manifest")
    assert fetcher.fetch_bytes(server.url("10/Manifest.MoM"), 100) == b"manifest"
    assert server.log[0].method == "GET" and server.log[0].range is None


def test_fetch_file_with_progress(server: FaultServer, www: Path, fetcher: Fetcher, tmp_path: Path) -> None:
    publish(www, "10/files/a.tar")
    dest = tmp_path / "a.tar"
    seen: list[tuple[int, int | None]] = []
    assert fetcher.fetch_file(server.url("10/files/a.tar"), dest, len(DATA), lambda d, t: seen.append((d, t))) == len(
        DATA
    )
    assert dest.read_bytes() == DATA and not Path(f"{dest}.part").exists()
    assert seen[-1] == (len(DATA), len(DATA)) and [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_size(server: FaultServer, www: Path, fetcher: Fetcher) -> None:
    publish(www, "a")
    assert fetcher.size(server.url("a")) == len(DATA)
    assert [e.method for e in server.log] == ["HEAD"]
    with pytest.raises(NotFoundError):
        fetcher.size(server.url("missing"))


def test_file_urls(www: Path, fetcher: Fetcher, tmp_path: Path) -> None:
    publish(www, "a")
    url = (www / "a").as_uri()
    assert fetcher.fetch_bytes(url, len(DATA)) == DATA
    assert fetcher.size(url) == len(DATA)
    seen: list[int] = []
    assert fetcher.fetch_file(url, tmp_path / "a", len(DATA), lambda d, t: seen.append(d)) == len(DATA)
    assert (tmp_path / "a").read_bytes() == DATA and seen[-1] == len(DATA)
    for missing in ((www / "missing").as_uri(), www.as_uri()):
        with pytest.raises(NotFoundError):
            fetcher.fetch_bytes(missing, 10)
        with pytest.raises(NotFoundError):
            fetcher.fetch_file(missing, tmp_path / "m", 10)
    with pytest.raises(NotFoundError):
        fetcher.size((www / "missing").as_uri())
    with pytest.raises(SizeLimitError) as e:
        fetcher.fetch_bytes(url, len(DATA) - 1)
    assert_one_line_naming(e.value, url)
    with pytest.raises(SizeLimitError):
        fetcher.fetch_file(url, tmp_path / "b", len(DATA) - 1)
    assert no_leftovers(tmp_path / "b")


def test_file_url_endless_device(fetcher: Fetcher, tmp_path: Path) -> None:
    """A local "mirror" file that never ends (a device) is capped like a lying server."""
    with pytest.raises(SizeLimitError):
        fetcher.fetch_bytes("file:///dev/zero", 100_000)
    with pytest.raises(SizeLimitError):
        fetcher.fetch_file("file:///dev/zero", tmp_path / "z", 100_000)
    assert no_leftovers(tmp_path / "z")


def test_unsupported_scheme(fetcher: Fetcher, tmp_path: Path) -> None:
    for call in (
        lambda: fetcher.fetch_bytes("ftp://example.org/x", 10),
        lambda: fetcher.fetch_file("ftp://example.org/x", tmp_path / "x", 10),
        lambda: fetcher.size("gopher://example.org/x"),
    ):
        with pytest.raises(UsageError, match=r"example\.org"):
            call()
    assert isinstance(fetcher.fetch_many([("ftp://h/x", tmp_path / "x", 1)])["ftp://h/x"], UsageError)


# -- statuses and retries -----------------------------------------------------------------------


def test_not_found_is_not_retried(server: FaultServer, www: Path, fetcher: Fetcher, tmp_path: Path) -> None:
    url = server.url("missing")
    Path(f"{tmp_path / 'm'}.part").write_bytes(b"stale")
    with pytest.raises(NotFoundError) as e:
        fetcher.fetch_file(url, tmp_path / "m", 1000)
    assert e.value.exit_code == 12
    assert_one_line_naming(e.value, url)
    assert statuses(server, "/missing") == [404]
    assert no_leftovers(tmp_path / "m")
    publish(www, "gone")
    server.fail(410, path="/gone")
    with pytest.raises(NotFoundError):
        fetcher.fetch_bytes(server.url("gone"), len(DATA))
    assert statuses(server, "/gone") == [410]


@pytest.mark.parametrize("status", [500, 503, 408, 429])
def test_transient_status_is_retried(
    server: FaultServer, www: Path, fetcher: Fetcher, tmp_path: Path, status: int
) -> None:
    publish(www, "a")
    server.fail(status, times=2)
    assert fetcher.fetch_file(server.url("a"), tmp_path / "a", len(DATA)) == len(DATA)
    assert statuses(server, "/a") == [status, status, 200]
    assert (tmp_path / "a").read_bytes() == DATA


def test_failing_forever_gives_up(server: FaultServer, www: Path, fetcher: Fetcher, tmp_path: Path) -> None:
    publish(www, "a")
    server.fail(500, times=None)
    url = server.url("a")
    with pytest.raises(NetworkError) as e:
        fetcher.fetch_file(url, tmp_path / "a", len(DATA))
    assert not isinstance(e.value, NotFoundError) and e.value.exit_code == 11
    assert_one_line_naming(e.value, url)
    assert len(server.requests("/a")) == fetcher.config.retries + 1
    server.clear_log()
    with pytest.raises(NetworkError):
        fetcher.fetch_bytes(url, len(DATA))
    with pytest.raises(NetworkError):
        fetcher.size(url)
    assert len(server.log) == 2 * (fetcher.config.retries + 1)


def test_credentials_stay_out_of_messages(server: FaultServer, fetcher: Fetcher) -> None:
    url = server.url("missing").replace("http://", "http://user:secret@")
    with pytest.raises(NotFoundError) as e:
        fetcher.fetch_bytes(url, 10)
    assert "secret" not in str(e.value) and "/missing" in str(e.value)


# -- truncation and resume ----------------------------------------------------------------------


@pytest.mark.parametrize("durable", [True, False])
def test_truncated_body_resumes(
    server: FaultServer, www: Path, fetcher: Fetcher, tmp_path: Path, durable: bool
) -> None:
    """Also without fsyncs (content that is verified when used): the same resume, the same bytes."""
    publish(www, "a")
    server.truncate(10_000, times=1)
    assert fetcher.fetch_file(server.url("a"), tmp_path / "a", len(DATA), durable=durable) == len(DATA)
    assert (tmp_path / "a").read_bytes() == DATA
    assert [(e.range, e.status) for e in server.log] == [(None, 200), ("bytes=10000-", 206)]


def test_truncated_small_file_is_fetched_again(server: FaultServer, www: Path, fetcher: Fetcher) -> None:
    publish(www, "a")
    server.truncate(10, times=1)
    assert fetcher.fetch_bytes(server.url("a"), len(DATA)) == DATA
    assert [(e.range, e.status) for e in server.log] == [(None, 200), (None, 200)]


def test_progress_resets_the_retry_count(server: FaultServer, www: Path, fetcher: Fetcher, tmp_path: Path) -> None:
    """Every body is cut after 40 kB, more than a speed window's worth: 5 attempts with retries=2."""
    publish(www, "a")
    server.truncate(40_000)
    assert fetcher.fetch_file(server.url("a"), tmp_path / "a", len(DATA)) == len(DATA)
    assert (tmp_path / "a").read_bytes() == DATA
    assert [e.range for e in server.log] == [None] + [f"bytes={n}-" for n in range(40_000, 200_000, 40_000)]


@pytest.mark.parametrize("durable", [True, False])
def test_existing_part_resumes(server: FaultServer, www: Path, fetcher: Fetcher, tmp_path: Path, durable: bool) -> None:
    publish(www, "a")
    Path(f"{tmp_path / 'a'}.part").write_bytes(DATA[:50_000])
    assert fetcher.fetch_file(server.url("a"), tmp_path / "a", len(DATA), durable=durable) == len(DATA)
    assert (tmp_path / "a").read_bytes() == DATA and not Path(f"{tmp_path / 'a'}.part").exists()
    assert [(e.range, e.status) for e in server.log] == [("bytes=50000-", 206)]


def test_server_ignoring_range_restarts(server: FaultServer, www: Path, fetcher: Fetcher, tmp_path: Path) -> None:
    publish(www, "a")
    server.ignore_range()
    Path(f"{tmp_path / 'a'}.part").write_bytes(DATA[:50_000])
    assert fetcher.fetch_file(server.url("a"), tmp_path / "a", len(DATA)) == len(DATA)
    assert (tmp_path / "a").read_bytes() == DATA
    assert [(e.range, e.status) for e in server.log] == [("bytes=50000-", 200)]


def test_416_discards_a_bad_part(server: FaultServer, www: Path, fetcher: Fetcher, tmp_path: Path) -> None:
    publish(www, "a", DATA[:1000])
    Path(f"{tmp_path / 'a'}.part").write_bytes(b"x" * 2000)  # longer than the file: not a prefix
    assert fetcher.fetch_file(server.url("a"), tmp_path / "a", 10_000) == 1000
    assert (tmp_path / "a").read_bytes() == DATA[:1000]
    assert [(e.range, e.status) for e in server.log] == [("bytes=2000-", 416), (None, 200)]


def test_416_on_a_complete_part_finishes(server: FaultServer, www: Path, fetcher: Fetcher, tmp_path: Path) -> None:
    """A run that stopped between the last byte and the rename: nothing is downloaded again."""
    publish(www, "a", DATA[:1000])
    Path(f"{tmp_path / 'a'}.part").write_bytes(DATA[:1000])
    assert fetcher.fetch_file(server.url("a"), tmp_path / "a", 1000) == 1000
    assert (tmp_path / "a").read_bytes() == DATA[:1000]
    assert statuses(server, "/a") == [416]


# -- size caps ----------------------------------------------------------------------------------


def test_content_length_over_the_cap(server: FaultServer, www: Path, fetcher: Fetcher, tmp_path: Path) -> None:
    publish(www, "a")
    url = server.url("a")
    with pytest.raises(SizeLimitError) as e:
        fetcher.fetch_file(url, tmp_path / "a", len(DATA) - 1)
    assert_one_line_naming(e.value, url)
    with pytest.raises(SizeLimitError):
        fetcher.fetch_bytes(url, len(DATA) - 1)
    assert no_leftovers(tmp_path / "a")
    assert len(server.log) == 2  # refused, not retried


@pytest.mark.parametrize("claimed", [None, 10**12])
def test_endless_body(server: FaultServer, www: Path, fetcher: Fetcher, tmp_path: Path, claimed: int | None) -> None:
    publish(www, "a")
    server.endless(content_length=claimed)
    Path(f"{tmp_path / 'a'}.part").write_bytes(DATA[:5000])  # the server answers 200: restart
    with pytest.raises(SizeLimitError):
        fetcher.fetch_file(server.url("a"), tmp_path / "a", len(DATA) + 100)
    assert no_leftovers(tmp_path / "a")
    with pytest.raises(SizeLimitError):
        fetcher.fetch_bytes(server.url("a"), 1000)
    assert statuses(server, "/a") == [200, 200]


def test_body_past_content_length_is_not_read(server: FaultServer, www: Path, fetcher: Fetcher) -> None:
    """HTTP framing ends the body at Content-Length; the junk after it never reaches the caller."""
    publish(www, "a")
    server.endless(content_length=100)
    assert fetcher.fetch_bytes(server.url("a"), 1000) == DATA[:100]


def test_corrupt_content_is_delivered_unchanged(server: FaultServer, www: Path, fetcher: Fetcher) -> None:
    """Checking content is the caller's job (signed hashes); the fetcher only moves bytes."""
    publish(www, "a")
    server.corrupt(times=1)
    bad = fetcher.fetch_bytes(server.url("a"), len(DATA))
    assert len(bad) == len(DATA) and bad != DATA
    server.corrupt(b"xy", path="/a")
    assert fetcher.fetch_bytes(server.url("a"), len(DATA)) == (b"xy" * len(DATA))[: len(DATA)]


# -- stalls -------------------------------------------------------------------------------------


def test_hanging_server(server: FaultServer, www: Path, make_fetcher: Callable[..., Fetcher], tmp_path: Path) -> None:
    publish(www, "a")
    server.hang()
    fetcher = make_fetcher(read_timeout=0.3, retries=1)
    began = time.monotonic()
    with pytest.raises(NetworkError, match="no answer"):
        fetcher.fetch_file(server.url("a"), tmp_path / "a", len(DATA))
    assert time.monotonic() - began < 3
    assert statuses(server, "/a") == [None, None]


def test_slow_drip_is_aborted(
    server: FaultServer, www: Path, make_fetcher: Callable[..., Fetcher], tmp_path: Path
) -> None:
    publish(www, "a")
    server.drip(2000)
    fetcher = make_fetcher(min_speed=10_000, speed_window=0.5, retries=1)
    began = time.monotonic()
    with pytest.raises(NetworkError, match="slower than 10000 bytes/s"):
        fetcher.fetch_file(server.url("a"), tmp_path / "a", len(DATA))
    assert time.monotonic() - began < 4
    assert len(server.log) == 2
    assert server.log[1].range is not None  # the second attempt resumed what the first got


def test_fast_enough_is_not_aborted(
    server: FaultServer, www: Path, make_fetcher: Callable[..., Fetcher], tmp_path: Path
) -> None:
    publish(www, "a", DATA[:60_000])
    server.drip(200_000)
    fetcher = make_fetcher(min_speed=10_000, speed_window=0.1)
    assert fetcher.fetch_file(server.url("a"), tmp_path / "a", len(DATA)) == 60_000
    assert len(server.log) == 1


def test_stop_releases_hung_requests(www: Path) -> None:
    publish(www, "a")
    srv = FaultServer(www).start()
    srv.hang()
    outcome: list[BaseException] = []

    def request() -> None:
        try:
            urllib.request.urlopen(srv.url("a"), timeout=10)
        except Exception as e:
            outcome.append(e)

    waiting = threading.Thread(target=request)
    waiting.start()
    while not srv.log:
        time.sleep(0.01)
    began = time.monotonic()
    srv.stop()
    assert time.monotonic() - began < 2
    waiting.join(5)
    assert not waiting.is_alive() and outcome  # the client saw the connection close


# -- many ---------------------------------------------------------------------------------------


def test_fetch_many(server: FaultServer, www: Path, fetcher: Fetcher, tmp_path: Path) -> None:
    good = {f"f{i}": publish(www, f"f{i}", os.urandom(10_000 + i)) for i in range(8)}
    publish(www, "big")
    publish(www, "broken")
    server.fail(503, times=None, path="/broken")
    jobs = [(server.url(n), tmp_path / n, 20_000) for n in [*good, "missing", "broken", "big"]]
    seen: set[str] = set()
    inside: list[int] = []

    def progress(url: str, done: int, total: int | None) -> None:  # called one at a time
        inside.append(url)
        time.sleep(0.002)
        assert inside == [url]
        seen.add(url)
        inside.remove(url)

    result = fetcher.fetch_many(jobs, progress)
    assert set(result) == {url for url, _, _ in jobs}
    for name, data in good.items():
        assert result[server.url(name)] is None and (tmp_path / name).read_bytes() == data
    assert isinstance(result[server.url("missing")], NotFoundError)
    assert isinstance(result[server.url("broken")], NetworkError)
    assert isinstance(result[server.url("big")], SizeLimitError)
    assert {server.url(n) for n in good} <= seen
    with pytest.raises(UsageError):
        fetcher.fetch_many([jobs[0], (jobs[1][0], jobs[0][1], 1)])


def test_fetch_many_runs_in_parallel(server: FaultServer, www: Path, fetcher: Fetcher, tmp_path: Path) -> None:
    for i in range(4):
        publish(www, f"f{i}", DATA[:20_000])
    server.drip(40_000)  # 0.5 s per file
    began = time.monotonic()
    result = fetcher.fetch_many([(server.url(f"f{i}"), tmp_path / f"f{i}", 20_000) for i in range(4)])
    assert result == {server.url(f"f{i}"): None for i in range(4)}
    assert time.monotonic() - began < 1.5  # one after another would take 2 s


# -- disk full ----------------------------------------------------------------------------------



def test_disk_full(server: FaultServer, www: Path, fetcher: Fetcher, small_fs: Path) -> None:
    publish(www, "a")
    with pytest.raises(DiskFullError) as e:
        fetcher.fetch_file(server.url("a"), small_fs / "a", len(DATA))
    assert e.value.exit_code == 13 and "\n" not in str(e.value)
    assert no_leftovers(small_fs / "a")
    assert len(server.log) == 1  # a full disk is not worth a retry
    with pytest.raises(DiskFullError):
        fetcher.fetch_file((www / "a").as_uri(), small_fs / "b", len(DATA))
    assert no_leftovers(small_fs / "b")


def test_connection_refused_is_retried_then_reported(fetcher: Fetcher, tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/a"
    with pytest.raises(NetworkError, match=r"connection failed .*3 attempts") as e:
        fetcher.fetch_file(url, tmp_path / "a", 10)
    assert_one_line_naming(e.value, url)
