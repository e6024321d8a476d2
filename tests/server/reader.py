"""An independent reader of published update content, for the build-side tests.

Written from the format as documented (docs/format.md and the module docstrings), using only
Python's tarfile (to read what the device reads with its own parser), zstandard, hmac/hashlib,
bsdiff4.core and PyNaCl. It deliberately imports nothing from `swupd` or `swupd_server`: the
tests check the bytes in `www/` against the documented format, not the code against itself.
Paths are handled as bytes throughout, so names that are not UTF-8 survive exactly.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import re
import stat
import struct
import tarfile
from dataclasses import dataclass, field

import bsdiff4.core
import nacl.exceptions
import nacl.signing
import zstandard

ZERO_HASH = "0" * 64
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
HEADER_ORDER = ["version", "previous", "filecount", "timestamp", "contentsize"]
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_STAGED = re.compile(r"staged/([0-9a-f]{64})\.tar\Z")
_DELTA = re.compile(r"delta/([0-9a-f]{64})/([0-9a-f]{64})\Z")
_DELTA_HEADER = struct.Struct("<8sBQQIIII")
_UNHASHED_XATTRS = {b"security.selinux"}


class FormatViolation(AssertionError):
    """Published bytes that do not follow the documented format."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise FormatViolation(message)


# --- the swupd file hash -------------------------------------------------------------------


def xattr_records(xattrs: dict[bytes, bytes]) -> bytes:
    """Per xattr, names sorted bytewise: u16 LE name length, u32 LE value length, name, value."""
    return b"".join(struct.pack("<HI", len(n), len(xattrs[n])) + n + xattrs[n] for n in sorted(xattrs))


def parse_xattr_records(blob: bytes, what: str) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(blob):
        check(pos + 6 <= len(blob), f"{what}: xattr record truncated")
        nlen, vlen = struct.unpack_from("<HI", blob, pos)
        pos += 6
        check(pos + nlen + vlen <= len(blob), f"{what}: xattr record truncated")
        name = blob[pos : pos + nlen]
        check(bool(name) and (not out or name > max(out)), f"{what}: xattr names empty, repeated or unsorted")
        out[name] = blob[pos + nlen : pos + nlen + vlen]
        pos += nlen + vlen
    return out


def xattr_blob(xattrs: dict[bytes, bytes]) -> bytes:
    """What the hash covers of the xattrs: nothing for none, else their records."""
    return xattr_records(xattrs) if xattrs else b""


def swupd_hash(kind: str, mode: int, uid: int, gid: int, data: bytes, xattrs: dict[bytes, bytes] | None = None) -> str:
    """kind is F, D or L; `mode` is the full st_mode (type bits included) for F and D.

    For L, `data` is the link target; for D it is ignored.
    """
    if kind == "D":
        data, size = b"DIRECTORY", 0
    elif kind == "L":
        mode, size, xattrs = 0, len(data), None
    else:
        size = len(data)
    block = struct.pack("<QQQQQ", mode, uid, gid, 0, size)
    key = hmac.new(block, xattr_blob(xattrs or {}), hashlib.sha256).hexdigest().encode("ascii")
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def manifest_hash(data: bytes) -> str:
    """A manifest file is hashed as a root-owned 0644 regular file."""
    return swupd_hash("F", stat.S_IFREG | 0o644, 0, 0, data)


# --- objects: what a fullfile, a delta or a file system path holds -------------------------


