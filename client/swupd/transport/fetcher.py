"""HTTP(S) and file:// downloads with size caps, retries, resume, a minimum-speed check and a
run-wide limit on work without progress (patience.py).

Modelled on python-tuf ngclient's `RequestsFetcher`: the fetcher only moves bytes. Every byte
comes from an untrusted server over a slow, lossy link, so the fetcher's duties are to keep a
hostile or broken server from exhausting memory, disk or time (a hard cap on length, a minimum
speed, bounded retries, one patience for the whole run) and to make progress on a bad network
(resume with `Range`). It never parses what it fetches and writes only to the destinations it
is handed (in the client's state directory); the caller verifies content against signed hashes and sizes.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import logging
import os
import random
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

from swupd.format.errors import DiskFullError, NetworkError, NotFoundError, SizeLimitError, TreeIOError, UsageError

from .netconfig import NetConfig
from .patience import Adapter, Patience

log = logging.getLogger(__name__)

__all__ = ["Fetcher", "ManyProgress", "NetConfig", "Progress"]

Progress = Callable[[int, int | None], None]
"""`progress(bytes_done, total_or_None)`, called from the downloading thread."""

ManyProgress = Callable[[str, int, int | None], None]
"""`progress(url, bytes_done, total_or_None)` for `Fetcher.fetch_many`: from worker threads, one at a time."""

# Small enough that a slow link still yields chunks often (the speed check runs per chunk).
_CHUNK = 64 * 1024
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504}) | frozenset(range(505, 600))
_GONE_STATUS = frozenset({404, 410})
_CONTENT_RANGE = re.compile(r"bytes (\d{1,20})-(\d{1,20})/(\d{1,20}|\*)", re.ASCII)
_UNSATISFIED_RANGE = re.compile(r"bytes \*/(\d{1,20})", re.ASCII)
_NET_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException, OSError)
_T = TypeVar("_T")


class _Retry(Exception):
    """An attempt failed in a way that another attempt may fix; `received` counts its bytes."""

    def __init__(self, reason: str, received: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.received = received


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


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise TreeIOError(f"cannot remove {path}: {e.strerror}") from None


def _local_error(e: OSError, url: str, path: str) -> Exception:
    """Map a failure to write `path` to the client's error; the partial file is removed first."""
    with contextlib.suppress(OSError):
        os.unlink(path)
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(f"no space left writing {path} (fetching {_shown(url)})")
    return TreeIOError(f"cannot write {path} (fetching {_shown(url)}): {e.strerror or e}")


