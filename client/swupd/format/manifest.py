"""The manifest model and its text form.

A manifest is a header (format, version, previous, filecount, timestamp, contentsize, the
MoM's compat id and stream identity, includes), a blank line, then one TAB-separated entry per line:
`flags hash version size path`. It extends swupd's four columns with the entry's size, so a
device can cap every download by a signed number. The parser checks column counts, header
fields and the declared entry count, which swupd's readers do not.

The entry parser here (`parse_entry`, line by line) is the reference: the fast paths a device
parses with (fastparse.py) are held to giving exactly its entries and refusing exactly what it
refuses.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from enum import Enum
from operator import itemgetter
from typing import NamedTuple

from .errors import FormatError
from .filehash import ZERO_HASH
from .latest import check_compat, check_stream
from .limits import LIMITS, Limits
from .paths import check_bundle_name, check_path


class Type(Enum):
    """First flag character: what kind of object the entry is."""

    FILE = "F"
    DIRECTORY = "D"
    SYMLINK = "L"
    MANIFEST = "M"
    NONE = "."


class Status(Enum):
    """Second flag character: whether the object exists in this version."""

    PRESENT = "."
    DELETED = "d"
    GHOSTED = "g"
    EXPERIMENTAL = "e"


# Raised whenever what the parser accepts changes, so manifests kept parsed under the old rules
# (see fastparse.py) are parsed again.
RULES = 2

_PRESENT = (Status.PRESENT, Status.EXPERIMENTAL)
_SIZED = (Type.FILE, Type.SYMLINK)


class Entry(NamedTuple):
    """One line of a manifest: a file, directory, symlink or (in the MoM) a bundle manifest.

    A named tuple: immutable, and much cheaper to build than a frozen dataclass, which matters
    for the large manifests a device parses on every update (docs/benchmarks.md)."""

    path: str
    type: Type
    hash: str
    version: int
    size: int = 0
    status: Status = Status.PRESENT

    @property
    def present(self) -> bool:
        """Deleted and ghosted entries describe something that no longer exists."""
        return self.status in _PRESENT

    @property
    def flags(self) -> str:
        return self.type.value + self.status.value + ".."

    def line(self) -> str:
        return f"{self.flags}\t{self.hash}\t{self.version}\t{self.size}\t{self.path}"

    def deleted(self, version: int) -> Entry:
        """The entry that records this path's deletion in `version`."""
        return Entry(self.path, Type.NONE, ZERO_HASH, version, 0, Status.DELETED)


@dataclass
class Manifest:
    """A bundle manifest or the Manifest.MoM (whose entries are `Type.MANIFEST`)."""

    format: int
    version: int
    previous: int = 0
    timestamp: int = 0
    entries: list[Entry] = field(default_factory=list)
    includes: list[str] = field(default_factory=list)
    compat: str = ""
    # The stream this version belongs to (MoM only); empty in MoMs written before streams had one.
    stream: str = ""

    @property
    def contentsize(self) -> int:
        return sum([e.size for e in self.entries if e.status in _PRESENT and e.type in _SIZED])

    def sorted_entries(self) -> list[Entry]:
        """swupd's order: by last-changed version, then bytewise by path (as the manifest's
        UTF-8 text holds it, whatever the machine's locale)."""
        return sorted(self.entries, key=lambda e: (e.version, e.path.encode("utf-8", "surrogateescape")))

    def by_path(self) -> dict[str, Entry]:
        return {e.path: e for e in self.entries}

    def with_entries(self, entries: list[Entry]) -> Manifest:
        return replace(self, entries=list(entries))


def dumps(m: Manifest) -> bytes:
    """The canonical bytes of a manifest (its hash is taken over exactly these)."""
    entries = m.sorted_entries()
    lines = [
        f"MANIFEST\t{m.format}",
        f"version:\t{m.version}",
        f"previous:\t{m.previous}",
        f"filecount:\t{len(entries)}",
        f"timestamp:\t{m.timestamp}",
        f"contentsize:\t{m.contentsize}",
    ]
    if m.compat:
        lines.append(f"compat:\t{check_compat(m.compat)}")
    if m.stream:
        lines.append(f"stream:\t{check_stream(m.stream)}")
    lines += [f"includes:\t{b}" for b in m.includes]
    lines.append("")
    lines += [e.line() for e in entries]
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")


def _int(value: str, what: str, lo: int, hi: int) -> int:
    if not (value.isascii() and value.isdigit()) or len(value) > 20:
        raise FormatError(f"manifest {what} is not a number: {value!r}")
    n = int(value)
    if not lo <= n <= hi:
        raise FormatError(f"manifest {what} out of range: {n}")
    return n


def _flag_table() -> dict[tuple[str, bool], tuple[Type, Status]]:
    """Every valid flags string, per kind of manifest, with what it means."""
    table = {}
    for t in Type:
        for st in Status:
            present = st in (Status.PRESENT, Status.EXPERIMENTAL)
            if present == (t == Type.NONE) or (st == Status.EXPERIMENTAL and t != Type.MANIFEST):
                continue
            for is_mom in (False, True):
                if t == Type.NONE or (t == Type.MANIFEST) == is_mom:
                    table[(t.value + st.value + "..", is_mom)] = (t, st)
    return table


# (flags, is_mom) -> (type, status), for every flags string valid in that kind of manifest.
FLAGS = _flag_table()
_DIGEST = re.compile(r"[0-9a-f]{64}\Z")


