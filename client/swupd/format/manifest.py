"""The manifest model and its text form.

A manifest is a header (format, version, previous, filecount, timestamp, contentsize, the
MoM's compat id and stream identity, includes), a blank line, then one TAB-separated entry per line:
`flags hash version size path`. It extends swupd's four columns with the entry's size, so a
device can cap every download by a signed number. The parser checks column counts, header
fields and the declared entry count, which swupd's readers do not.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
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
# (see parsed.py) are parsed again.
RULES = 2

_PRESENT = (Status.PRESENT, Status.EXPERIMENTAL)
_SIZED = (Type.FILE, Type.SYMLINK)


class Entry(NamedTuple):
    """One line of a manifest: a file, directory, symlink or (in the MoM) a bundle manifest.

    A named tuple: immutable, and built several times faster than a frozen dataclass, which
    matters for manifests of tens of thousands of entries parsed on every update."""

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
    if not value.isdigit() or len(value) > 20:
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


_FLAGS = _flag_table()
_DIGEST = re.compile(r"[0-9a-f]{64}\Z")


def _entry(line: str, lineno: int, is_mom: bool, limits: Limits) -> Entry:
    cols = line.split("\t")
    if len(cols) != 5:
        raise FormatError(f"manifest line {lineno}: {len(cols)} columns, expected 5")
    flags, digest, version, size, path = cols
    kind = _FLAGS.get((flags, is_mom))
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
    # path and hash, which halves what a device holds while it plans.
    return Entry(
        sys.intern(path),
        etype,
        sys.intern(digest),
        _int(version, "entry version", 1, limits.max_version),
        _int(size, "entry size", 0, limits.max_file_bytes),
        status,
    )


# A well-formed entry line, from its start (anything else goes through `_entry`, which says
# what is wrong). One match per line and as many matches as lines means every line matched.
# The path is "/" or components that are neither empty, "." nor "..": no "//", "/./", "/../",
# and no "/" or "/." or "/.." at its end.
_LINE = re.compile(
    r"^([FDL.][.dg]\.\.)\t([0-9a-f]{64})\t([0-9]{1,20})\t([0-9]{1,20})\t"
    r"(/|(?:/(?!\.\.?(?:/|\n))[^/\t\n\r\0]+)+)\n",
    re.M,
)
_BUNDLE_FLAGS = {flags: kind for (flags, is_mom), kind in _FLAGS.items() if not is_mom}
_new_entry = tuple.__new__  # an Entry from a ready tuple, without the named tuple's Python __new__


def _entries(body: str, count: int, first_lineno: int, is_mom: bool, limits: Limits) -> list[Entry]:
    """Every entry of a manifest body, with the checks of `_entry`. Bundle manifests take a
    fast path (one regular expression over the body, then the checks it cannot make), since a
    device parses the old and new ones of every installed bundle on each update."""
    out: list[Entry] = []
    if is_mom or not count:
        return [_entry(line, i, is_mom, limits) for i, line in enumerate(_lines(body), start=first_lineno)]
    append, flags_of, intern, new = out.append, _BUNDLE_FLAGS.get, sys.intern, _new_entry
    max_version, max_size = limits.max_version, limits.max_file_bytes
    # A UTF-8 character takes at most 4 bytes: text this short cannot break a length rule.
    short_path, short_name = limits.max_path_bytes // 4, limits.max_name_bytes // 4
    # Match by match, so no list of every line's text is held beside the entries.
    for m in _LINE.finditer(body):
        flags, digest, version, size, path = m.groups()
        kind = flags_of(flags)
        v, n = int(version), int(size)
        if (
            kind is None
            or not 1 <= v <= max_version
            or n > max_size
            or (kind[0] is Type.NONE and digest != ZERO_HASH)
            or (len(path) > short_name and (len(path) > short_path or max(map(len, path.split("/"))) > short_name))
        ):
            line = "\t".join((flags, digest, version, size, path))
            append(_entry(line, first_lineno + body.count("\n", 0, m.start()), is_mom, limits))
        else:
            append(new(Entry, (intern(path), kind[0], intern(digest), v, n, kind[1])))
    if len(out) != count:  # some line did not match: the per-line parser names it
        return [_entry(line, i, is_mom, limits) for i, line in enumerate(_lines(body), start=first_lineno)]
    return out


def _lines(text: str) -> Iterator[str]:
    start = 0
    while (end := text.find("\n", start)) >= 0:
        yield text[start:end]
        start = end + 1


def _entries_like(
    body: bytes, count: int, first_lineno: int, like: tuple[bytes, Manifest], limits: Limits
) -> list[Entry]:
    """`_entries` for a manifest much like one already parsed: a line identical to one of the
    earlier manifest's stands for the same entry, so only the lines that changed are decoded
    and parsed (between two versions, a bundle's manifest mostly differs in a tenth of its
    lines). Lines are compared as bytes."""
    old_data, old = like
    old_lines = old_data[old_data.find(b"\n\n") + 2 :].split(b"\n")
    old_lines.pop()
    lines = body.split(b"\n")
    lines.pop()
    es = old.entries
    # A cheap guard against a pair that is not (bytes, loads(bytes)).
    if len(old_lines) != len(es) or (es and not old_lines[-1].endswith(es[-1].path.encode("utf-8", "surrogateescape"))):
        return _entries(body.decode("utf-8", "surrogateescape"), count, first_lineno, False, limits)
    got = list(map(dict(zip(old_lines, es, strict=True)).get, lines))
    missing = [i for i, e in enumerate(got) if e is None]
    if missing:
        text = b"\n".join([lines[i] for i in missing]).decode("utf-8", "surrogateescape") + "\n"
        try:
            fresh = _entries(text, len(missing), 0, False, limits)
        except FormatError:  # parsed again whole, so the message names the right line
            return _entries(body.decode("utf-8", "surrogateescape"), count, first_lineno, False, limits)
        for i, e in zip(missing, fresh, strict=True):
            got[i] = e
    return got  # type: ignore[return-value]


def loads(
    data: bytes, *, is_mom: bool = False, limits: Limits = LIMITS, like: tuple[bytes, Manifest] | None = None
) -> Manifest:
    """Parse manifest bytes, refusing anything not exactly in the format.

    `like` is another bundle manifest with the bytes it was parsed from, `(bytes, loads(bytes))`
    (the installed version of the same bundle): lines the two share are not parsed again."""
    cap = limits.max_mom_bytes if is_mom else limits.max_manifest_bytes
    if len(data) > cap:
        raise FormatError(f"manifest larger than {cap} bytes")
    if not data.endswith(b"\n"):
        raise FormatError("manifest does not end with a newline")
    split = data.find(b"\n\n")
    if split < 0:
        raise FormatError("manifest has no blank line after its header")
    body = data[split + 2 :]
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
    held = body.count(b"\n")
    if held != count:
        raise FormatError(f"manifest declares {count} entries but holds {held}")
    if like is not None and not is_mom:
        entries = _entries_like(body, count, len(hlines) + 2, like, limits)
    else:
        entries = _entries(body.decode("utf-8", "surrogateescape"), count, len(hlines) + 2, is_mom, limits)
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
