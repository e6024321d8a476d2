"""Where the client's settings come from.

Each setting is a small file in `ROOT/usr/share/defaults/swupd/` (shipped with the OS image),
overridden by the same name in `ROOT/etc/swupd/` (the administrator's), overridden by the
command line: `versionurl`, `contenturl`, `format`, `compat` (the compatibility id every MoM
must carry), `stream` (the stream identity every MoM and `latest` must carry) and `keys/*.pub`
(trusted public keys). When `compat` or `stream` is not configured, the device holds to those
of the version it was installed from (see trust/trusted.py). `swupd mirror` writes
`etc/swupd/mirror_versionurl` and `mirror_contenturl`, which take precedence over both URLs.
For `os-install` into an empty directory, the running system's own files are used.
Each file is read only once it, and every directory above it, has passed ownership.resolve:
whoever could change them would choose what the device trusts.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field

from swupd.format.errors import FormatError, UsageError
from swupd.format.latest import check_stream
from swupd.format.limits import LIMITS, Limits
from swupd.format.signing import PublicKey, load_public

from . import ownership

DEFAULTS_DIR = "usr/share/defaults/swupd"
ETC_DIR = "etc/swupd"


@dataclass
class Settings:
    root: str = "/"
    statedir: str = ""
    versionurl: str = ""
    contenturl: str = ""
    format: int = 0
    compat: str = ""
    stream: str = ""
    keys: list[PublicKey] = field(default_factory=list)
    limits: Limits = LIMITS

    def require_server(self) -> None:
        if not self.versionurl or not self.contenturl:
            raise UsageError("no update URL configured: pass --url or set versionurl/contenturl")
        if not self.keys:
            raise UsageError("no trusted public key configured: pass --key or install keys/*.pub")
        if self.format <= 0:
            raise UsageError("no format configured: pass --format or set the format file")


def _read(root: str, name: str) -> str:
    for d in (ETC_DIR, DEFAULTS_DIR):
        p = ownership.resolve(os.path.join(root, d, name), "setting")
        try:
            with open(p, encoding="utf-8") as f:
                return f.read().strip()
        except FileNotFoundError:
            continue
        except OSError as e:
            raise UsageError(f"cannot read {p}: {e.strerror}") from None
    return ""


def _keys(root: str) -> list[PublicKey]:
    for d in (ETC_DIR, DEFAULTS_DIR):
        keys = ownership.resolve(os.path.join(root, d, "keys"), "key directory")
        paths = sorted(glob.glob(os.path.join(glob.escape(keys), "*.pub")))
        if paths:
            return [load_public(ownership.resolve(p, "trusted key")) for p in paths]
    return []


def load(
    root: str,
    statedir: str | None = None,
    url: str | None = None,
    versionurl: str | None = None,
    contenturl: str | None = None,
    fmt: int | None = None,
    key_files: list[str] | None = None,
    compat: str | None = None,
    fallback_root: str | None = None,
    stream: str | None = None,
) -> Settings:
    """Settings for a target root, with `fallback_root` consulted for anything it lacks."""
    roots = [root] + ([fallback_root] if fallback_root and fallback_root != root else [])

    def first(name: str) -> str:
        for r in roots:
            value = _read(r, name)
            if value:
                return value
        return ""

    s = Settings(root=os.path.abspath(root))
    s.statedir = os.path.abspath(statedir) if statedir else os.path.join(s.root, "var/lib/swupd")
    s.versionurl = versionurl or url or first("mirror_versionurl") or first("versionurl")
    s.contenturl = contenturl or url or first("mirror_contenturl") or first("contenturl")
    fmt_text = first("format")
    if fmt:
        s.format = fmt
    elif fmt_text:
        if not fmt_text.isdigit():
            raise UsageError(f"format file holds {fmt_text!r}, not a number")
        s.format = int(fmt_text)
    s.compat = compat if compat is not None else first("compat")
    s.stream = stream if stream is not None else first("stream")
    if s.stream:
        try:
            check_stream(s.stream)
        except FormatError as e:
            raise UsageError(f"configured {e}") from None
    if key_files:
        s.keys = [load_public(k) for k in key_files]
    else:
        for r in roots:
            s.keys = _keys(r)
            if s.keys:
                break
    s.versionurl, s.contenturl = s.versionurl.rstrip("/"), s.contenturl.rstrip("/")
    return s
