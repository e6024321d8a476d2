"""When the fetcher tries again: which failures another attempt may fix, the backoff between
attempts, and giving up once the run has lost patience with the server (patience.py).

This module does no HTTP itself: it judges status codes and runs the attempts it is handed.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import NoReturn, TypeVar

from swupd.format.errors import NetworkError, NotFoundError

from .netconfig import NetConfig
from .patience import Patience

# Logged under the fetcher's name: what a user reads as its warnings.
log = logging.getLogger("swupd.transport.fetcher")

_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504}) | frozenset(range(505, 600))
_GONE_STATUS = frozenset({404, 410})
_T = TypeVar("_T")


class Retry(Exception):
    """An attempt failed in a way that another attempt may fix; `received` counts its bytes."""

    def __init__(self, reason: str, received: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.received = received


def bad_status(status: int, shown: str) -> NoReturn:
    """Raise what an unexpected status means: gone, worth retrying, or a hard failure."""
    if status in _GONE_STATUS:
        raise NotFoundError(f"{shown}: HTTP {status}, not found")
    if status in _RETRY_STATUS:
        raise Retry(f"HTTP {status}")
    raise NetworkError(f"cannot fetch {shown}: unexpected HTTP {status}")


def check_patience(patience: Patience, shown: str) -> None:
    """Refuse to go on once the run has given up on the server."""
    reason = patience.reason
    if reason is not None:
        raise NetworkError(f"cannot fetch {shown}: {reason}; giving up on the server")


def with_retries(cfg: NetConfig, patience: Patience, shown: str, attempt: Callable[[], _T]) -> _T:
    """Run `attempt` until it succeeds, backing off between failures that may be transient,
    unless the run has given up on the server. An attempt that received a useful amount
    (what the minimum speed asks of one window) starts the count of failures over."""
    useful = max(1, int(cfg.min_speed * cfg.speed_window))
    failures = attempts = 0
    with patience.busy():
        while True:
            check_patience(patience, shown)
            attempts += 1
            try:
                with patience.attempt():
                    result = attempt()
            except Retry as e:
                patience.failed()
                check_patience(patience, shown)  # the watchdog's cut shows up as a broken transfer
                failures = 1 if e.received >= useful else failures + 1
                if failures > cfg.retries:
                    raise NetworkError(f"cannot fetch {shown}: {e.reason} ({attempts} attempts)") from None
                delay = min(cfg.backoff_max, cfg.backoff_base * 2 ** (failures - 1))
                delay *= random.uniform(0.5, 1.0)  # jitter: devices must not retry in step
                log.warning("%s: %s; retrying in %.1f s (attempt %d)", shown, e.reason, delay, attempts + 1)
                patience.pause(delay)
                continue
            except NetworkError:
                check_patience(patience, shown)
                raise
            check_patience(patience, shown)  # a body cut off by the watchdog may look whole
            patience.progress()
            return result
