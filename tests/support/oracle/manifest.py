"""Manifests, signatures and the `latest` pointer, parsed strictly as docs/format.md has them.

Every deviation from the documented text raises FormatViolation, so a test that reads
published content through this module also checks its form. Paths stay bytes, so names that
are not UTF-8 survive exactly.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass

import nacl.exceptions
import nacl.signing

from .filehash import ZERO_HASH, FormatViolation, check

HEADER_ORDER = ["version", "previous", "filecount", "timestamp", "contentsize"]
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_NAME = r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}"


@dataclass(frozen=True)
class Entry:
    flags: str
    hash: str
    version: int
    size: int
    path: bytes

    @property
    def kind(self) -> str:
        """F, D, L, or M (a MoM's bundle); "." for a deleted entry."""
        return self.flags[0]

    @property
    def present(self) -> bool:
        """Neither deleted nor ghosted ("e" marks an experimental bundle, which is present)."""
        return self.flags[1] in ".e"

    @property
    def name(self) -> str:
        """A MoM entry's bundle name."""
        return self.path.decode("ascii")


@dataclass
class Manifest:
    raw: bytes
    format: int
    header: dict[str, str]
    includes: list[str]
    entries: list[Entry]

    @property
    def version(self) -> int:
        return int(self.header["version"])

    @property
    def previous(self) -> int:
        return int(self.header["previous"])

    def by_path(self) -> dict[bytes, Entry]:
        return {e.path: e for e in self.entries}

    def present(self) -> list[Entry]:
        return [e for e in self.entries if e.present]


def _check_entry(e: Entry, is_mom: bool) -> None:
    """What an entry of well-formed columns must satisfy, in a MoM or a bundle manifest."""
    flags, path = e.flags, e.path
    if e.present:
        allowed = "M" if is_mom else "FDL"
        check(e.kind in allowed and flags[1] in (".e" if is_mom else "."), f"bad flags {flags!r} for {path!r}")
        check(e.hash != ZERO_HASH, f"present entry {path!r} with the zero hash")
    else:
        check(flags in (".d..", ".g.."), f"bad deleted flags {flags!r}")
        check(e.hash == ZERO_HASH and e.size == 0, f"deleted entry {path!r} with a hash or size")
    if is_mom:
        check(bool(re.fullmatch(_NAME.encode(), path)), f"bad bundle name {path!r}")
    else:
        check(path.startswith(b"/") and b"\0" not in path, f"bad path {path!r}")
        check(all(p not in (b"", b".", b"..") for p in path[1:].split(b"/")), f"bad path {path!r}")
    if e.kind == "D":
        check(e.size == 0, f"directory {path!r} with a size")


def parse_manifest(data: bytes, is_mom: bool = False) -> Manifest:
    """A manifest's text: header, blank line, entries; checked field by field and as a whole
    (counts, sizes, order)."""
    check(data.endswith(b"\n"), "manifest does not end with a newline")
    head, sep, body = data.partition(b"\n\n")
    check(bool(sep), "manifest without the blank line after its header")
    lines = head.split(b"\n")
    first = lines[0].split(b"\t")
    check(len(first) == 2 and first[0] == b"MANIFEST" and first[1].isdigit(), f"bad first line {lines[0]!r}")
    header: dict[str, str] = {}
    includes: list[str] = []
    order: list[str] = []
    for line in lines[1:]:
        key, tab, value = line.decode("utf-8").partition(":\t")
        check(bool(tab), f"malformed header line {line!r}")
        if key == "includes":
            includes.append(value)
        else:
            check(key not in header, f"header repeats {key}")
            header[key] = value
            order.append(key)
    check(order[:5] == HEADER_ORDER and order[5:] in ([], ["compat"], ["stream"], ["compat", "stream"]),
          f"header fields out of order: {order}")  # fmt: skip
    check(not (is_mom and includes), "a MoM with includes")
    check(not (not is_mom and "compat" in header), "a bundle manifest with a compat id")
    check(is_mom == ("stream" in header), "a MoM without a stream identity, or a bundle manifest with one")
    if is_mom:
        check(bool(re.fullmatch(_NAME, header["stream"])), "bad stream identity")
    entries = []
    for line in body.split(b"\n")[:-1] if body else []:
        cols = line.split(b"\t")
        check(len(cols) == 5, f"entry with {len(cols)} columns: {line!r}")
        flags, digest, version, size, path = (cols[0].decode(), cols[1].decode(), cols[2], cols[3], cols[4])
        check(len(flags) == 4 and flags[2:] == "..", f"bad flags {flags!r}")
        check(bool(_HEX64.match(digest)), f"bad hash {digest!r}")
        check(version.isdigit() and size.isdigit(), f"bad version or size in {line!r}")
        e = Entry(flags, digest, int(version), int(size), path)
        _check_entry(e, is_mom)
        entries.append(e)
    m = Manifest(data, int(first[1]), header, includes, entries)
    check(int(header["filecount"]) == len(entries), "filecount does not match the entries")
    contentsize = sum(e.size for e in entries if e.present and e.kind in "FL")
    check(int(header["contentsize"]) == contentsize, "contentsize does not match the entries")
    check(len({e.path for e in entries}) == len(entries), "a path listed twice")
    check(all(0 < e.version <= m.version for e in entries), "entry version out of range")
    keys = [(e.version, e.path) for e in entries]
    check(keys == sorted(keys), "entries not sorted by version, then path")
    return m


def load_manifest(path: str) -> Manifest:
    """The manifest in file `path`; a file named Manifest.MoM is parsed as a MoM."""
    with open(path, "rb") as f:
        return parse_manifest(f.read(), is_mom=os.path.basename(path) == "Manifest.MoM")


def keyid(public: bytes) -> str:
    return hashlib.sha256(public).hexdigest()[:16]


def load_key(path: str) -> bytes:
    """The 32 bytes of a key file: a tag (`ed25519-private` or `ed25519-public`), a space, 64
    hex digits and a newline."""
    with open(path, "rb") as f:
        text = f.read()
    m = re.fullmatch(rb"ed25519-(?:private|public) ([0-9a-f]{64})\n", text)
    check(m is not None, f"key file {path} is not a tag and 64 hex digits")
    return bytes.fromhex(m[1].decode())  # type: ignore[index]


def signature_lines(sig: bytes) -> list[tuple[str, bytes]]:
    """A `.sig` file's lines: (key id, raw signature) each."""
    text = sig.decode("ascii")
    check(text.endswith("\n"), "signature file without a final newline")
    out = []
    for line in text[:-1].split("\n"):
        parts = line.split(" ")
        check(len(parts) == 3 and parts[0] == "ed25519", f"malformed signature line {line!r}")
        check(bool(re.fullmatch(r"[0-9a-f]{16}", parts[1])), f"bad key id {parts[1]!r}")
        check(bool(re.fullmatch(r"[0-9a-f]{128}", parts[2])), "signature is not 128 hex digits")
        out.append((parts[1], bytes.fromhex(parts[2])))
    check(bool(out), "empty signature file")
    return out


def verify(data: bytes, sig: bytes, public: bytes) -> None:
    """Passes if a line of `sig` made by `public` verifies over `data`."""
    for kid, raw in signature_lines(sig):
        if kid != keyid(public):
            continue
        try:
            nacl.signing.VerifyKey(public).verify(data, raw)
            return
        except nacl.exceptions.BadSignatureError:
            continue
    raise FormatViolation("no signature by the key verifies")


@dataclass
class Latest:
    version: int
    fields: dict[str, int]
    stream: str


def parse_latest(data: bytes) -> Latest:
    """`version/format<N>/latest`: the version, then format, timestamp, expires, stream."""
    text = data.decode("ascii")
    check(text.endswith("\n"), "latest without a final newline")
    lines = text[:-1].split("\n")
    check(lines[0].isdigit() and int(lines[0]) > 0, f"latest's first line is not a version: {lines[0]!r}")
    fields = {}
    check(len(lines) == 5 and lines[4].startswith("stream:\t"), "latest without a stream identity last")
    stream = lines.pop()[len("stream:\t") :]
    check(bool(re.fullmatch(_NAME, stream)), f"bad stream identity {stream!r}")
    for line in lines[1:]:
        key, tab, value = line.partition(":\t")
        check(bool(tab) and value.isdigit() and key not in fields, f"malformed latest line {line!r}")
        fields[key] = int(value)
    check(set(fields) == {"format", "timestamp", "expires"}, f"latest fields {sorted(fields)}")
    return Latest(int(lines[0]), fields, stream)
