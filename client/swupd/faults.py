"""Named fault points, so tests can interrupt the client at every step.

`SWUPD_FAULT` holds comma-separated `point[@n]:action` rules: at the n-th time (default first)
the client passes `point`, it performs `action`: `kill` (SIGKILL itself, as a power cut
would), `enospc` (a full disk) or `eio` (an I/O error). Without the variable the checks cost a
dictionary lookup. Points are listed in `POINTS`.
"""

from __future__ import annotations

import errno
import os
import signal

POINTS = (
    "closed",  # a state directory found open to others has just been closed, not yet checked
    "object",  # a delta's result written to the store, its owner and mode not yet (counted)
    "downloaded",  # after all downloads, before anything is staged
    "stage",  # before each object is staged (counted)
    "staged",  # after staging, before the journal is written
    "journal-written",  # the journal is on disk, nothing applied yet
    "action",  # before each journal action (counted)
    "applied",  # all actions done, before the version records
    "recorded",  # version records written, journal not yet removed
)

_counts: dict[str, int] = {}


def _rules() -> dict[str, tuple[int, str]]:
    spec = os.environ.get("SWUPD_FAULT", "")
    rules = {}
    for rule in filter(None, (r.strip() for r in spec.split(","))):
        where, _, action = rule.partition(":")
        point, _, nth = where.partition("@")
        rules[point] = (int(nth) if nth.isdigit() else 1, action or "kill")
    return rules


_RULES = _rules()


def reload() -> None:
    """Re-read SWUPD_FAULT (for in-process tests)."""
    global _RULES
    _RULES = _rules()
    _counts.clear()


def check(point: str) -> None:
    """Pass fault point `point`; act if a rule says so."""
    if not _RULES or point not in _RULES:
        return
    _counts[point] = _counts.get(point, 0) + 1
    nth, action = _RULES[point]
    if _counts[point] != nth:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if action == "eio":
        raise OSError(errno.EIO, os.strerror(errno.EIO))
