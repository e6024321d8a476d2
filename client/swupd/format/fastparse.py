"""The manifest parser's fast paths, kept apart from the reference parser they are held to.

A device parses the installed and the new manifest of every bundle it has on each update, and
the build reads back every earlier manifest it builds from, so three things stand in for
parsing line by line with `manifest.parse_entry`:

- `entries`: one regular expression over a bundle manifest's body checks the shape of every
  line (and the components of every path) at once, and entries are built from ready tuples;
- `entries_like`: parsing against the previous version of the same manifest, where a line
  identical to one of its lines stands for the entry already parsed from it;
- `kept_dumps` and `kept_loads`: manifests kept parsed, as marshal columns, which load without
  parsing at all.

Each gives exactly the manifest `manifest.reference_loads` gives for the same bytes. None of them
judges a bad line itself: whatever a fast path cannot vouch for is handed to the reference, so a
manifest is refused, with the same message, whichever path parsed it. How much each saves is
in docs/benchmarks.md ("What made the client fast").
"""

from __future__ import annotations

import hashlib
import marshal
import re
import sys
from functools import partial
from operator import itemgetter

from .errors import FormatError
from .filehash import ZERO_HASH
from .limits import Limits
from .manifest import FLAGS, RULES, Body, Entry, Manifest, Status, Type, parse_entry, reference_entries

_new_entry = tuple.__new__  # an Entry from a ready tuple, without the named tuple's Python __new__

# A well-formed entry line, from its start. One match per line and as many matches as lines
# means every line matched. The path is "/" or components that are neither empty, "." nor "..":
# no "//", "/./", "/../", and no "/" or "/." or "/.." at its end.
_LINE = re.compile(
    r"^([FDL.][.dg]\.\.)\t([0-9a-f]{64})\t([0-9]{1,20})\t([0-9]{1,20})\t"
    r"(/|(?:/(?!\.\.?(?:/|\n))[^/\t\n\r\0]+)+)\n",
    re.M,
)
_BUNDLE_FLAGS = {flags: kind for (flags, is_mom), kind in FLAGS.items() if not is_mom}


def body(like: tuple[bytes, Manifest] | None) -> Body:
    """The fastest way to parse a manifest body: against `like` (see `entries_like`) if given."""
    return entries if like is None else partial(entries_like, like)


def entries(data: bytes, count: int, first_lineno: int, is_mom: bool, limits: Limits) -> list[Entry]:
    """`manifest.reference_entries` for a bundle manifest, by one regular expression over the
    body and the checks it cannot make; a MoM, small and parsed once per update, goes to the
    reference."""
    if is_mom or not count:
        return reference_entries(data, count, first_lineno, is_mom, limits)
    text = data.decode("utf-8", "surrogateescape")
    out: list[Entry] = []
    append, flags_of, intern, new = out.append, _BUNDLE_FLAGS.get, sys.intern, _new_entry
    max_version, max_size = limits.max_version, limits.max_file_bytes
    # A UTF-8 character takes at most 4 bytes: text this short cannot break a length rule.
    short_path, short_name = limits.max_path_bytes // 4, limits.max_name_bytes // 4
    # Match by match, so no list of every line's text is held beside the entries.
    for m in _LINE.finditer(text):
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
            try:
                append(parse_entry("\t".join((flags, digest, version, size, path)), 0, False, limits))
            except FormatError:  # the reference names the first bad line, which may be an earlier one
                return reference_entries(data, count, first_lineno, False, limits)
        else:
            append(new(Entry, (intern(path), kind[0], intern(digest), v, n, kind[1])))
    if len(out) != count:  # some line did not match: the reference names it
        return reference_entries(data, count, first_lineno, False, limits)
    return out


