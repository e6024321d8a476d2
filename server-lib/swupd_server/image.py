"""`prepare-rootfs`: what an image's root file system carries so that it is the version it boots as.

A device flashed with an image and one that installed the same version from `www/` must hold
the same tree, or the flashed one starts out "modified" and a delta made against the published
file cannot apply to it. The build adds VERSION_ID and the bundle markers to the content it
publishes (scan.stamp_os_release, the markers in pipeline.py); this writes them into the image
by the same rules (`swupd.format.osrelease`, `swupd.format.paths.marker`), so an image build
(the Yocto layer's rootfs step) asks this command rather than keeping rules of its own.
"""

from __future__ import annotations

import os

from swupd.format import osrelease
from swupd.format.errors import UsageError
from swupd.format.limits import LIMITS
from swupd.format.paths import OS_CORE, is_bundle_name, marker


def check_bundles(bundles: list[str]) -> None:
    """The optional bundles an image holds: usable names (os-core is always there and never
    named), each once."""
    for b in bundles:
        if b == OS_CORE or not is_bundle_name(b):
            raise UsageError(f"{b!r} is not a usable bundle name")
    for b in bundles:
        if bundles.count(b) > 1:
            raise UsageError(f"bundle {b!r} is named twice")


def _write(root: str, path: str, text: str) -> str:
    host = os.path.join(root, path.lstrip("/"))
    os.makedirs(os.path.dirname(host), exist_ok=True)
    with open(host, "w", encoding="utf-8", errors="surrogateescape") as f:
        f.write(text)
    os.chmod(host, 0o644)
    return host


def write_markers(root: str, bundles: list[str]) -> list[str]:
    """Empty marker files of os-core and `bundles`: their presence on a device means the bundle
    is installed."""
    check_bundles(bundles)
    return [_write(root, marker(b), "") for b in [OS_CORE, *bundles]]


def set_version_id(root: str, version: int) -> str:
    """Set VERSION_ID in the image's os-release, the first of `osrelease.PATHS` that exists,
    following a symlink inside the root (an absolute one is resolved below `root`, not on the
    host); without any, write a minimal `/usr/lib/os-release`. Returns the file written."""
    top = os.path.realpath(root)
    for path in osrelease.PATHS:
        host = os.path.join(root, path.lstrip("/"))
        if not os.path.lexists(host):
            continue
        real = os.path.realpath(host)
        if not real.startswith(top + os.sep):
            real = os.path.join(root, os.readlink(host).lstrip("/"))
        with open(real, encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
        with open(real, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(osrelease.with_version_id(text, version))
        return real
    return _write(root, osrelease.OS_RELEASE, osrelease.with_version_id("ID=linux\n", version))


def prepare(root: str, version: int | None, bundles: list[str]) -> list[str]:
    """The bundle markers and (unless `version` is None) VERSION_ID of an image; the files
    written."""
    if not os.path.isdir(root):
        raise UsageError(f"rootfs is not a directory: {root}")
    if version is not None and not 0 < version <= LIMITS.max_version:
        raise UsageError(f"version must be between 1 and {LIMITS.max_version}")
    written = write_markers(root, bundles)
    return written if version is None else [*written, set_version_id(root, version)]
