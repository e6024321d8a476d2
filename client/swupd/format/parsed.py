"""Manifests kept parsed: the form in which caches on both sides hold them.

Parsing the text of a large bundle's manifest takes tens of milliseconds; loading it from this
form takes a few. A kept manifest is bound to a stamp (a hash of the bytes it was parsed from,
which the caller has checked, and whatever else the parse depended on, such as limits) and to
the parser's rules, and carries a SHA-256 of itself, so a damaged, foreign or stale blob loads
as None and the caller parses the text instead. It is checked for damage, not for tampering:
it lives where only its owner writes. Entries keep the order of the file.
"""

from __future__ import annotations

import hashlib
import marshal
import sys
from operator import itemgetter

from .manifest import RULES, Entry, Manifest, Status, Type

# Blobs are tied to this layout, the parser's rules and this interpreter's marshal.
_REVISION = (1, RULES, marshal.version, sys.version_info[:2])
_TYPES = {t.value: t for t in Type}
_STATUSES = {s.value: s for s in Status}
_TYPE_CODES = {t: t.value for t in Type}
_STATUS_CODES = {s: s.value for s in Status}
_new_entry = tuple.__new__  # an Entry from a ready tuple, without the named tuple's Python __new__


def dumps(m: Manifest, stamp: bytes) -> bytes:
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
    body = marshal.dumps((_REVISION, stamp, head, columns))
    return hashlib.sha256(body).digest() + body


def loads(blob: bytes, stamp: bytes) -> Manifest | None:
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
        entries = [
            new(Entry, (p, t[ty], h, v, n, s[st]))
            for p, ty, h, v, n, st in zip(paths, types, hashes, versions, sizes, statuses, strict=True)
        ]
        return Manifest(fmt, version, previous, timestamp, entries, list(includes), compat, stream)
    except (EOFError, ValueError, TypeError, KeyError):
        return None
