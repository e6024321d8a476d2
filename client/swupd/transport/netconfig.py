"""How patient the client is with the network: every timeout, rate and count in one object.

Two kinds of bound. Each request attempt is bounded by the connect and read timeouts and the
minimum speed; the whole run is bounded by `give_up_after` and `max_failures`, so a server
that never answers, or answers a byte at a time, ends the command with a network error
(exit 11) instead of being tried once per file. `SWUPD_NET` overrides fields for one command
(`SWUPD_NET="give_up_after=30,read_timeout=10"`), e.g. for a device behind a very slow link.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from swupd import __version__
from swupd.format.errors import UsageError

ENV = "SWUPD_NET"
_MAY_BE_ZERO = ("min_speed", "retries")  # no speed check; no retries


@dataclass(frozen=True)
class NetConfig:
    """The defaults suit a slow, lossy link, and give up on a hopeless server within 2 minutes."""

    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    # A transfer that delivers less than min_speed bytes/s over a whole window is abandoned and
    # retried: read_timeout alone never fires on a server that drips one byte every few seconds.
    min_speed: int = 1024
    speed_window: float = 30.0
    # Retries of one URL after its first attempt. An attempt that moved at least one window's
    # worth of minimum-speed bytes resets the count, so a long download on a flaky link can finish.
    retries: int = 4
    backoff_base: float = 1.0
    backoff_max: float = 30.0
    # The run gives up (every request in flight is cut off, every later one refused) once its
    # network work has gone this many seconds without progress: a completed request, or
    # min_speed * speed_window bytes of one transfer. Time spent on local work does not count.
    give_up_after: float = 120.0
    # ... or once this many attempts in a row, over every URL, have failed.
    max_failures: int = 10
    max_parallel: int = 4
    user_agent: str = f"swupd/{__version__}"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "user_agent":
                continue
            if not (math.isfinite(value) and (value > 0 or (f.name in _MAY_BE_ZERO and value == 0))):
                raise UsageError(f"network setting {f.name} must be positive, not {value}")

    def worst_case_seconds(self) -> float:
        """The longest a run works against a server that makes no progress: the watchdog cuts
        every request off when `give_up_after` is reached, and no connection attempt may last
        past it, so this is the bound whatever the server does (name resolution aside)."""
        return self.give_up_after


def with_overrides(base: NetConfig, spec: str) -> NetConfig:
    """`base` with the `name=value,...` settings of `spec` (the `SWUPD_NET` syntax)."""
    if not spec.strip():
        return base
    numeric = {f.name: f.type for f in dataclasses.fields(NetConfig) if f.name != "user_agent"}
    changes: dict[str, float | int] = {}
    for item in spec.split(","):
        name, sep, value = (s.strip() for s in item.partition("="))
        if not sep or name not in numeric:
            raise UsageError(f"{ENV}: {item.strip()!r} is not one of {', '.join(numeric)} with =value")
        try:
            changes[name] = int(value) if numeric[name] in (int, "int") else float(value)
        except ValueError:
            raise UsageError(f"{ENV}: {name} needs a number, not {value!r}") from None
    return dataclasses.replace(base, **changes)