@dataclass
class Obj:
    kind: str  # F, D or L
    mode: int  # permission bits only (stat.S_IMODE), setuid/setgid/sticky included
    uid: int
    gid: int
    data: bytes = b""
    link: bytes = b""
    xattrs: dict[bytes, bytes] = field(default_factory=dict)
    mtime: int = field(default=0, compare=False)

    @property
    def st_mode(self) -> int:
        return {"F": stat.S_IFREG, "D": stat.S_IFDIR, "L": stat.S_IFLNK}[self.kind] | self.mode

    @property
    def size(self) -> int:
        """The size a manifest records: bytes of a file, length of a link target, 0 for a dir."""
        return {"F": len(self.data), "D": 0, "L": len(self.link)}[self.kind]

    def hash(self) -> str:
        if self.kind == "L":
            return swupd_hash("L", 0, self.uid, self.gid, self.link)
        return swupd_hash(self.kind, self.st_mode, self.uid, self.gid, self.data, self.xattrs)

    def describe(self) -> str:
        what = {"F": f"{len(self.data)} bytes", "D": "dir", "L": f"-> {self.link!r}"}[self.kind]
        return f"{self.kind} {self.mode:o} {self.uid}:{self.gid} {what} xattrs={sorted(self.xattrs)}"


def read_xattrs(path: bytes) -> dict[bytes, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out = {}
    for name in names:
        raw = os.fsencode(name)
        if raw not in _UNHASHED_XATTRS:
            out[raw] = os.getxattr(path, name, follow_symlinks=False)
    return out


def read_obj(path: bytes) -> Obj:
    """The object at `path` on this machine (not following a final symlink)."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return Obj("L", 0o777, st.st_uid, st.st_gid, link=os.readlink(path), mtime=int(st.st_mtime))
    xattrs = read_xattrs(path)
    if stat.S_ISDIR(st.st_mode):
        return Obj("D", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, xattrs=xattrs, mtime=int(st.st_mtime))
    check(stat.S_ISREG(st.st_mode), f"{path!r} is neither a file, a directory nor a symlink")
    with open(path, "rb") as f:
        data = f.read()
    return Obj("F", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, data, xattrs=xattrs, mtime=int(st.st_mtime))


def tree(root: str | bytes) -> dict[bytes, Obj]:
    """Every object below `root` (not the root itself) by absolute manifest-style path."""
    broot = os.fsencode(root)
    out: dict[bytes, Obj] = {}
    for dirpath, dirnames, filenames in os.walk(broot):
        for name in dirnames + filenames:
            host = os.path.join(dirpath, name)
            out[b"/" + os.path.relpath(host, broot)] = read_obj(host)
    return out


def install(obj: Obj, root: str | bytes, path: bytes) -> None:
    """Place `obj` at manifest path `path` below `root`, replacing what is there."""
    dest = os.fsencode(root) + path
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    if os.path.lexists(dest):
        existing_dir = os.path.isdir(dest) and not os.path.islink(dest)
        if not (obj.kind == "D" and existing_dir):
            remove(dest)
    if obj.kind == "L":
        os.symlink(obj.link, dest)
        os.lchown(dest, obj.uid, obj.gid)
        return
    if obj.kind == "D":
        if not os.path.isdir(dest):
            os.mkdir(dest)
        for name in os.listxattr(dest, follow_symlinks=False):
            if os.fsencode(name) not in _UNHASHED_XATTRS:
                os.removexattr(dest, name, follow_symlinks=False)
    else:
        with open(dest, "wb") as f:
            f.write(obj.data)
    # chown first: it clears setuid and setgid bits, which chmod then sets.
    os.chown(dest, obj.uid, obj.gid)
    os.chmod(dest, obj.mode)
    for name, value in obj.xattrs.items():
        os.setxattr(dest, name, value, follow_symlinks=False)


def remove(path: bytes) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        for dirpath, dirnames, _ in os.walk(path):
            for d in dirnames:
                os.chmod(os.path.join(dirpath, d), 0o700)
        import shutil

        shutil.rmtree(path)
    else:
        os.unlink(path)


def copy_tree(src: str | bytes, dest: str | bytes) -> None:
    """Copy a tree keeping everything the hash covers (mode, owner, xattrs, link targets)."""
    objs = tree(src)
    os.makedirs(dest, exist_ok=True)
    for path in sorted(objs):
        install(objs[path], dest, path)
    # Directory modes last, in case one is not writable.
    for path in sorted(objs, reverse=True):
        if objs[path].kind == "D":
            os.chmod(os.fsencode(dest) + path, objs[path].mode)


# --- compression, fullfiles, deltas, packs -------------------------------------------------


def unzstd(blob: bytes) -> bytes:
    check(blob.startswith(ZSTD_MAGIC), "not a zstd stream")
    with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(blob), read_across_frames=True) as r:
        return r.read()


def read_fullfile(blob: bytes, digest: str) -> Obj:
    """A fullfile: a zstd-compressed plain-ustar tar. Its object is the member named by the
    hash; before it, `<hash>.xattrs` (0600, root) holds the xattr records when there are any,
    or `<hash>.target` a symlink's target when it passes 100 bytes."""
    raw = unzstd(blob)
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:", encoding="utf-8", errors="surrogateescape") as tar:
        members = tar.getmembers()
        for m in members:
            check(not m.pax_headers, f"fullfile {digest}: member {m.name!r} has a pax header")
            check(m.uname == "" and m.gname == "", f"fullfile {digest} carries user/group names")
            header = raw[m.offset : m.offset + 512]
            check(header[257:265] == b"ustar\x0000", f"fullfile {digest}: a header that is not plain ustar")
        check(1 <= len(members) <= 2, f"fullfile {digest} holds {len(members)} members")
        m = members[-1]
        check(m.name == digest, f"fullfile {digest} holds member {m.name!r}")
        xattrs: dict[bytes, bytes] = {}
        link = m.linkname.encode("utf-8", "surrogateescape")
        if len(members) == 2:
            side = members[0]
            check(side.isreg() and (side.mode, side.uid, side.gid) == (0o600, 0, 0), f"fullfile {digest}: side member")
            data = tar.extractfile(side).read()  # type: ignore[union-attr]
            if side.name == digest + ".xattrs":
                check(not m.issym() and bool(data), f"fullfile {digest}: xattrs for a symlink, or none")
                xattrs = parse_xattr_records(data, f"fullfile {digest}")
            else:
                check(side.name == digest + ".target", f"fullfile {digest} holds member {side.name!r}")
                check(m.issym() and link == b"" and len(data) > 100, f"fullfile {digest}: misplaced target")
                link = data
        common = {"uid": m.uid, "gid": m.gid, "xattrs": xattrs, "mtime": int(m.mtime)}
        if m.isreg():
            f = tar.extractfile(m)
            data = f.read() if f else b""
            check(len(data) == m.size, f"fullfile {digest} is truncated")
            return Obj("F", m.mode, data=data, **common)
        if m.isdir():
            return Obj("D", m.mode, **common)
        if m.issym():
            check(len(link) <= 100 or len(members) == 2, f"fullfile {digest}: long target in a link name")
            return Obj("L", 0o777, link=link, **common)
    raise FormatViolation(f"fullfile {digest} holds a member of forbidden type {m.type!r}")


@dataclass
class Delta:
    codec: int
    old_size: int
    new_size: int
    mode: int
    uid: int
    gid: int
    xattrs: dict[bytes, bytes]
    payload: bytes


def parse_delta(blob: bytes) -> Delta:
    check(len(blob) >= _DELTA_HEADER.size, "delta shorter than its header")
    magic, codec, old_size, new_size, mode, uid, gid, xlen = _DELTA_HEADER.unpack_from(blob)
    check(magic == b"SWDELTA1", "delta without the SWDELTA1 magic")
    check(codec in (1, 2), f"delta of unknown codec {codec}")
    check(stat.S_ISREG(mode), "delta target is not a regular file")
    # What a device holds while applying one is bounded (docs/format.md, "Deltas").
    if codec == 1:
        check(old_size + new_size <= 10 << 20, "zstd-dict delta for files of over 10 MiB together")
    else:
        check(max(old_size, new_size) <= 8 << 20, "bsdiff delta for a file of over 8 MiB")
    end = _DELTA_HEADER.size + xlen
    check(end <= len(blob), "delta xattr records truncated")
    xattrs = parse_xattr_records(blob[_DELTA_HEADER.size : end], "delta")
    return Delta(codec, old_size, new_size, mode, uid, gid, xattrs, blob[end:])


def apply_delta(old: bytes, blob: bytes) -> Obj:
    d = parse_delta(blob)
    check(len(old) == d.old_size, f"delta made against {d.old_size} bytes, applied to {len(old)}")
    if d.codec == 1:
        size = zstandard.get_frame_parameters(d.payload).content_size
        check(size == d.new_size, "zstd-dict frame size differs from the target size")
        dictionary = zstandard.ZstdCompressionDict(old, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        new = zstandard.ZstdDecompressor(dict_data=dictionary, max_window_size=1 << 30).decompress(d.payload)
    else:
        check(len(d.payload) >= 24, "bsdiff payload without its frame lengths")
        lengths = struct.unpack_from("<QQQ", d.payload)
        check(24 + sum(lengths) == len(d.payload), "bsdiff frames do not add up to the payload")
        blocks, pos = [], 24
        for n in lengths:
            frame = d.payload[pos : pos + n]
            check(zstandard.get_frame_parameters(frame).window_size <= 1 << 20, "bsdiff frame window over 1 MiB")
            blocks.append(zstandard.ZstdDecompressor().decompressobj().decompress(frame))
            pos += n
        control, diff, extra = blocks
        check(len(control) % 24 == 0, "bsdiff control block not made of 24-byte records")
        new = bsdiff4.core.patch(old, d.new_size, control, diff, extra)
    check(len(new) == d.new_size, "delta produced the wrong size")
    return Obj("F", stat.S_IMODE(d.mode), d.uid, d.gid, new, xattrs=d.xattrs)


def pack_frames(blob: bytes) -> list[bytes]:
    """A pack's zstd frames, each checked for a window of at most 8 MiB and no larger than
    the frame's content, decompressed."""
    frames, pos = [], 0
    while pos < len(blob):
        params = zstandard.get_frame_parameters(blob[pos : pos + 18])
        obj = zstandard.ZstdDecompressor(max_window_size=1 << 30).decompressobj()
        out = obj.decompress(blob[pos:])
        check(obj.eof, "pack ends inside a zstd frame")
        window = params.window_size
        check(window <= min(8 << 20, max(len(out), 1024)), f"pack frame of {len(out)} bytes, window {window}")
        frames.append(out)
        pos = len(blob) - len(obj.unused_data)
    return frames


def read_pack(path: str) -> dict[str, bytes]:
    """Members of a pack by name: a tar, compressed whole or as zstd frames."""
    with open(path, "rb") as f:
        blob = f.read()
    if blob.startswith(ZSTD_MAGIC):
        blob = b"".join(pack_frames(blob))
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:") as tar:
        for m in tar:
            check(not m.pax_headers, f"pack {path}: member {m.name!r} has a pax header (the spec says ustar)")
            header = blob[m.offset : m.offset + 512]
            check(header[257:265] == b"ustar\x0000", f"pack {path}: a header that is not plain ustar")
            if m.isdir():
                check(m.name in ("delta", "staged"), f"pack {path}: unexpected directory {m.name!r}")
                continue
            check(m.isreg(), f"pack {path}: member {m.name!r} is not a regular file")
            check(bool(_STAGED.match(m.name) or _DELTA.match(m.name)), f"pack {path}: bad member name {m.name!r}")
            check(m.name not in out, f"pack {path}: member {m.name!r} twice")
            f = tar.extractfile(m)
            out[m.name] = f.read() if f else b""
    return out


def staged_hash(name: str) -> str | None:
    m = _STAGED.match(name)
    return m.group(1) if m else None


def delta_hashes(name: str) -> tuple[str, str] | None:
    m = _DELTA.match(name)
    return (m.group(1), m.group(2)) if m else None


# --- manifests, signatures, latest -------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    flags: str
    hash: str
    version: int
    size: int
    path: bytes

    @property
    def type(self) -> str:
        return self.flags[0]

    @property
    def present(self) -> bool:
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


def parse_manifest(data: bytes, is_mom: bool = False) -> Manifest:
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
        check(bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}", header["stream"])), "bad stream identity")
    entries = []
    for line in body.split(b"\n")[:-1] if body else []:
        cols = line.split(b"\t")
        check(len(cols) == 5, f"entry with {len(cols)} columns: {line!r}")
        flags, digest, version, size, path = (cols[0].decode(), cols[1].decode(), cols[2], cols[3], cols[4])
        check(len(flags) == 4 and flags[2:] == "..", f"bad flags {flags!r}")
        check(bool(_HEX64.match(digest)), f"bad hash {digest!r}")
        check(version.isdigit() and size.isdigit(), f"bad version or size in {line!r}")
        e = Entry(flags, digest, int(version), int(size), path)
        if e.present:
            allowed = "M" if is_mom else "FDL"
            check(e.type in allowed and flags[1] in (".e" if is_mom else "."), f"bad flags {flags!r} for {path!r}")
            check(digest != ZERO_HASH, f"present entry {path!r} with the zero hash")
        else:
            check(flags in (".d..", ".g.."), f"bad deleted flags {flags!r}")
            check(digest == ZERO_HASH and e.size == 0, f"deleted entry {path!r} with a hash or size")
        if is_mom:
            check(bool(re.fullmatch(rb"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}", path)), f"bad bundle name {path!r}")
        else:
            check(path.startswith(b"/") and b"\0" not in path, f"bad path {path!r}")
            check(all(p not in (b"", b".", b"..") for p in path[1:].split(b"/")), f"bad path {path!r}")
        if e.type == "D":
            check(e.size == 0, f"directory {path!r} with a size")
        entries.append(e)
    m = Manifest(data, int(first[1]), header, includes, entries)
    check(int(header["filecount"]) == len(entries), "filecount does not match the entries")
    contentsize = sum(e.size for e in entries if e.present and e.type in "FL")
    check(int(header["contentsize"]) == contentsize, "contentsize does not match the entries")
    check(len({e.path for e in entries}) == len(entries), "a path listed twice")
    check(all(0 < e.version <= m.version for e in entries), "entry version out of range")
    keys = [(e.version, e.path) for e in entries]
    check(keys == sorted(keys), "entries not sorted by version, then path")
    return m


def keyid(public: bytes) -> str:
    return hashlib.sha256(public).hexdigest()[:16]


def load_key(path: str) -> bytes:
    """The 32 bytes of a key file: a tag (`ed25519-private` or `ed25519-public`), a space, 64
    hex digits and a newline."""
    with open(path, "rb") as f:
        text = f.read()
    m = re.fullmatch(rb"ed25519-(?:private|public) ([0-9a-f]{64})\n", text)
    check(m is not None, f"key file {path} is not a tag and 64 hex digits")
    return bytes.fromhex(m[1].decode())


def signature_lines(sig: bytes) -> list[tuple[str, bytes]]:
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
    text = data.decode("ascii")
    check(text.endswith("\n"), "latest without a final newline")
    lines = text[:-1].split("\n")
    check(lines[0].isdigit() and int(lines[0]) > 0, f"latest's first line is not a version: {lines[0]!r}")
    fields = {}
    check(len(lines) == 5 and lines[4].startswith("stream:\t"), "latest without a stream identity last")
    stream = lines.pop()[len("stream:\t") :]
    check(bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}", stream)), f"bad stream identity {stream!r}")
    for line in lines[1:]:
        key, tab, value = line.partition(":\t")
        check(bool(tab) and value.isdigit() and key not in fields, f"malformed latest line {line!r}")
        fields[key] = int(value)
    check(set(fields) == {"format", "timestamp", "expires"}, f"latest fields {sorted(fields)}")
    return Latest(int(lines[0]), fields, stream)


# --- a published www/ tree -----------------------------------------------------------------


class Www:
    """Read-only, verifying view of a published tree."""

    def __init__(self, root: str, public: bytes) -> None:
        self.root = root
        self.public = public

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def read(self, *parts: str) -> bytes:
        with open(self.path(*parts), "rb") as f:
            return f.read()

    def latest(self, fmt: int = 1) -> Latest:
        data = self.read("version", f"format{fmt}", "latest")
        verify(data, self.read("version", f"format{fmt}", "latest.sig"), self.public)
        record = parse_latest(data)
        check(record.fields["format"] == fmt, "latest of another format")
        return record

    def mom(self, version: int) -> Manifest:
        data = self.read(str(version), "Manifest.MoM")
        verify(data, self.read(str(version), "Manifest.MoM.sig"), self.public)
        m = parse_manifest(data, is_mom=True)
        check(m.version == version, f"{version}/Manifest.MoM says version {m.version}")
        return m

    def bundle(self, entry: Entry) -> Manifest:
        """The manifest a MoM entry points at, checked against the entry's hash and size."""
        data = self.read(str(entry.version), f"Manifest.{entry.name}")
        check(manifest_hash(data) == entry.hash, f"Manifest.{entry.name} of {entry.version} does not match the MoM")
        check(len(data) == entry.size, f"Manifest.{entry.name} size differs from the MoM")
        m = parse_manifest(data)
        check(m.version == entry.version, f"Manifest.{entry.name} in {entry.version} says {m.version}")
        return m

    def bundles(self, version: int) -> dict[str, Manifest]:
        return {e.name: self.bundle(e) for e in self.mom(version).present()}

    def fullfile(self, version: int, digest: str) -> Obj:
        obj = read_fullfile(self.read(str(version), "files", f"{digest}.tar"), digest)
        check(obj.hash() == digest, f"fullfile {version}/files/{digest}.tar re-hashes to {obj.hash()}")
        return obj

    def pack(self, version: int, bundle: str, from_version: int) -> dict[str, bytes]:
        return read_pack(self.path(str(version), f"pack-{bundle}-from-{from_version}.tar"))


def check_version(www: Www, version: int, fullfiles: bool = True) -> dict[str, Manifest]:
    """Everything a device needs for `version` is present and consistent; returns its bundles.

    With `fullfiles`, each entry's fullfile is decompressed and re-hashed (item 1 of the tests);
    without, only its presence is checked.
    """
    bundles = www.bundles(version)
    for name, m in bundles.items():
        check(m.format == www.mom(version).format, f"Manifest.{name} of another format")
        for e in m.present():
            rel = www.path(str(e.version), "files", f"{e.hash}.tar")
            check(os.path.isfile(rel), f"{name}: {e.path!r} lacks {e.version}/files/{e.hash}.tar")
            if fullfiles:
                obj = www.fullfile(e.version, e.hash)
                check(obj.kind == e.type, f"{name}: {e.path!r} is {e.type} but its fullfile holds {obj.kind}")
                check(obj.size == e.size, f"{name}: {e.path!r} size {e.size} but fullfile holds {obj.size}")
        if www.mom(version).by_path()[name.encode()].version == version:
            check_zero_pack(www, version, name, m)
    check_manifest_deltas(www, version)
    return bundles


def manifest_deltas(www: Www, version: int) -> dict[tuple[str, int], bytes]:
    """(bundle, from version) -> the published manifest delta to that bundle's manifest of `version`."""
    out = {}
    top = www.path(str(version), "manifests")
    for d in sorted(os.listdir(top)) if os.path.isdir(top) else []:
        if os.path.isdir(os.path.join(top, d)):
            check(re.fullmatch(r"from-[1-9][0-9]*", d) is not None, f"{version}/manifests/{d}: not a source directory")
            for f in sorted(os.listdir(os.path.join(top, d))):
                check(f.startswith("Manifest.") and f.endswith(".delta"), f"{version}/manifests/{d}/{f}: unexpected")
                out[(f[len("Manifest.") : -len(".delta")], int(d[5:]))] = www.read(str(version), "manifests", d, f)
    return out


def check_manifest_deltas(www: Www, version: int) -> None:
    """Each manifest delta is a zstd frame that, with the old manifest as a raw-content
    dictionary, gives exactly the new manifest, and is smaller than the compressed manifest."""
    for (name, source), blob in manifest_deltas(www, version).items():
        what = f"{version}/manifests/from-{source}/Manifest.{name}.delta"
        check(source < version, f"{what}: from a later version")
        old, new = www.read(str(source), f"Manifest.{name}"), www.read(str(version), f"Manifest.{name}")
        d = zstandard.ZstdCompressionDict(old, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        check(zstandard.frame_content_size(blob) == len(new), f"{what}: declares another size")
        check(zstandard.ZstdDecompressor(dict_data=d).decompress(blob) == new, f"{what}: gives another manifest")
        whole = os.path.getsize(www.path(str(version), "manifests", f"Manifest.{name}.zst"))
        check(len(blob) < whole, f"{what}: not smaller than the compressed manifest")


def check_waste(members: dict, needed: set, what: str) -> None:
    """Members a pack's update does not need are allowed, but only a small share of its bytes:
    each frame copied from an earlier pack may carry at most 10 % of unneeded members."""
    waste = sum(len(blob) + 1536 for key, blob in members.items() if key not in needed)
    total = sum(len(blob) + 512 for blob in members.values())
    check(waste <= 0.10 * total + 8192, f"{what}: {waste} of {total} bytes are members it does not need")


# A zero pack holds its bundle's objects first published in its version whose fullfiles are
# at most this size (the build's default `zero_pack_max_fullfile`).
ZERO_PACK_MAX_FULLFILE = 8192


def check_zero_pack(www: Www, version: int, name: str, m: Manifest) -> None:
    """The zero pack of a bundle's manifest version holds exactly its small new objects, each
    byte for byte its fullfile; a bundle with none has no zero pack."""
    want = {
        e.hash
        for e in m.present()
        if e.version == version
        and os.path.getsize(www.path(str(version), "files", f"{e.hash}.tar")) <= ZERO_PACK_MAX_FULLFILE
    }
    path = www.path(str(version), f"pack-{name}-from-0.tar")
    if not want:
        check(not os.path.exists(path), f"zero pack of {name} published with nothing to hold")
        return
    check(os.path.isfile(path), f"zero pack of {name} missing")
    staged = {staged_hash(n): blob for n, blob in www.pack(version, name, 0).items()}
    check(None not in staged, f"zero pack of {name} holds a delta")
    check(want <= set(staged), f"zero pack of {name} lacks {len(want - set(staged))} of its small new objects")
    check_waste(staged, want, f"zero pack of {name}")
    for digest, blob in staged.items():
        check(len(blob) <= ZERO_PACK_MAX_FULLFILE, f"zero pack of {name} holds {digest}, a large object")
        check(blob == www.read(str(version), "files", f"{digest}.tar"), f"pack member {digest} differs from files/")


def install_bundle(www: Www, version: int, bundle: str, dest: str) -> dict[bytes, Entry]:
    """Install a bundle as a device that has nothing does: the zero packs of the versions its
    entries come from, and the fullfiles of what they do not hold. Returns the entries
    installed; every small object must come from a pack."""
    entry = www.mom(version).by_path()[bundle.encode()]
    m = www.bundle(entry)
    staged: dict[str, bytes] = {}
    for v in sorted({e.version for e in m.present()}):
        if os.path.isfile(www.path(str(v), f"pack-{bundle}-from-0.tar")):
            staged.update({staged_hash(n): blob for n, blob in www.pack(v, bundle, 0).items()})
    installed: dict[bytes, Entry] = {}
    for e in sorted(m.present(), key=lambda e: e.path):
        fullfile = www.read(str(e.version), "files", f"{e.hash}.tar")
        blob = staged.get(e.hash)
        if blob is None:
            check(len(fullfile) > ZERO_PACK_MAX_FULLFILE, f"{e.path!r}: a small object in no zero pack")
            blob = fullfile
        check(blob == fullfile, f"pack member {e.hash} differs from files/")
        obj = read_fullfile(blob, e.hash)
        check(obj.hash() == e.hash, f"object for {e.path!r} does not hash to {e.hash}")
        install(obj, dest, e.path)
        installed[e.path] = e
    fix_dir_modes(dest, {p: e for p, e in installed.items() if e.type == "D"}, www)
    return installed


def fix_dir_modes(dest: str, dirs: dict[bytes, Entry], www: Www) -> None:
    """Directories were made writable while filled; give them their final mode, deepest first."""
    for path in sorted(dirs, reverse=True):
        e = dirs[path]
        obj = www.fullfile(e.version, e.hash)
        os.chmod(os.fsencode(dest) + path, obj.mode)


def apply_delta_pack(www: Www, bundle: str, old_version: int, new_version: int, base: str, work: str) -> dict:
    """Update `work` (a copy of `base`, the installed old version) for one bundle, as a device
    would: from the delta pack alone, copying content the old bundle already has by hash.

    Returns counts of what was used, by kind.
    """
    old_entry = www.mom(old_version).by_path()[bundle.encode()]
    new_entry = www.mom(new_version).by_path()[bundle.encode()]
    old_m, new_m = www.bundle(old_entry), www.bundle(new_entry)
    pack = www.pack(new_entry.version, bundle, old_entry.version)
    old_by_hash: dict[str, bytes] = {}
    for e in old_m.present():
        old_by_hash.setdefault(e.hash, e.path)
    staged = {staged_hash(n): blob for n, blob in pack.items() if staged_hash(n)}
    deltas = {delta_hashes(n)[1]: (delta_hashes(n)[0], blob) for n, blob in pack.items() if delta_hashes(n)}
    used = {"local": 0, "staged": 0, "delta": 0, "deleted": 0}
    wanted: set[str] = set()
    changed = [e for e in new_m.entries if e.version > old_entry.version]
    for e in sorted((e for e in changed if not e.present), key=lambda e: e.path, reverse=True):
        host = os.fsencode(work) + e.path
        if os.path.lexists(host):
            remove(host)
        used["deleted"] += 1
    dirs = {}
    for e in sorted((e for e in changed if e.present), key=lambda e: e.path):
        if e.hash in old_by_hash:
            check(e.hash not in staged, f"delta pack of {bundle} ships {e.path!r}, which the device already has")
            obj = read_obj(os.fsencode(base) + old_by_hash[e.hash])
            used["local"] += 1
        elif e.hash in staged:
            obj = read_fullfile(staged[e.hash], e.hash)
            used["staged"] += 1
        elif e.hash in deltas:
            from_hash, blob = deltas[e.hash]
            check(from_hash in old_by_hash, f"delta for {e.path!r} is made from content the device lacks")
            old_obj = read_obj(os.fsencode(base) + old_by_hash[from_hash])
            check(old_obj.hash() == from_hash, "delta source on the device does not match its hash")
            obj = apply_delta(old_obj.data, blob)
            used["delta"] += 1
        else:
            raise FormatViolation(f"delta pack of {bundle} from {old_entry.version} lacks {e.path!r}")
        check(obj.hash() == e.hash, f"{e.path!r} rebuilt from the delta pack hashes to {obj.hash()}, not {e.hash}")
        wanted.add(e.hash)
        install(obj, work, e.path)
        if obj.kind == "D":
            dirs[e.path] = obj.mode
    for path in sorted(dirs, reverse=True):
        os.chmod(os.fsencode(work) + path, dirs[path])
    unused = (set(staged) | set(deltas)) - wanted
    check(not unused, f"delta pack of {bundle} holds {len(unused)} members no entry needs")
    return used
