"""HTTP(S) and file:// downloads with size caps, retries (retry.py), resume, a minimum-speed
check and a run-wide limit on work without progress (patience.py); what lands on disk, and how,
is partfile.py's.

Modelled on python-tuf ngclient's `RequestsFetcher`: the fetcher only moves bytes. Every byte
comes from an untrusted server over a slow, lossy link, so the fetcher's duties are to keep a
hostile or broken server from exhausting memory, disk or time (a hard cap on length, a minimum
speed, bounded retries, one patience for the whole run) and to make progress on a bad network
(resume with `Range`). It never parses what it fetches and writes only to the destinations it
is handed (in the client's state directory); the caller verifies content against signed hashes and sizes.
"""

from __future__ import annotations

import errno
import http.client
import logging
import os
import re
import stat
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO, TypeVar

import requests
import urllib3.exceptions

from swupd.format.errors import NetworkError, NotFoundError, SizeLimitError, UsageError

from .netconfig import NetConfig
from .partfile import PartFile
from .patience import Adapter, Patience
from .retry import Retry, bad_status, with_retries

log = logging.getLogger(__name__)

__all__ = ["Fetcher", "ManyProgress", "NetConfig", "Progress"]

Progress = Callable[[int, int | None], None]
"""`progress(bytes_done, total_or_None)`, called from the downloading thread."""

ManyProgress = Callable[[str, int, int | None], None]
"""`progress(url, bytes_done, total_or_None)` for `Fetcher.fetch_many`: from worker threads, one at a time."""

# Small enough that a slow link still yields chunks often (the speed check runs per chunk).
_CHUNK = 64 * 1024
_CONTENT_RANGE = re.compile(r"bytes (\d{1,20})-(\d{1,20})/(\d{1,20}|\*)", re.ASCII)
_UNSATISFIED_RANGE = re.compile(r"bytes \*/(\d{1,20})", re.ASCII)
_NET_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException, OSError)
_T = TypeVar("_T")


