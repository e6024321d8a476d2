"""`prepare-rootfs`: what an image's root file system carries so that it is the version it boots
as, and the settings its client starts with.

A device flashed with an image and one that installed the same version from `www/` must hold
the same tree, or the flashed one starts out "modified" and a delta made against the published
file cannot apply to it. The build adds VERSION_ID and the bundle markers to the content it
publishes (scan.stamp_os_release, the markers in pipeline.py); this writes them into the image
by the same rules (`swupd.format.osrelease`, `swupd.format.paths.marker`), so an image build
(the Yocto layer's rootfs step) asks this command rather than keeping rules of its own. The
client's settings are written in the layout the client reads (`swupd.format.settings`), each
checked as the device would check it, so a bad key or id fails the image build, not the device.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field

from swupd.format import osrelease, settings
from swupd.format.errors import FormatError, UsageError
from swupd.format.latest import check_compat, check_stream
from swupd.format.limits import LIMITS
from swupd.format.paths import OS_CORE, is_bundle_name, marker, resolve_in
from swupd.format.signing import load_public

from .config import DEFAULT_FORMAT


@dataclass
class ClientSettings:
    """What an image's client starts with: update URLs, format, compat id, stream identity and
    the public keys it trusts (files)."""

    versionurl: str = ""
    contenturl: str = ""
    format: int | None = None
    compat: str = ""
    stream: str = ""
    public_keys: list[str] = field(default_factory=list)

    def given(self) -> bool:
        return any((self.versionurl, self.contenturl, self.format, self.compat, self.stream, self.public_keys))


def check_bundles(bundles: list[str]) -> None:
    """The optional bundles an image holds: usable names (os-core is always there and never
    named), each once."""
    for b in bundles:
        if b == OS_CORE or not is_bundle_name(b):
            raise UsageError(f"{b!r} is not a usable bundle name")
    for b in bundles:
        if bundles.count(b) > 1:
            raise UsageError(f"bundle {b!r} is named twice")


def _host(root: str, path: str) -> str:
    """The host path of the directory `path` of the image, its links followed inside the image
    only: nothing written or removed here reaches past the rootfs."""
    host = resolve_in(root, path)
    if host is None:
        raise UsageError(f"{path} of the rootfs is a link loop")
    return host


def _write(root: str, path: str, text: str) -> str:
    """Write `text` to `path` of the image (a link at `path` itself is replaced by the file); a
    new file gets mode 0644, as the build publishes the files it adds, an existing one keeps its
    mode and owner. Returns the host path."""
    parent = _host(root, os.path.dirname(path))
    host = os.path.join(parent, os.path.basename(path))
    existed = os.path.isfile(host) and not os.path.islink(host)
    if os.path.islink(host):
        os.unlink(host)
    os.makedirs(parent, exist_ok=True)
    with open(host, "w", encoding="utf-8", errors="surrogateescape") as f:
        f.write(text)
    if not existed:
        os.chmod(host, 0o644)
    return host


def _write_markers(root: str, bundles: list[str]) -> list[str]:
    """Empty marker files of os-core and `bundles` (checked names): their presence on a device
    means the bundle is installed."""
    return [_write(root, marker(b), "") for b in [OS_CORE, *bundles]]


def _own_file(root: str, path: str) -> bool:
    """A regular file at `path` with no link on the way, as the build's scan sees it."""
    host = root
    for part in path.strip("/").split("/"):
        host = os.path.join(host, part)
        if os.path.islink(host):
            return False
    return os.path.isfile(host)


def set_version_id(root: str, version: int) -> list[str]:
    """Stamp VERSION_ID into the image's os-release exactly as the build publishes it
    (`osrelease.read_text`, `osrelease.stamped`): a flashed device then holds the files its
    manifests list. Returns the files written."""
    text = osrelease.with_version_id(osrelease.read_text(root), version)
    return [_write(root, path, text) for path in osrelease.stamped(_own_file(root, osrelease.ETC_OS_RELEASE))]


def settings_files(client: ClientSettings) -> dict[str, bytes]:
    """The files of the client's settings directory, each value checked as the device checks
    it: name relative to the directory -> content."""
    try:
        for check, value in ((check_compat, client.compat), (check_stream, client.stream)):
            if value:
                check(value)
        keys = [load_public(k) for k in client.public_keys]
    except FormatError as e:
        raise UsageError(str(e)) from None
    for url in (client.versionurl, client.contenturl):
        if url and (not url.isprintable() or " " in url):
            raise UsageError(f"URL {url!r} holds a space or a control character")
    values = {
        "versionurl": client.versionurl.rstrip("/"),
        "contenturl": client.contenturl.rstrip("/"),
        "format": str(client.format or DEFAULT_FORMAT),
        "compat": client.compat,
        "stream": client.stream,
    }
    return settings.files(values, keys)


def write_settings(root: str, files: dict[str, bytes]) -> list[str]:
    """`files` (settings_files) in the image's defaults directory, replacing any keys it held;
    the files written."""
    keydir = _host(root, f"/{settings.DEFAULTS_DIR}/{settings.KEYS_DIR}")
    shutil.rmtree(keydir, ignore_errors=True)
    os.makedirs(keydir)
    return [_write(root, f"{settings.DEFAULTS_DIR}/{rel}", data.decode()) for rel, data in sorted(files.items())]


def prepare(root: str, version: int | None, bundles: list[str], client: ClientSettings | None = None) -> list[str]:
    """The bundle markers, (unless `version` is None) VERSION_ID and (when `client` is given)
    the client's settings of an image, all checked before any is written; the files written."""
    if not os.path.isdir(root):
        raise UsageError(f"rootfs is not a directory: {root}")
    if version is not None and not 0 < version <= LIMITS.max_version:
        raise UsageError(f"version must be between 1 and {LIMITS.max_version}")
    check_bundles(bundles)
    files = settings_files(client) if client is not None else None
    written = _write_markers(root, bundles)
    if files is not None:
        written += write_settings(root, files)
    return written if version is None else [*written, *set_version_id(root, version)]