def entries_like(
    like: tuple[bytes, Manifest], data: bytes, count: int, first_lineno: int, is_mom: bool, limits: Limits
) -> list[Entry]:
    """`entries` for a manifest much like one already parsed, `like` = `(bytes, loads(bytes))`
    under the same limits: a line identical to one of the earlier manifest's stands for the same
    entry, so only the lines that changed are decoded and parsed (between two versions, most of
    a bundle's manifest stays as it was). Lines are compared as bytes."""
    if is_mom:
        return entries(data, count, first_lineno, is_mom, limits)
    old_data, old = like
    old_lines = old_data[old_data.find(b"\n\n") + 2 :].split(b"\n")
    old_lines.pop()
    lines = data.split(b"\n")
    lines.pop()
    es = old.entries
    # A cheap guard against a pair that is not (bytes, loads(bytes)).
    if len(old_lines) != len(es) or (es and not old_lines[-1].endswith(es[-1].path.encode("utf-8", "surrogateescape"))):
        return entries(data, count, first_lineno, False, limits)
    got = list(map(dict(zip(old_lines, es, strict=True)).get, lines))
    missing = [i for i, e in enumerate(got) if e is None]
    if missing:
        changed = b"\n".join([lines[i] for i in missing]) + b"\n"
        try:
            fresh = entries(changed, len(missing), 0, False, limits)
        except FormatError:  # the reference names the right line of the whole text
            return reference_entries(data, count, first_lineno, False, limits)
        for i, e in zip(missing, fresh, strict=True):
            got[i] = e
    return got  # type: ignore[return-value]


# Manifests kept parsed: the form in which caches on both sides hold them. A kept manifest is
# bound to a stamp (a hash of the bytes it was parsed from, which the caller has checked, and
# whatever else the parse depended on, such as limits) and to the parser's rules, and carries a
# SHA-256 of itself, so a damaged, foreign or stale blob loads as None and the caller parses the
# text instead. It is checked for damage, not for tampering: it lives where only its owner
# writes. Entries keep the order of the file.

# Blobs are tied to this layout, the parser's rules and this interpreter's marshal.
_REVISION = (1, RULES, marshal.version, sys.version_info[:2])
_TYPES = {t.value: t for t in Type}
_STATUSES = {s.value: s for s in Status}
_TYPE_CODES = {t: t.value for t in Type}
_STATUS_CODES = {s: s.value for s in Status}


def kept_dumps(m: Manifest, stamp: bytes) -> bytes:
    """`m` as a blob bound to `stamp`."""
    es = m.entries
    # Column lists, not a tuple per entry: loading then creates six containers, not thousands
    # for the garbage collector to walk. Paths and hashes are written interned, and marshal
    # interns them again on loading, so two versions' manifests share them.
    columns = (
        list(map(sys.intern, map(itemgetter(0), es))),
        list(map(_TYPE_CODES.__getitem__, map(itemgetter(1), es))),
        list(map(sys.intern, map(itemgetter(2), es))),
        list(map(itemgetter(3), es)),
        list(map(itemgetter(4), es)),
        list(map(_STATUS_CODES.__getitem__, map(itemgetter(5), es))),
    )
    head = (m.format, m.version, m.previous, m.timestamp, m.compat, m.stream, m.includes)
    blob = marshal.dumps((_REVISION, stamp, head, columns))
    return hashlib.sha256(blob).digest() + blob


def kept_loads(blob: bytes, stamp: bytes) -> Manifest | None:
    """The manifest a blob holds, or None unless it is whole, of this revision and bound to
    `stamp`."""
    # Its own checksum first: a damaged blob must not load as other entries.
    if len(blob) < 32 or hashlib.sha256(memoryview(blob)[32:]).digest() != blob[:32]:
        return None
    try:
        revision, got, head, columns = marshal.loads(memoryview(blob)[32:])
        if revision != _REVISION or got != stamp:
            return None
        fmt, version, previous, timestamp, compat, stream, includes = head
        paths, types, hashes, versions, sizes, statuses = columns
        t, s, new = _TYPES, _STATUSES, _new_entry
        es = [
            new(Entry, (p, t[ty], h, v, n, s[st]))
            for p, ty, h, v, n, st in zip(paths, types, hashes, versions, sizes, statuses, strict=True)
        ]
        return Manifest(fmt, version, previous, timestamp, es, list(includes), compat, stream)
    except (EOFError, ValueError, TypeError, KeyError):
        return None