def _one_line(text: object, limit: int = 200) -> str:
    """Server-influenced text squeezed onto one short line, so messages stay one line."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _shown(url: str) -> str:
    """The URL for messages, without any user:password part."""
    parts = urllib.parse.urlsplit(url)
    if "@" in parts.netloc:
        parts = parts._replace(netloc=parts.netloc.rsplit("@", 1)[1])
    return _one_line(urllib.parse.urlunsplit(parts), 300)


def _int_header(value: str | None) -> int | None:
    """A non-negative integer header, or None when absent or not a plain number."""
    return int(value) if value and value.isascii() and value.isdigit() and len(value) <= 20 else None


def _too_big(url: str, max_bytes: int, size: int | None = None) -> SizeLimitError:
    said = "more than" if size is None else f"{size} bytes, more than"
    return SizeLimitError(f"{_shown(url)}: {said} the {max_bytes} bytes allowed")


class Fetcher:
    """Downloads with caps, retries and resume; one instance is safe to share between threads."""

    def __init__(self, config: NetConfig | None = None) -> None:
        self.config = config or NetConfig()
        self.received = 0  # body bytes of every fetch, retries and resumes included
        self._count_lock = threading.Lock()
        self._session = requests.Session()
        self.patience = Patience(self.config.give_up_after, self.config.max_failures)
        # We retry ourselves (with resume); the adapter must not retry behind our back.
        parallel = self.config.max_parallel
        adapter = Adapter(pool_connections=parallel, pool_maxsize=parallel, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.max_redirects = 10
        # Identity only: byte counts and Range offsets then mean wire bytes, and no server can
        # hand us a decompression bomb. Published content is compressed already.
        self._session.headers.update({"User-Agent": self.config.user_agent, "Accept-Encoding": "identity"})

    def close(self) -> None:
        """Drop pooled connections."""
        self.patience.close()
        self._session.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public API -------------------------------------------------------------------------

    def fetch_bytes(self, url: str, max_bytes: int) -> bytes:
        """The body of `url` (at most `max_bytes`), for small files such as `latest` or a MoM."""
        if self._scheme(url) == "file":
            with self._open_local(url) as f:
                return b"".join(self._local_chunks(f, url, max_bytes))

        def attempt() -> bytes:
            buf = bytearray()
            with self._request("GET", url) as resp:
                if resp.status_code != 200:
                    bad_status(resp.status_code, _shown(url))
                self._pump(resp, url, buf.extend, 0, max_bytes, self._length(resp, url, max_bytes), None)
            return bytes(buf)

        return self._with_retries(url, attempt)

    def fetch_file(
        self,
        url: str,
        dest: str | os.PathLike[str],
        max_bytes: int,
        progress: Progress | None = None,
        durable: bool = True,
    ) -> int:
        """Download `url` to `dest` (at most `max_bytes`) and return its size.

        Data goes to `dest.part` first, which survives failures so a later attempt or a later
        run resumes with `Range`; `dest` appears (renamed) only when the body is whole, and
        fsynced unless `durable` is false: for content verified whenever it is used, which a
        power cut can at worst make the next run download again.
        """
        part = PartFile(os.fspath(dest), _shown(url), durable)
        if self._scheme(url) == "file":
            return self._copy_local(url, part, max_bytes, progress)
        try:
            size = self._with_retries(url, lambda: self._fetch_part(url, part, max_bytes, progress))
            part.finish()
        except (SizeLimitError, NotFoundError):
            part.drop()  # the server disowned or overran it: nothing worth resuming
            raise
        except OSError as e:
            raise part.error(e) from None
        return size

    def fetch_many(
        self,
        jobs: Iterable[tuple[str, str | os.PathLike[str], int]],
        progress: ManyProgress | None = None,
        durable: bool = True,
    ) -> dict[str, BaseException | None]:
        """Run `fetch_file` for every `(url, dest, max_bytes)`, `max_parallel` at a time.

        Returns each URL's exception, or None when it succeeded; one failure never stops the
        others, so the caller can decide which misses matter (and fall back, e.g. from a pack
        to fullfiles).
        """
        jobs = list(jobs)
        dests = [os.fspath(d) for _, d, _ in jobs]
        if len(set(dests)) != len(dests) or len({u for u, _, _ in jobs}) != len(jobs):
            raise UsageError("fetch_many needs distinct URLs and distinct destinations")

        lock = threading.Lock()  # callers may sum shared state in the callback: no torn updates

        def run(url: str, dest: str | os.PathLike[str], max_bytes: int) -> BaseException | None:
            def cb(done: int, total: int | None) -> None:
                if progress is not None:
                    with lock:
                        progress(url, done, total)

            try:
                self.fetch_file(url, dest, max_bytes, cb, durable)
            except Exception as e:
                return e
            return None

        # Imported here: most updates fetch no single files, and the module costs every start.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=self.config.max_parallel, thread_name_prefix="swupd-fetch") as pool:
            futures = {url: pool.submit(run, url, dest, cap) for url, dest, cap in jobs}
            return {url: fut.result() for url, fut in futures.items()}

    def size(self, url: str) -> int | None:
        """The length the server announces for `url` (HEAD), or None when it does not say."""
        if self._scheme(url) == "file":
            with self._open_local(url) as f:
                st = os.fstat(f.fileno())
            return st.st_size if stat.S_ISREG(st.st_mode) else None

        def attempt() -> int | None:
            with self._request("HEAD", url) as resp:
                if resp.status_code != 200:
                    bad_status(resp.status_code, _shown(url))
                return _int_header(resp.headers.get("Content-Length"))

        return self._with_retries(url, attempt)

    # -- HTTP -------------------------------------------------------------------------------

    @staticmethod
    def _scheme(url: str) -> str:
        scheme = urllib.parse.urlsplit(url).scheme.lower()
        if scheme not in ("http", "https", "file"):
            raise UsageError(f"unsupported URL scheme {scheme or '(none)'!r} in {_shown(url)}")
        return scheme

    def _with_retries(self, url: str, attempt: Callable[[], _T]) -> _T:
        return with_retries(self.config, self.patience, _shown(url), attempt)

    def _request(self, method: str, url: str, headers: dict[str, str] | None = None) -> requests.Response:
        cfg = self.config
        # No connection attempt outlasts the run's patience (the watchdog cuts off the rest).
        connect = min(cfg.connect_timeout, max(0.01, self.patience.remaining()))
        log.debug("%s %s%s", method, _shown(url), f" ({headers['Range']})" if headers and "Range" in headers else "")
        try:
            return self._session.request(method, url, headers=headers, stream=True, timeout=(connect, cfg.read_timeout))
        except requests.exceptions.SSLError as e:  # a certificate will not get better by retrying
            raise NetworkError(f"cannot fetch {_shown(url)}: TLS failed ({_one_line(e, 120)})") from None
        except requests.ConnectTimeout:
            raise Retry(f"no connection within {cfg.connect_timeout} s") from None
        except requests.Timeout:
            raise Retry(f"no answer within {cfg.read_timeout} s") from None
        except requests.ConnectionError as e:
            cause = getattr(e.args[0], "reason", e.args[0]) if e.args else e
            raise Retry(f"connection failed ({type(cause).__name__})") from None
        except requests.RequestException as e:
            raise NetworkError(f"cannot fetch {_shown(url)}: {_one_line(e)}") from None

    @staticmethod
    def _length(resp: requests.Response, url: str, max_bytes: int) -> int | None:
        """The announced length of a 200 body; refused before reading when over the cap."""
        length = _int_header(resp.headers.get("Content-Length"))
        if length is not None and length > max_bytes:
            raise _too_big(url, max_bytes, length)
        return length

    def _pump(
        self,
        resp: requests.Response,
        url: str,
        write: Callable[[bytes], object],
        done: int,
        max_bytes: int,
        expect_end: int | None,
        on_progress: Callable[[int], None] | None,
    ) -> int:
        """Copy the body to `write`, counting from offset `done`; never let it pass `max_bytes`.

        Network failures become `_Retry` carrying how much arrived (it stays usable for a
        resume); failures of `write` propagate unchanged, being local and not worth a retry.
        """
        cfg = self.config
        start = done
        raw = resp.raw
        # read1 returns what has arrived instead of waiting for a whole chunk, so the speed
        # check below runs even on a drip (urllib3 >= 2; older ones fall back to small reads).
        read1 = getattr(raw, "read1", None)
        window_start, window_bytes = time.monotonic(), 0
        useful, unmarked = max(1, int(cfg.min_speed * cfg.speed_window)), 0
        while True:
            try:
                chunk = read1(_CHUNK, decode_content=False) if read1 else raw.read(4096, decode_content=False)
            except _NET_ERRORS as e:
                raise Retry(f"transfer broken after {done - start} bytes ({type(e).__name__})", done - start) from None
            if not chunk:
                break
            if done + len(chunk) > max_bytes:
                raise _too_big(url, max_bytes)
            write(chunk)
            done += len(chunk)
            self._count(len(chunk))
            window_bytes += len(chunk)
            unmarked += len(chunk)
            if unmarked >= useful:  # enough to show the server is of use: the run stays patient
                self.patience.progress()
                unmarked = 0
            if on_progress is not None:
                on_progress(done)
            now = time.monotonic()
            if cfg.min_speed > 0 and now - window_start >= cfg.speed_window:
                if window_bytes < cfg.min_speed * (now - window_start):
                    raise Retry(f"slower than {cfg.min_speed} bytes/s", done - start)
                window_start, window_bytes = now, 0
        if expect_end is not None and done < expect_end:
            raise Retry(f"body cut short at {done} of {expect_end} bytes", done - start)
        return done

    def _fetch_part(self, url: str, part: PartFile, max_bytes: int, progress: Progress | None) -> int:
        """One attempt at completing `part`, resuming from what it already holds."""
        offset = part.offset(max_bytes)
        resp = self._request("GET", url, {"Range": f"bytes={offset}-"} if offset else None)
        with resp:
            status = resp.status_code
            length = _int_header(resp.headers.get("Content-Length"))
            whole: int | None = None
            if status == 416 and offset:
                m = _UNSATISFIED_RANGE.fullmatch(resp.headers.get("Content-Range", ""))
                if m and int(m.group(1)) == offset:
                    return offset  # an earlier run got it all but stopped before the rename
                part.drop()
                raise Retry("server refused to resume (HTTP 416); starting over")
            if status == 206:
                m = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", ""))
                if not m or int(m.group(1)) != offset or int(m.group(2)) < offset:
                    part.drop()
                    raise Retry("server sent the wrong range; starting over")
                end = int(m.group(2)) + 1
                whole = None if m.group(3) == "*" else int(m.group(3))
                if (length is not None and length != end - offset) or (whole is not None and whole < end):
                    part.drop()
                    raise Retry("server sent an inconsistent range; starting over")
                if max(end, whole or 0) > max_bytes:
                    raise _too_big(url, max_bytes, max(end, whole or 0))
                expect_end = end
            elif status == 200:
                whole = expect_end = self._length(resp, url, max_bytes)
                offset = 0
            else:
                bad_status(resp.status_code, _shown(url))
            on_progress = None if progress is None else (lambda n: progress(n, whole))
            if on_progress is not None:
                on_progress(offset)
            with part.writer(offset) as write:
                done = self._pump(resp, url, write, offset, max_bytes, expect_end, on_progress)
        if whole is not None and done < whole:
            # A server that caps the size of a range: keep what came, the next attempt resumes.
            raise Retry(f"partial range ended at {done} of {whole} bytes", done - offset)
        return done

    # -- file:// ----------------------------------------------------------------------------

    @staticmethod
    def _open_local(url: str) -> BinaryIO:
        parts = urllib.parse.urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise UsageError(f"file URL with a remote host: {_shown(url)}")
        path = urllib.request.url2pathname(parts.path)
        try:
            return open(path, "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFoundError(f"{_shown(url)}: no such file") from None
        except OSError as e:
            raise NetworkError(f"cannot read {_shown(url)}: {e.strerror or e}") from None

    def _count(self, n: int) -> None:
        with self._count_lock:
            self.received += n

    def _local_chunks(self, f: BinaryIO, url: str, max_bytes: int) -> Iterator[bytes]:
        """The file's content in chunks, refusing to go past `max_bytes` (it may be a device)."""
        done = 0
        while True:
            try:
                chunk = f.read(_CHUNK)
            except OSError as e:
                if e.errno == errno.EISDIR:
                    raise NotFoundError(f"{_shown(url)}: not a file") from None
                raise NetworkError(f"cannot read {_shown(url)}: {e.strerror or e}") from None
            if not chunk:
                return
            done += len(chunk)
            if done > max_bytes:
                raise _too_big(url, max_bytes)
            self._count(len(chunk))
            yield chunk

    def _copy_local(self, url: str, part: PartFile, max_bytes: int, progress: Progress | None) -> int:
        """`fetch_file` for a local mirror: same cap, same `.part` and rename, no retries."""
        with self._open_local(url) as src:
            st = os.fstat(src.fileno())
            total = st.st_size if stat.S_ISREG(st.st_mode) else None
            if total is not None and total > max_bytes:
                raise _too_big(url, max_bytes, total)
            return part.copy(self._local_chunks(src, url, max_bytes), total, progress)
