"""The signed `latest` pointer of a format.

Line one is the version (what a swupd client reads); the following `key:<TAB>value` lines carry
the build time, an expiry time and the stream's identity. A device that keeps getting the same
`latest` after its expiry knows it is being frozen on an old version instead of believing it is
up to date; the stream identity keeps a pointer of another stream signed with the same key from
being taken for its own.

Pointers are ordered by `Latest.order`: the version first, the timestamp only between pointers of
the same version. A device refuses a pointer that orders below one it already trusts, and the
server never publishes one that orders below the pointer it replaces, so reproducible builds
(whose timestamp is SOURCE_DATE_EPOCH) and re-signing can never turn the order backwards.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import FormatError
from .limits import LIMITS, Limits
from .paths import NAME


def check_stream(text: str) -> str:
    """A stream identity: 1 to 128 of `A-Z a-z 0-9 . _ + -`, starting with a letter or digit."""
    if not NAME.match(text):
        raise FormatError(f"stream identity {text[:140]!r} is not 1-128 of A-Z a-z 0-9 . _ + -")
    return text


def check_compat(text: str) -> str:
    """A compatibility id (normally the machine name), by the rule of stream identities: it is
    one line of the signed MoM header, and a device compares it as it is."""
    if not NAME.match(text):
        raise FormatError(f"compat id {text[:140]!r} is not 1-128 of A-Z a-z 0-9 . _ + -")
    return text


@dataclass(frozen=True)
class Latest:
    version: int
    format: int
    timestamp: int
    expires: int
    # Empty only in pointers written before streams had an identity.
    stream: str = ""

    @property
    def order(self) -> tuple[int, int]:
        """The key by which pointers of one stream and format are ordered."""
        return (self.version, self.timestamp)

    def dumps(self) -> bytes:
        text = f"{self.version}\nformat:\t{self.format}\ntimestamp:\t{self.timestamp}\nexpires:\t{self.expires}\n"
        if self.stream:
            text += f"stream:\t{check_stream(self.stream)}\n"
        return text.encode()


def describe(order: tuple[int, int]) -> str:
    """A pointer's place in the order, for messages."""
    return f"version {order[0]} (timestamp {order[1]})"


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
    stream: str | None = None
    for line in lines[1:-1]:
        key, tab, value = line.partition(":\t")
        if key == "stream" and tab and stream is None:
            stream = check_stream(value)
            continue
        if not tab or key in fields or key == "stream" or not value.isdigit() or len(value) > 20:
            raise FormatError("latest file malformed")
        fields[key] = int(value)
    if not lines[0].isdigit() or len(lines[0]) > 10:
        raise FormatError("latest file has no version")
    version = int(lines[0])
    if not 0 < version <= limits.max_version:
        raise FormatError("latest version out of range")
    try:
        return Latest(version, fields["format"], fields["timestamp"], fields["expires"], stream or "")
    except KeyError as e:
        raise FormatError(f"latest file lacks {e.args[0]!r}") from None
