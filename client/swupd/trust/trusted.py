"""The trusted set: signature, version, expiry, compatibility and stream checks on raw bytes.

Follows The Update Framework's client workflow: a signature is verified over the exact bytes
downloaded before they are parsed. Pointers are ordered by version, then timestamp (see
format/latest.py); none may order below the newest one the device has verified whole, and no
version may go below what the device runs. A MoM below the installed version is refused unless
a command explicitly reads an older one (verify, repair, os-install of a chosen version).

The floor (trust.json, see state.TrustRecord) rises only when a transaction that installs a
version commits, since by then its MoM and every manifest the device needs from it have passed
every check; or when the pointer names the version the device runs and that version's MoM
verifies. A signed `latest` alone never raises it: a pointer whose MoM is missing or fails its
checks (a broken build, or another stream signed with the same key) must not lock the device
out of the genuine versions after it.

An expired `latest` means the server may be frozen on an old version. Time on a board without a
real-time clock may start in 1970, so the clock used for expiry is never earlier than the
newest signed time the device has verified: a pointer that expired before that is caught even
then, but a replay of the newest pointer the device verified is not, until the board's clock
passes its expiry.

Every MoM and `latest` carries its stream's identity and the MoM its compat id. The device
holds to those of its configuration or, when it names none, to those of the version it last
installed; anything else is another device's content (exit 9). Only the MoM of the version the
device runs may lack the identity, and only while the device has installed no version that had
one: it was installed before streams had one.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from swupd.format import latest as latest_fmt
from swupd.format import manifest as mf
from swupd.format.errors import (
    CompatError,
    ExpiredError,
    FormatError,
    HashMismatchError,
    RollbackError,
    SizeLimitError,
    SwupdError,
)
from swupd.format.filehash import hash_manifest
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
        self.pointer: latest_fmt.Latest | None = None
        self._moms: dict[int, Manifest] = {}

    @property
    def stream(self) -> str:
        """The stream every target must belong to: the configured one, else that of the version
        last installed, else that of this run's pointer ("" before there is any)."""
        return self.s.stream or self.record.stream or (self.pointer.stream if self.pointer else "")

    @property
    def compat(self) -> str:
        return self.s.compat or self.record.compat

    def effective_now(self, floor: int = 0) -> int:
        """The update start time, but never before a signed time already trusted."""
        return int(max(self.started, self.record.latest_timestamp, floor))

    def _check_stream(self, got: str, what: str) -> None:
        if self.stream and got != self.stream:
            raise CompatError(f"{what} belongs to stream {got!r}, this device follows {self.stream!r}")

    def latest(self, data: bytes, sig: bytes, allow_older: bool = False) -> latest_fmt.Latest:
        self.keys.verify(data, sig)
        rec = latest_fmt.loads(data, self.s.limits)
        if rec.format != self.s.format:
            raise FormatError(f"latest is for format {rec.format}, this device uses {self.s.format}")
        if not rec.stream:
            raise FormatError(f"latest of format {rec.format} names no stream; its server predates stream identities")
        self._check_stream(rec.stream, f"the server's latest pointer (version {rec.version})")
        if not allow_older:
            lowest = max(self.record.highest_version, self.current)
            if rec.version < lowest:
                raise RollbackError(f"server offers version {rec.version}, below version {lowest} already trusted")
            floor = (self.record.highest_version, self.record.pointer_timestamp)
            if rec.order < floor:
                raise RollbackError(
                    f"server offers a latest pointer older than one already trusted "
                    f"({latest_fmt.describe(rec.order)} is below {latest_fmt.describe(floor)})"
                )
        now = self.effective_now()
        if rec.expires < now:
            raise ExpiredError(
                f"the server's latest pointer (version {rec.version}) expired at {_utc(rec.expires)}; "
                "the server may be frozen on an old version"
            )
        self.keys.accept()
        self.pointer = rec
        return rec

    def mom(self, version: int, data: bytes, sig: bytes, allow_older: bool = False) -> Manifest:
        if len(data) > self.s.limits.max_mom_bytes:
            raise SizeLimitError("Manifest.MoM too large")
        self.keys.verify(data, sig)
        mom = mf.loads(data, is_mom=True, limits=self.s.limits)
        if mom.version != version:
            raise FormatError(f"Manifest.MoM of version {version} says it is version {mom.version}")
        # The version a device runs may be the last of the format before its own (see
        # docs/format.md, "Moving to a new format").
        if mom.format != self.s.format and not (version == self.current and mom.format < self.s.format):
            raise FormatError(f"version {version} is in format {mom.format}, this device uses {self.s.format}")
        if self.compat and mom.compat != self.compat:
            raise CompatError(f"version {version} is for {mom.compat or 'no device'!r}, this device is {self.compat!r}")
        if mom.stream:
            self._check_stream(mom.stream, f"version {version}")
        elif version != self.current:
            raise FormatError(f"version {version} names no stream; its server predates stream identities")
        elif self.record.stream:
            # The installed version came from a stream: a MoM of that number without one is
            # another stream's, signed with the same key before streams had an identity.
            raise CompatError(
                f"version {version} names no stream, this device installed it from {self.record.stream!r}"
            )
        if not allow_older and version < self.current:
            raise RollbackError(f"version {version} is below the installed version {self.current}")
        self.keys.accept()
        self._moms[version] = mom
        return mom

    @staticmethod
    def pins(entry: Entry, data: bytes) -> bool:
        """Whether `data` is the bundle manifest a verified MoM entry pins."""
        return len(data) == entry.size and hash_manifest(data) == entry.hash

    def manifest(
        self,
        entry: Entry,
        data: bytes,
        like: tuple[bytes, Manifest] | None = None,
        parsed: Callable[[], Manifest | None] | None = None,
    ) -> Manifest:
        """A bundle manifest, accepted only if it is exactly the one the verified MoM pins.

        Once `data` has passed, `parsed()` may supply the manifest as kept parsed under its hash
        (see format/fastparse.py); otherwise `data` is parsed, reusing the entries of `like` (see
        manifest.loads) for the lines the two share."""
        if len(data) != entry.size:
            raise SizeLimitError(f"Manifest.{entry.path} is {len(data)} bytes, the MoM says {entry.size}")
        if not self.pins(entry, data):
            raise HashMismatchError(f"Manifest.{entry.path} does not match the hash in the MoM")
        m = parsed() if parsed is not None else None
        if m is None:
            m = mf.loads(data, limits=self.s.limits, like=like)
        installed = self._moms.get(self.current)
        formats = (self.s.format, installed.format if installed is not None else self.s.format)
        if m.version != entry.version or m.format not in formats:
            raise FormatError(f"Manifest.{entry.path} has the wrong version or format")
        return m

    def commit_info(self, version: int, timestamp: int) -> dict[str, Any]:
        """What a transaction that installs `version` records when it commits (see `commit`):
        the pointer and MoM this run verified for that version, when it did."""
        info: dict[str, Any] = {"version": version, "timestamp": timestamp}
        if self.pointer is not None and self.pointer.version == version:
            info["pointer"] = self.pointer.timestamp
        mom = self._moms.get(version)
        if mom is not None:
            info["stream"], info["compat"] = mom.stream, mom.compat
        return info

    def commit(self, info: dict[str, Any], durable: bool = True) -> None:
        """Raise the floor to a version a transaction has installed (its journal's record)."""
        pointer = int(info.get("pointer", 0))
        record = TrustRecord(
            int(info["version"]),
            max(int(info.get("timestamp", 0)), pointer),
            pointer,
            str(info.get("stream", "")),
            str(info.get("compat", "")),
        )
        self.state.save_trust(record, durable)
        self.record = self.state.trust()

    def confirm(self, rec: latest_fmt.Latest) -> None:
        """Take a pointer to the version the device runs into the floor, once that version's
        MoM has verified in this run: the device's clock and order floor then follow the
        server's re-signed pointers even when there is nothing to install. Only a cache: a
        state directory that cannot be written leaves the floor as it was."""
        mom = self._moms.get(rec.version)
        if mom is None or rec.version != self.current:
            return
        with contextlib.suppress(SwupdError):
            self.commit({"version": rec.version, "timestamp": mom.timestamp, "pointer": rec.timestamp})


def _utc(t: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))