def _sync_dir(path: str) -> None:
    """Make a rename durable: a power cut must not lose a file the caller was told is there."""
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
                    self._bad_status(resp, url)
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
        dest = os.fspath(dest)
        part = dest + ".part"
        if self._scheme(url) == "file":
            return self._copy_local(url, dest, part, max_bytes, progress, durable)
        try:
            size = self._with_retries(url, lambda: self._fetch_part(url, part, max_bytes, progress, durable))
            os.replace(part, dest)
            if durable:
                _sync_dir(dest)
        except (SizeLimitError, NotFoundError):
            _remove(part)  # the server disowned or overran it: nothing worth resuming
            raise
        except OSError as e:
            raise _local_error(e, url, part) from None
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
                    self._bad_status(resp, url)
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
        """Run `attempt` until it succeeds, backing off between failures that may be transient,
        unless the run has given up on the server."""
        cfg, patience = self.config, self.patience
        useful = max(1, int(cfg.min_speed * cfg.speed_window))
        failures = attempts = 0
        with patience.busy():
            while True:
                self._check_patience(url)
                attempts += 1
                try:
                    with patience.attempt():
                        result = attempt()
                except _Retry as e:
                    patience.failed()
                    self._check_patience(url)  # the watchdog's cut shows up as a broken transfer
                    failures = 1 if e.received >= useful else failures + 1
                    if failures > cfg.retries:
                        raise NetworkError(f"cannot fetch {_shown(url)}: {e.reason} ({attempts} attempts)") from None
                    delay = min(cfg.backoff_max, cfg.backoff_base * 2 ** (failures - 1))
                    delay *= random.uniform(0.5, 1.0)  # jitter: devices must not retry in step
                    log.warning("%s: %s; retrying in %.1f s (attempt %d)", _shown(url), e.reason, delay, attempts + 1)
                    patience.pause(delay)
                    continue
                except NetworkError:
                    self._check_patience(url)
                    raise
                self._check_patience(url)  # a body cut off by the watchdog may look whole
                patience.progress()
                return result

    def _check_patience(self, url: str) -> None:
        reason = self.patience.reason
        if reason is not None:
            raise NetworkError(f"cannot fetch {_shown(url)}: {reason}; giving up on the server")

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
            raise _Retry(f"no connection within {cfg.connect_timeout} s") from None
        except requests.Timeout:
            raise _Retry(f"no answer within {cfg.read_timeout} s") from None
        except requests.ConnectionError as e:
            cause = getattr(e.args[0], "reason", e.args[0]) if e.args else e
            raise _Retry(f"connection failed ({type(cause).__name__})") from None
        except requests.RequestException as e:
            raise NetworkError(f"cannot fetch {_shown(url)}: {_one_line(e)}") from None

    @staticmethod
    def _length(resp: requests.Response, url: str, max_bytes: int) -> int | None:
        """The announced length of a 200 body; refused before reading when over the cap."""
        length = _int_header(resp.headers.get("Content-Length"))
        if length is not None and length > max_bytes:
            raise _too_big(url, max_bytes, length)
        return length

    @staticmethod
    def _bad_status(resp: requests.Response, url: str) -> None:
        """Raise what an unexpected status means: gone, worth retrying, or a hard failure."""
        status = resp.status_code
        if status in _GONE_STATUS:
            raise NotFoundError(f"{_shown(url)}: HTTP {status}, not found")
        if status in _RETRY_STATUS:
            raise _Retry(f"HTTP {status}")
        raise NetworkError(f"cannot fetch {_shown(url)}: unexpected HTTP {status}")

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
                raise _Retry(f"transfer broken after {done - start} bytes ({type(e).__name__})", done - start) from None
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
                    raise _Retry(f"slower than {cfg.min_speed} bytes/s", done - start)
                window_start, window_bytes = now, 0
        if expect_end is not None and done < expect_end:
            raise _Retry(f"body cut short at {done} of {expect_end} bytes", done - start)
        return done

    def _fetch_part(self, url: str, part: str, max_bytes: int, progress: Progress | None, durable: bool) -> int:
        """One attempt at completing `part`, resuming from what it already holds."""
        try:
            offset = os.path.getsize(part)
        except FileNotFoundError:
            offset = 0
        if offset > max_bytes:
            _remove(part)
            offset = 0
        resp = self._request("GET", url, {"Range": f"bytes={offset}-"} if offset else None)
        with resp:
            status = resp.status_code
            length = _int_header(resp.headers.get("Content-Length"))
            whole: int | None = None
            if status == 416 and offset:
                m = _UNSATISFIED_RANGE.fullmatch(resp.headers.get("Content-Range", ""))
                if m and int(m.group(1)) == offset:
                    return offset  # an earlier run got it all but stopped before the rename
                _remove(part)
                raise _Retry("server refused to resume (HTTP 416); starting over")
            if status == 206:
                m = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", ""))
                if not m or int(m.group(1)) != offset or int(m.group(2)) < offset:
                    _remove(part)
                    raise _Retry("server sent the wrong range; starting over")
                end = int(m.group(2)) + 1
                whole = None if m.group(3) == "*" else int(m.group(3))
                if (length is not None and length != end - offset) or (whole is not None and whole < end):
                    _remove(part)
                    raise _Retry("server sent an inconsistent range; starting over")
                if max(end, whole or 0) > max_bytes:
                    raise _too_big(url, max_bytes, max(end, whole or 0))
                mode, expect_end = "ab", end
            elif status == 200:
                whole = expect_end = self._length(resp, url, max_bytes)
                offset, mode = 0, "wb"
            else:
                self._bad_status(resp, url)
                raise AssertionError("unreachable")
            on_progress = None if progress is None else (lambda n: progress(n, whole))
            if on_progress is not None:
                on_progress(offset)
            with open(part, mode) as f:
                done = self._pump(resp, url, f.write, offset, max_bytes, expect_end, on_progress)
                if durable:
                    f.flush()
                    os.fsync(f.fileno())
        if whole is not None and done < whole:
            # A server that caps the size of a range: keep what came, the next attempt resumes.
            raise _Retry(f"partial range ended at {done} of {whole} bytes", done - offset)
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

    def _copy_local(
        self, url: str, dest: str, part: str, max_bytes: int, progress: Progress | None, durable: bool
    ) -> int:
        """`fetch_file` for a local mirror: same cap, same `.part` and rename, no retries."""
        with self._open_local(url) as src:
            st = os.fstat(src.fileno())
            total = st.st_size if stat.S_ISREG(st.st_mode) else None
            if total is not None and total > max_bytes:
                raise _too_big(url, max_bytes, total)
            done = 0
            try:
                with open(part, "wb") as out:
                    for chunk in self._local_chunks(src, url, max_bytes):
                        out.write(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(done, total)
                    if durable:
                        out.flush()
                        os.fsync(out.fileno())
                os.replace(part, dest)
                if durable:
                    _sync_dir(dest)
            except OSError as e:
                raise _local_error(e, url, part) from None
            except (NetworkError, SizeLimitError):
                _remove(part)
                raise
        return done
