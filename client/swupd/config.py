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
from collections.abc import Callable
from dataclasses import dataclass, field

from swupd.format.errors import FormatError, UsageError
from swupd.format.latest import check_stream
from swupd.format.limits import LIMITS, Limits
from swupd.format.settings import DEFAULTS_DIR, ETC_DIR, KEYS_DIR, MIRROR_CONTENTURL, MIRROR_VERSIONURL
from swupd.format.settings import files as settings_files
from swupd.format.signing import PublicKey, load_public

from . import ownership


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
    # setting -> where its value came from: "command line" or the file read
    origins: dict[str, str] = field(default_factory=dict)

    def _etc(self, name: str) -> str:
        return os.path.join(self.root, ETC_DIR, name)

    def require_server(self) -> None:
        if not self.versionurl or not self.contenturl:
            raise UsageError(
                f"no update URL configured: pass --url or write it to {self._etc('versionurl')} and contenturl"
            )
        if not self.keys:
            raise UsageError(f"no trusted public key configured: pass --key or put it in {self._etc('keys')}/")
        if self.format <= 0:
            raise UsageError(f"no format configured: pass --format or write it to {self._etc('format')}")


def _read(root: str, name: str) -> tuple[str, str]:
    """The setting's value and the file it came from ("" and "" when none is set)."""
    for d in (ETC_DIR, DEFAULTS_DIR):
        p = ownership.resolve(os.path.join(root, d, name), "setting")
        try:
            with open(p, encoding="utf-8") as f:
                value = f.read().strip()
        except FileNotFoundError:
            continue
        except OSError as e:
            raise UsageError(f"cannot read {p}: {e.strerror}") from None
        if value:
            return value, p
    return "", ""


def _keys(root: str) -> tuple[list[PublicKey], str]:
    for d in (ETC_DIR, DEFAULTS_DIR):
        keys = ownership.resolve(os.path.join(root, d, KEYS_DIR), "key directory")
        paths = sorted(glob.glob(os.path.join(glob.escape(keys), "*.pub")))
        if paths:
            return [load_public(ownership.resolve(p, "trusted key")) for p in paths], keys
    return [], ""


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

    s = Settings(root=os.path.abspath(root))
    cli = "command line"

    def first(setting: str, *names: str, given: str | None = None) -> str:
        if given is not None:
            s.origins[setting] = cli
            return given
        for name in names:
            for r in roots:
                value, where = _read(r, name)
                if value:
                    s.origins[setting] = where
                    return value
        return ""

    s.statedir = os.path.abspath(statedir) if statedir else os.path.join(s.root, "var/lib/swupd")
    s.versionurl = first("versionurl", MIRROR_VERSIONURL, "versionurl", given=versionurl or url or None)
    s.contenturl = first("contenturl", MIRROR_CONTENTURL, "contenturl", given=contenturl or url or None)
    fmt_text = first("format", "format", given=str(fmt) if fmt else None)
    if fmt_text:
        if not (fmt_text.isascii() and fmt_text.isdigit()):
            raise UsageError(f"format file holds {fmt_text!r}, not a number")
        s.format = int(fmt_text)
    s.compat = first("compat", "compat", given=compat)
    s.stream = first("stream", "stream", given=stream)
    if s.stream:
        try:
            check_stream(s.stream)
        except FormatError as e:
            raise UsageError(f"configured {e}") from None
    if key_files:
        s.keys = [load_public(k) for k in key_files]
        s.origins["keys"] = cli
    else:
        for r in roots:
            s.keys, where = _keys(r)
            if s.keys:
                s.origins["keys"] = where
                break
    s.versionurl, s.contenturl = s.versionurl.rstrip("/"), s.contenturl.rstrip("/")
    return s


def _values(s: Settings) -> dict[str, str]:
    """The settings as their files hold them ("" for one not set)."""
    return {
        "versionurl": s.versionurl,
        "contenturl": s.contenturl,
        "format": str(s.format or ""),
        "compat": s.compat,
        "stream": s.stream,
    }


def keep_installed(s: Settings, write: Callable[[str, bytes], None]) -> list[str]:
    """After os-install: every setting the installed tree does not give by itself (it came from
    the command line or the running system) is written to its `etc/swupd/`, so that the new
    system updates with a bare `swupd update`. `write(path, data)` writes one file durably.
    Returns the files written."""
    own = load(s.root)
    given, kept = _values(s), _values(own)
    same_keys = {k.raw for k in s.keys} == {k.raw for k in own.keys}
    files = settings_files({n: v for n, v in given.items() if v != kept[n]}, [] if same_keys else s.keys)
    written = []
    for rel, data in sorted(files.items()):
        path = os.path.join(s.root, ETC_DIR, rel)
        write(path, data)
        written.append(path)
    return written
