"""The run-wide bound on network work: when to give up on a server, and cutting it off then.

Per-attempt limits (timeouts, minimum speed) bound one request, and per-URL retries bound one
file, but a run fetches many files: a server that hangs or drips would be tried once per file,
for hours. `Patience` judges the server as a whole. It counts failed attempts in a row over
every URL and the seconds of network work without progress (a completed request, or a useful
amount of one transfer); time spent on local work between requests does not count. When either
passes its limit the run gives up: every later request is refused at once, and a watchdog
thread shuts down the socket of every request in flight, whether it waits for a status line, a
header or the body, since a socket's read timeout applies per read and never fires on a server
that sends a byte at a time.

Sockets are tracked through urllib3 connection classes that register theirs, for the attempt
running in the current thread, when they start waiting for a response.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import requests.adapters
import urllib3.connection
import urllib3.connectionpool

_current = threading.local()  # .patience: the Patience of the attempt this thread runs


class _Tracked:
    """Mixin for urllib3 connections: the socket joins the current attempt before the wait."""

    sock: socket.socket | None

    def getresponse(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        patience = getattr(_current, "patience", None)
        if patience is not None and self.sock is not None:
            patience.track(self.sock)
        return super().getresponse(*args, **kwargs)  # type: ignore[misc]


class _HTTPConnection(_Tracked, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(_Tracked, urllib3.connection.HTTPSConnection):
    pass


class _HTTPPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


POOL_CLASSES = {"http": _HTTPPool, "https": _HTTPSPool}
"""For `PoolManager.pool_classes_by_scheme`: pools whose connections can be cut off."""


class Adapter(requests.adapters.HTTPAdapter):
    """Connections whose sockets the run's patience can shut down, HTTP(S)-proxied ones included."""

    def init_poolmanager(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = POOL_CLASSES

    def proxy_manager_for(self, proxy, **kwargs):  # type: ignore[no-untyped-def]
        manager = super().proxy_manager_for(proxy, **kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS proxies bring connection classes of their own
            manager.pool_classes_by_scheme = POOL_CLASSES
        return manager


class Patience:
    """Shared by every thread of one fetcher; see the module docstring."""

    def __init__(self, give_up_after: float, max_failures: int) -> None:
        self.give_up_after = give_up_after
        self.max_failures = max_failures
        self.reason: str | None = None
        """Why the run gave up, once it has."""
        self._cond = threading.Condition()
        self._busy = 0  # public fetch calls under way (their back-off pauses included)
        self._spent = 0.0  # seconds without progress in earlier busy stretches
        self._since = 0.0  # start of the current stretch without progress
        self._failures = 0
        self._sockets: dict[int, set[socket.socket]] = {}  # by thread: the sockets of its attempt
        self._watchdog: threading.Thread | None = None
        self._closed = False

    def _stalled(self, now: float) -> float:
        return self._spent + (now - self._since if self._busy else 0.0)

    def remaining(self) -> float:
        """Seconds of work without progress left before the run gives up."""
        with self._cond:
            return 0.0 if self.reason else self.give_up_after - self._stalled(time.monotonic())

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Around one fetch with its retries: the stall clock runs while any is under way."""
        with self._cond:
            if not self._busy:
                self._since = time.monotonic()
                if self._watchdog is None:
                    self._watchdog = threading.Thread(target=self._watch, name="swupd-patience", daemon=True)
                    self._watchdog.start()
                self._cond.notify_all()
            self._busy += 1
        try:
            yield
        finally:
            with self._cond:
                self._busy -= 1
                if not self._busy:
                    self._spent += time.monotonic() - self._since

    @contextlib.contextmanager
    def attempt(self) -> Iterator[None]:
        """Around one request: the sockets it waits on can be shut down by the watchdog."""
        _current.patience = self
        try:
            yield
        finally:
            _current.patience = None
            with self._cond:
                self._sockets.pop(threading.get_ident(), None)

    def track(self, sock: socket.socket) -> None:
        with self._cond:
            if self.reason:
                _shut(sock)
            self._sockets.setdefault(threading.get_ident(), set()).add(sock)

    def progress(self) -> None:
        """The server delivered: both counts start again."""
        with self._cond:
            self._failures = 0
            self._spent, self._since = 0.0, time.monotonic()

    def failed(self) -> None:
        """An attempt failed in a way a retry might fix."""
        with self._cond:
            self._failures += 1
            if self._failures >= self.max_failures:
                self._give_up(f"{self._failures} failed attempts in a row")

    def pause(self, seconds: float) -> None:
        """Back off between attempts; over at once when the run gives up."""
        with self._cond:
            self._cond.wait_for(lambda: self.reason is not None, timeout=seconds)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _give_up(self, reason: str) -> None:
        """Called with the lock held."""
        if self.reason is None:
            self.reason = reason
            for sockets in self._sockets.values():
                for sock in sockets:
                    _shut(sock)
            self._cond.notify_all()

    def _watch(self) -> None:
        with self._cond:
            while not self._closed and self.reason is None:
                if not self._busy:
                    self._cond.wait()
                    continue
                left = self.give_up_after - self._stalled(time.monotonic())
                if left <= 0:
                    self._give_up(f"no progress in {self.give_up_after:g} s of network work")
                else:
                    self._cond.wait(left)


def _shut(sock: socket.socket) -> None:
    """Wake whatever waits on `sock` (a plain close would leave a blocked read waiting)."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
