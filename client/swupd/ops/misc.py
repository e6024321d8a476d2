"""`info`, `clean`, `autoupdate` and `mirror`."""

from __future__ import annotations

import os
import shutil
import subprocess
from importlib import resources

from swupd.format import layout
from swupd.format.errors import SwupdError, TreeIOError, UsageError
from swupd.format.settings import ETC_DIR, MIRROR_CONTENTURL, MIRROR_VERSIONURL

from .session import Session

UNITS = ("swupd-update.service", "swupd-update.timer")
UNIT_DIR = "usr/lib/systemd/system"
LOCAL_UNIT_DIR = "etc/systemd/system"
WANTS = "etc/systemd/system/timers.target.wants/swupd-update.timer"
MASK = "etc/systemd/system/swupd-update.timer"


def info(sess: Session) -> dict:
    trust = sess.state.trust()
    return {
        "version": sess.current_version(),
        "root": sess.s.root,
        "statedir": sess.state.path,
        "versionurl": sess.s.versionurl,
        "contenturl": sess.s.contenturl,
        "format": sess.s.format,
        "compat": sess.trusted.compat,
        "stream": sess.trusted.stream,
        "keys": [k.keyid for k in sess.s.keys],
        "bundles": sorted(sess.installed_bundles()),
        "highest_version_seen": trust.highest_version,
        "settings_from": dict(sorted(sess.s.origins.items())),
    }


def clean(sess: Session, everything: bool) -> tuple[int, int]:
    """Drop caches. Of the manifests, only what the installed system uses is kept (unless
    `everything`): its version's MoM and the installed bundles' manifests, with their parsed
    copies; so verify and search still work offline."""
    cur = sess.current_version()
    keep: set[str] = set()
    if cur and not everything:
        try:
            mom = sess.mom(cur, allow_older=True)
            keep |= {f"{cur}/{layout.MOM}", f"{cur}/{layout.sig(layout.MOM)}"}
            for name in sess.installed_closure(mom):
                e = sess.bundle_entry(mom, name)
                keep |= {f"{e.version}/Manifest.{name}", f"{e.version}/parsed/Manifest.{name}"}
        except SwupdError:
            keep = _all_below(sess.state.sub("manifests"), {str(cur)})
    return sess.state.clean(keep, everything)


def _all_below(top: str, dirs: set[str]) -> set[str]:
    """Every file below the named subdirectories of `top`, relative to `top`."""
    out = set()
    for d in dirs:
        for root, _, names in os.walk(os.path.join(top, d)):
            out |= {os.path.relpath(os.path.join(root, n), top) for n in names}
    return out


def _host(sess: Session, rel: str) -> str:
    return os.path.join(sess.s.root, rel)


def install_units(sess: Session) -> str:
    """The timer unit's path, writing service and timer into /etc (the administrator's area,
    which verify --picky leaves alone) when the image does not ship them in /usr."""
    if os.path.exists(_host(sess, f"{UNIT_DIR}/swupd-update.timer")):
        return f"/{UNIT_DIR}/swupd-update.timer"
    unit_dir = _host(sess, LOCAL_UNIT_DIR)
    for unit in UNITS:
        dest = os.path.join(unit_dir, unit)
        if not os.path.exists(dest):
            os.makedirs(unit_dir, exist_ok=True)
            with resources.files("swupd.data").joinpath(unit).open("rb") as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
    return f"/{LOCAL_UNIT_DIR}/swupd-update.timer"


def _masked(mask: str) -> bool:
    return os.path.islink(mask) and os.readlink(mask) == "/dev/null"


def autoupdate(sess: Session, enable: bool | None) -> bool:
    """Enable, disable or (None) report automatic updates; returns whether they are enabled.

    Disabling removes the timer from timers.target and, when the image ships the units, masks
    the timer (a link to /dev/null in /etc), as `systemctl mask` would."""
    wants, mask = _host(sess, WANTS), _host(sess, MASK)
    try:
        if enable is True:
            if _masked(mask):
                os.unlink(mask)
            timer = install_units(sess)
            os.makedirs(os.path.dirname(wants), exist_ok=True)
            if not os.path.lexists(wants):
                # Relative, so the link resolves both on the device and in a tree under --path.
                os.symlink(os.path.relpath(timer, os.path.dirname("/" + WANTS)), wants)
        elif enable is False:
            if os.path.lexists(wants):
                os.unlink(wants)
            if os.path.exists(_host(sess, f"{UNIT_DIR}/swupd-update.timer")) and not os.path.lexists(mask):
                os.makedirs(os.path.dirname(mask), exist_ok=True)
                os.symlink("/dev/null", mask)
    except OSError as e:
        raise TreeIOError(f"cannot change automatic updates: {e.strerror}") from None
    if enable is not None and sess.s.root == "/" and os.path.isdir("/run/systemd/system"):
        subprocess.run(["systemctl", "daemon-reload"], check=False, capture_output=True)
        verb = "start" if enable else "stop"
        subprocess.run(["systemctl", verb, "swupd-update.timer"], check=False, capture_output=True)
    return os.path.lexists(wants) and not _masked(mask)


def mirror(sess: Session, url: str | None) -> None:
    """Point the device at a mirror (both URLs), or back to the defaults with None."""
    etc = _host(sess, ETC_DIR)
    names = (MIRROR_VERSIONURL, MIRROR_CONTENTURL)
    try:
        if url is None:
            for n in names:
                if os.path.exists(os.path.join(etc, n)):
                    os.unlink(os.path.join(etc, n))
            return
        if not url.startswith(("http://", "https://", "file://")):
            raise UsageError(f"mirror URL must be http(s):// or file://, not {url!r}")
        os.makedirs(etc, exist_ok=True)
        for n in names:
            with open(os.path.join(etc, n), "w", encoding="utf-8") as f:
                f.write(url.rstrip("/") + "\n")
    except OSError as e:
        raise TreeIOError(f"cannot write the mirror setting in {etc}: {e.strerror}") from None