def parse_entry(line: str, lineno: int, is_mom: bool, limits: Limits) -> Entry:
    """One entry line, checked column by column: the reference for what a line may hold and
    for what the error names."""
    cols = line.split("\t")
    if len(cols) != 5:
        raise FormatError(f"manifest line {lineno}: {len(cols)} columns, expected 5")
    flags, digest, version, size, path = cols
    kind = FLAGS.get((flags, is_mom))
    if kind is None:
        raise FormatError(f"manifest line {lineno}: flags {flags!r} not valid here")
    etype, status = kind
    if not _DIGEST.match(digest):
        raise FormatError(f"manifest line {lineno}: bad hash")
    if etype == Type.NONE and digest != ZERO_HASH:
        raise FormatError(f"manifest line {lineno}: deleted entry with a hash")
    if is_mom:
        check_bundle_name(path)
    else:
        check_path(path, limits)
    # Interned: the old and new manifests of an update then share one string per unchanged
    # path and hash, so a device holds each once while it plans.
    return Entry(
        sys.intern(path),
        etype,
        sys.intern(digest),
        _int(version, "entry version", 1, limits.max_version),
        _int(size, "entry size", 0, limits.max_file_bytes),
        status,
    )


def lines(text: str) -> Iterator[str]:
    """The lines of `text`, each without its newline (text after the last newline is left out)."""
    start = 0
    while (end := text.find("\n", start)) >= 0:
        yield text[start:end]
        start = end + 1


# How a manifest's body (its entry lines, `count` of them, the first being line `first_lineno`
# of the file) becomes entries: `reference_entries`, or a fast path that gives exactly the same
# entries and refuses exactly the same bodies (fastparse.py).
Body = Callable[[bytes, int, int, bool, Limits], list[Entry]]


def reference_entries(body: bytes, count: int, first_lineno: int, is_mom: bool, limits: Limits) -> list[Entry]:
    """Every entry of a manifest body, parsed line by line with `parse_entry`."""
    text = body.decode("utf-8", "surrogateescape")
    return [parse_entry(line, i, is_mom, limits) for i, line in enumerate(lines(text), start=first_lineno)]


def loads(
    data: bytes, *, is_mom: bool = False, limits: Limits = LIMITS, like: tuple[bytes, Manifest] | None = None
) -> Manifest:
    """Parse manifest bytes, refusing anything not exactly in the format.

    `like` is another bundle manifest with the bytes it was parsed from under the same limits,
    `(bytes, loads(bytes))` (the installed version of the same bundle): lines the two share are
    not parsed again. The body takes the fast paths of fastparse.py, which build on this
    module's model and so are imported when first used."""
    from . import fastparse

    return parse(data, fastparse.body(like), is_mom=is_mom, limits=limits)


def reference_loads(data: bytes, *, is_mom: bool = False, limits: Limits = LIMITS) -> Manifest:
    """`loads` with every entry line parsed by the reference parser: what the fast paths are
    held to."""
    return parse(data, reference_entries, is_mom=is_mom, limits=limits)


def parse(data: bytes, body: Body, *, is_mom: bool = False, limits: Limits = LIMITS) -> Manifest:
    """Parse manifest bytes with `body` turning the entry lines into entries; the header, the
    entry count and everything that spans entries are checked here, whichever `body` runs."""
    cap = limits.max_mom_bytes if is_mom else limits.max_manifest_bytes
    if len(data) > cap:
        raise FormatError(f"manifest larger than {cap} bytes")
    if not data.endswith(b"\n"):
        raise FormatError("manifest does not end with a newline")
    split = data.find(b"\n\n")
    if split < 0:
        raise FormatError("manifest has no blank line after its header")
    hlines = data[:split].decode("utf-8", "surrogateescape").split("\n")
    if len(hlines) > limits.max_header_lines:
        raise FormatError("manifest header too long")
    first = hlines[0].split("\t")
    if len(first) != 2 or first[0] != "MANIFEST":
        raise FormatError("not a manifest (no MANIFEST line)")
    fmt = _int(first[1], "format", 1, limits.max_version)
    fields: dict[str, str] = {}
    includes: list[str] = []
    for lineno, line in enumerate(hlines[1:], start=2):
        key, tab, value = line.partition(":\t")
        if not tab or not key:
            raise FormatError(f"manifest header line {lineno} malformed")
        if key == "includes":
            includes.append(check_bundle_name(value))
        elif key in fields:
            raise FormatError(f"manifest header repeats {key!r}")
        else:
            fields[key] = value
    for key in ("version", "previous", "filecount", "timestamp", "contentsize"):
        if key not in fields:
            raise FormatError(f"manifest header lacks {key!r}")
    count = _int(fields["filecount"], "filecount", 0, limits.max_entries)
    text = data[split + 2 :]
    held = text.count(b"\n")
    if held != count:
        raise FormatError(f"manifest declares {count} entries but holds {held}")
    entries = body(text, count, len(hlines) + 2, is_mom, limits)
    if len(set(map(itemgetter(0), entries))) != len(entries):
        raise FormatError("manifest lists a path twice")
    m = Manifest(
        format=fmt,
        version=_int(fields["version"], "version", 1, limits.max_version),
        previous=_int(fields["previous"], "previous", 0, limits.max_version),
        timestamp=_int(fields["timestamp"], "timestamp", 0, 2**63 - 1),
        entries=entries,
        includes=includes,
        compat=fields.get("compat", ""),
        stream=check_stream(fields["stream"]) if "stream" in fields else "",
    )
    if max(map(itemgetter(3), entries), default=0) > m.version:
        raise FormatError("manifest entry newer than the manifest")
    if _int(fields["contentsize"], "contentsize", 0, 2**63 - 1) != m.contentsize:
        raise FormatError("manifest contentsize does not match its entries")
    return m
