"""The signed `latest` pointer of a format.

Line one is the version (what a swupd client reads); the following `key:<TAB>value` lines carry
the build time and an expiry time. A device that keeps getting the same `latest` after its
expiry knows it is being frozen on an old version instead of believing it is up to date.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import FormatError
from .limits import LIMITS, Limits


@dataclass(frozen=True)
class Latest:
    version: int
    format: int
    timestamp: int
    expires: int

    def dumps(self) -> bytes:
        return (
            f"{self.version}\nformat:\t{self.format}\ntimestamp:\t{self.timestamp}\nexpires:\t{self.expires}\n"
        ).encode()


def loads(data: bytes, limits: Limits = LIMITS) -> Latest:
    if len(data) > limits.max_latest_bytes:
        raise FormatError("latest file too large")
    try:
        lines = data.decode("ascii").split("\n")
    except UnicodeDecodeError:
        raise FormatError("latest file is not ASCII") from None
    if lines[-1] != "" or len(lines) < 2:
        raise FormatError("latest file malformed")
    fields: dict[str, int] = {}
    for line in lines[1:-1]:
        key, tab, value = line.partition(":\t")
        if not tab or key in fields or not value.isdigit() or len(value) > 20:
            raise FormatError("latest file malformed")
        fields[key] = int(value)
    if not lines[0].isdigit() or len(lines[0]) > 10:
        raise FormatError("latest file has no version")
    version = int(lines[0])
    if not 0 < version <= limits.max_version:
        raise FormatError("latest version out of range")
    try:
        return Latest(version, fields["format"], fields["timestamp"], fields["expires"])
    except KeyError as e:
        raise FormatError(f"latest file lacks {e.args[0]!r}") from None
