"""The trusted set: signature, version, expiry and compatibility checks on raw bytes.

Follows The Update Framework's client workflow: a signature is verified over the exact bytes
downloaded before they are parsed; versions may never go below what the device runs or has
ever seen for `latest` (kept in the state directory, not only in os-release), and a MoM
below the installed version is refused unless a command explicitly reads an older one (verify,
repair, os-install of a chosen version); an expired `latest` means the
server may be frozen on an old version. Time on a board without a real-time clock may start in
1970, so the clock used for expiry is never earlier than the newest signed build time the device
has seen: a frozen server is caught even then.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from swupd.format import latest as latest_fmt
from swupd.format import manifest as mf
from swupd.format.errors import (
    CompatError,
    ExpiredError,
    FormatError,
    HashMismatchError,
    RollbackError,
    SizeLimitError,
)
from swupd.format.filehash import hash_bytes
from swupd.format.manifest import Entry, Manifest

from ..config import Settings
from ..state import StateDir, TrustRecord
from .keys import KeyRing


class TrustedSet:
    """Holds what has been verified in this run and persists the rollback floor."""

    def __init__(self, settings: Settings, state: StateDir, current_version: int, now: float | None = None) -> None:
        self.s = settings
        self.state = state
        self.record = state.trust()
        self.current = current_version
        self.started = time.time() if now is None else now
        self.keys = KeyRing(settings.keys, state.sub("keys"), settings.limits)

    def effective_now(self, floor: int = 0) -> int:
        """The update start time, but never before a signed build time already trusted."""
        return int(max(self.started, self.record.latest_timestamp, floor))

    def latest(self, data: bytes, sig: bytes, allow_older: bool = False) -> latest_fmt.Latest:
        self.keys.verify(data, sig)
        rec = latest_fmt.loads(data, self.s.limits)
        if rec.format != self.s.format:
            raise FormatError(f"latest is for format {rec.format}, this device uses {self.s.format}")
        if not allow_older:
            floor = max(self.record.highest_version, self.current)
            if rec.version < floor:
                raise RollbackError(f"server offers version {rec.version}, below version {floor} already trusted")
            if rec.timestamp < self.record.latest_timestamp:
                raise RollbackError("server offers a latest pointer older than one already trusted")
        now = self.effective_now()
        if rec.expires < now:
            raise ExpiredError(
                f"the server's latest pointer (version {rec.version}) expired at {_utc(rec.expires)}; "
                "the server may be frozen on an old version"
            )
        self.state.save_trust(TrustRecord(rec.version, rec.timestamp))
        self.record = self.state.trust()
        return rec

    def mom(self, version: int, data: bytes, sig: bytes, allow_older: bool = False) -> Manifest:
        if len(data) > self.s.limits.max_mom_bytes:
            raise SizeLimitError("Manifest.MoM too large")
        self.keys.verify(data, sig)
        mom = mf.loads(data, is_mom=True, limits=self.s.limits)
        if mom.version != version:
            raise FormatError(f"Manifest.MoM of version {version} says it is version {mom.version}")
        if mom.format != self.s.format:
            raise FormatError(f"version {version} is in format {mom.format}, this device uses {self.s.format}")
        if self.s.compat and mom.compat != self.s.compat:
            raise CompatError(
                f"version {version} is for {mom.compat or 'no device'!r}, this device is {self.s.compat!r}"
            )
        if not allow_older and version < self.current:
            raise RollbackError(f"version {version} is below the installed version {self.current}")
        return mom

    def manifest(
        self,
        entry: Entry,
        data: bytes,
        like: tuple[bytes, Manifest] | None = None,
        parsed: Callable[[], Manifest | None] | None = None,
    ) -> Manifest:
        """A bundle manifest, accepted only if it is exactly the one the verified MoM pins.

        Once `data` has passed, `parsed()` may supply the manifest as kept parsed under its hash
        (see format/parsed.py); otherwise `data` is parsed, reusing the entries of `like` (see
        manifest.loads) for the lines the two share."""
        if len(data) != entry.size:
            raise SizeLimitError(f"Manifest.{entry.path} is {len(data)} bytes, the MoM says {entry.size}")
        if hash_bytes(data, 0o100644) != entry.hash:
            raise HashMismatchError(f"Manifest.{entry.path} does not match the hash in the MoM")
        m = parsed() if parsed is not None else None
        if m is None:
            m = mf.loads(data, limits=self.s.limits, like=like)
        if m.version != entry.version or m.format != self.s.format:
            raise FormatError(f"Manifest.{entry.path} has the wrong version or format")
        return m

    def raise_floor(self, version: int, timestamp: int, durable: bool = True) -> None:
        self.state.save_trust(TrustRecord(version, timestamp), durable)
        self.record = self.state.trust()


def _utc(t: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))
