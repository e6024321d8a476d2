"""A real HTTP server on loopback that serves a directory and misbehaves on demand.

The client's network code must survive servers that fail, stall, lie and attack, and mocks
cannot show that the real HTTP stack (sockets, keep-alive, requests, urllib3) copes. So the
tests run `FaultServer`: a `ThreadingHTTPServer` on 127.0.0.1 (a free port) in a background
thread, speaking HTTP/1.1 with keep-alive, GET and HEAD, and single `Range` requests (206 with
`Content-Range`, 416 `bytes */size` past the end). Directories and missing files are 404.

    with FaultServer(www_dir) as srv:
        srv.fail(503, times=2, path="/10/Manifest.MoM")   # next two requests of that path
        srv.truncate(1000)                                 # every body stops after 1000 bytes
        ... fetch srv.url("10/Manifest.MoM") ...
        assert [e.status for e in srv.requests("/10/Manifest.MoM")] == [503, 503, 200]

Faults ("knobs"). Each takes `path` (a URL path such as "/10/files/x.tar"; None: every path)
and `times` (how many requests it applies to, then it is spent; None: until cleared). They can
be set, changed and cleared (`clear_faults`) while the server runs. For each kind, a rule for
the request's path wins over a global one; kinds combine (e.g. `drip` and `truncate`).

- `fail(status, times=1)`: answer with that status (500, 503, 408, 429, 404, ...).
- `hang()`: read the request and never answer, until `stop()` (logged with status None).
- `truncate(after)`: send the full `Content-Length` but close after `after` body bytes.
- `drip(bytes_per_second)`: send the body at that rate.
- `corrupt(data=None)`: replace the body by other bytes of the same length (`data` repeated,
  or each byte inverted).
- `endless(content_length=None)`: after the body, keep sending junk until the client hangs up;
  with no `Content-Length` header (the connection delimits the body), or a lying one.
- `ignore_range()`: answer a `Range` request with 200 and the whole body (`times` counts only
  requests that carried `Range`).

`fail` and `hang` apply to every method; the others to GETs of files that exist. `log` lists
every request as `LogEntry(method, path, range, status)`, in the order answered; `requests()`
filters it. `errors` collects exceptions of the server itself (clients hanging up excepted), so
a fixture can assert it stayed sound. `stop()` never blocks for long: hung and dripping handlers
are released and open keep-alive connections are shut down.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_KINDS = ("fail", "hang", "truncate", "drip", "corrupt", "endless", "ignore_range")
_INVERT = bytes(255 - i for i in range(256))


@dataclass(frozen=True)
class LogEntry:
    """One request: `status` is None for a request left unanswered (`hang`)."""

    method: str
    path: str
    range: str | None
    status: int | None


@dataclass
class _Rule:
    kind: str
    arg: Any
    times: int | None


class FaultServer:
    """Serves `root` on http://127.0.0.1:<port>/ with switchable faults; see the module doc."""

    def __init__(self, root: str | os.PathLike[str], host: str = "127.0.0.1") -> None:
        self.root = os.path.abspath(os.fspath(root))
        self._host = host
        self._lock = threading.Lock()
        self._rules: dict[str | None, list[_Rule]] = {}
        self._log: list[LogEntry] = []
        self._stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._handlers: set[threading.Thread] = set()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.errors: list[BaseException] = []
        """Exceptions raised by handlers other than clients hanging up: a test may assert it is empty."""

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> FaultServer:
        """Listen on a free port and serve from a background thread."""
        handler = type("Handler", (_Handler,), {"srv": self})
        self._httpd = _HTTPServer((self._host, 0), handler)
        self._httpd.srv = self
        self._httpd.block_on_close = False  # stop() joins handlers itself, with a time limit
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="FaultServer", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving; releases hung handlers and cuts open connections first."""
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            conns, handlers = list(self._conns), list(self._handlers)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for t in handlers:
            t.join(max(0.0, deadline - time.monotonic()))
        self._httpd = None

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(self, path: str = "") -> str:
        """The http:// URL of `path` (relative to the served directory)."""
        return f"http://{self._host}:{self.port}/{urllib.parse.quote(path.lstrip('/'))}"

    # -- faults -----------------------------------------------------------------------------

    def fail(self, status: int, times: int | None = 1, path: str | None = None) -> None:
        """Answer the next `times` requests with `status` and a short body."""
        self._add("fail", int(status), times, path)

    def hang(self, times: int | None = None, path: str | None = None) -> None:
        """Accept requests and never answer them (until `stop()`)."""
        self._add("hang", None, times, path)

    def truncate(self, after: int, times: int | None = None, path: str | None = None) -> None:
        """Announce the full length but close the connection after `after` body bytes."""
        self._add("truncate", int(after), times, path)

    def drip(self, bytes_per_second: float, times: int | None = None, path: str | None = None) -> None:
        """Send bodies at `bytes_per_second`."""
        self._add("drip", float(bytes_per_second), times, path)

    def corrupt(self, data: bytes | None = None, times: int | None = None, path: str | None = None) -> None:
        """Serve other bytes of the same length: `data` repeated, or every byte inverted."""
        self._add("corrupt", data, times, path)

    def endless(self, content_length: int | None = None, times: int | None = None, path: str | None = None) -> None:
        """Never end the body; send `Content-Length: content_length` if given (a lie), else none."""
        self._add("endless", content_length, times, path)

    def ignore_range(self, times: int | None = None, path: str | None = None) -> None:
        """Answer Range requests with 200 and the whole file."""
        self._add("ignore_range", None, times, path)

    def clear_faults(self, path: str | None = None) -> None:
        """Remove the faults set for `path`, or every fault (global and per path) when None."""
        with self._lock:
            if path is None:
                self._rules.clear()
            else:
                self._rules.pop(_norm(path), None)

    def _add(self, kind: str, arg: Any, times: int | None, path: str | None) -> None:
        assert kind in _KINDS
        key = None if path is None else _norm(path)
        with self._lock:
            rules = self._rules.setdefault(key, [])
            rules[:] = [r for r in rules if r.kind != kind]
            if times is None or times > 0:
                rules.append(_Rule(kind, arg, times))

    def _take(self, kind: str, path: str) -> _Rule | None:
        """The rule of `kind` for `path` (path rules first), spending one of its `times`."""
        with self._lock:
            for key in (path, None):
                for rule in self._rules.get(key, []):
                    if rule.kind == kind:
                        if rule.times is not None:
                            rule.times -= 1
                            if rule.times <= 0:
                                self._rules[key].remove(rule)
                        return rule
        return None

    # -- log --------------------------------------------------------------------------------

    @property
    def log(self) -> list[LogEntry]:
        """A copy of every request so far."""
        with self._lock:
            return list(self._log)

    def requests(self, path: str | None = None, method: str | None = None) -> list[LogEntry]:
        """The logged requests of `path` and/or `method`."""
        key = None if path is None else _norm(path)
        return [e for e in self.log if (key is None or e.path == key) and (method is None or e.method == method)]

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    def _record(self, entry: LogEntry) -> None:
        with self._lock:
            self._log.append(entry)


class _HTTPServer(ThreadingHTTPServer):
    srv: FaultServer
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up or reset are the point of these tests; anything else is kept."""
        exc = sys.exc_info()[1]
        if exc is not None and not isinstance(exc, OSError):
            with self.srv._lock:
                self.srv.errors.append(exc)
            super().handle_error(request, client_address)


def _norm(path: str) -> str:
    """A URL path as rules and the log name it: decoded, with one leading slash, no query."""
    return "/" + urllib.parse.unquote(urllib.parse.urlsplit(path).path).lstrip("/")


class _Handler(BaseHTTPRequestHandler):
    srv: FaultServer
    protocol_version = "HTTP/1.1"
    timeout = 30  # an idle keep-alive connection cannot hold a thread forever

    def setup(self) -> None:
        super().setup()
        with self.srv._lock:
            self.srv._conns.add(self.connection)
            self.srv._handlers.add(threading.current_thread())

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.srv._lock:
                self.srv._conns.discard(self.connection)
                self.srv._handlers.discard(threading.current_thread())

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log replaces stderr noise

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        srv = self.srv
        path = _norm(self.path)
        rng = self.headers.get("Range")
        fail = srv._take("fail", path)
        if fail is not None:
            return self._status(fail.arg, path, rng)
        if srv._take("hang", path) is not None:
            srv._record(LogEntry(self.command, path, rng, None))
            srv._stopping.wait()
            self.close_connection = True
            return None
        data = self._read_file(path)
        if data is None:
            return self._status(404, path, rng)
        if not body:
            srv._record(LogEntry(self.command, path, rng, 200))
            return self._headers(200, {"Content-Length": str(len(data)), "Accept-Ranges": "bytes"})
        corrupt = srv._take("corrupt", path)
        if corrupt is not None:
            data = _corrupted(data, corrupt.arg)
        endless = srv._take("endless", path)
        if endless is not None:
            return self._endless(data, endless.arg, path, rng)
        status, headers, start, end = 200, {}, 0, len(data)
        if rng is not None and srv._take("ignore_range", path) is None:
            m = _RANGE.fullmatch(rng.strip())
            if m and (m.group(1) or m.group(2)):  # anything else (e.g. several ranges) gets 200
                if m.group(1):
                    start = int(m.group(1))
                    end = min(len(data), int(m.group(2)) + 1) if m.group(2) else len(data)
                else:
                    start = max(0, len(data) - int(m.group(2)))
                if start >= len(data) or start >= end:
                    srv._record(LogEntry(self.command, path, rng, 416))
                    return self._headers(416, {"Content-Range": f"bytes */{len(data)}", "Content-Length": "0"})
                status, headers = 206, {"Content-Range": f"bytes {start}-{end - 1}/{len(data)}"}
        headers.update({"Content-Length": str(end - start), "Accept-Ranges": "bytes"})
        srv._record(LogEntry(self.command, path, rng, status))
        self._headers(status, headers)
        self._send(data[start:end], path)
        return None

    def _read_file(self, path: str) -> bytes | None:
        """The bytes of the file under root that `path` names, or None (never outside root)."""
        full = os.path.realpath(os.path.join(self.srv.root, path.lstrip("/")))
        if os.path.commonpath([full, self.srv.root]) != self.srv.root or not os.path.isfile(full):
            return None
        with open(full, "rb") as f:
            return f.read()

    def _status(self, status: int, path: str, rng: str | None) -> None:
        self.srv._record(LogEntry(self.command, path, rng, status))
        body = f"{status} fault\n".encode()
        self._headers(status, {"Content-Length": str(len(body))})
        if self.command != "HEAD":
            self._write(body)

    def _headers(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def _write(self, data: bytes) -> bool:
        try:
            self.wfile.write(data)
            return True
        except OSError:  # the client hung up
            self.close_connection = True
            return False

    def _send(self, data: bytes, path: str) -> None:
        """Send a body, applying `truncate` and `drip`."""
        truncate = self.srv._take("truncate", path)
        if truncate is not None and truncate.arg < len(data):
            data = data[: truncate.arg]
            self.close_connection = True
        drip = self.srv._take("drip", path)
        if drip is None:
            self._write(data)
            return
        rate = max(drip.arg, 0.001)
        step = max(1, int(rate / 20))
        began = time.monotonic()
        for sent in range(0, len(data), step):
            wait = began + sent / rate - time.monotonic()
            if wait > 0 and self.srv._stopping.wait(wait):
                self.close_connection = True
                return
            if not self._write(data[sent : sent + step]):
                return

    def _endless(self, data: bytes, claimed: int | None, path: str, rng: str | None) -> None:
        self.srv._record(LogEntry(self.command, path, rng, 200))
        headers = {"Connection": "close"}
        if claimed is not None:
            headers["Content-Length"] = str(claimed)
        self.close_connection = True
        self._headers(200, headers)
        junk = b"\xa5" * 65536
        if not self._write(data):
            return
        while not self.srv._stopping.is_set() and self._write(junk):
            pass


def _corrupted(data: bytes, replacement: bytes | None) -> bytes:
    if replacement:
        return (replacement * (len(data) // len(replacement) + 1))[: len(data)]
    return data.translate(_INVERT)
