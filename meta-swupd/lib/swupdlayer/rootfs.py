"""What the image carries for its swupd client, written into the rootfs at rootfs time."""

from __future__ import annotations

import os
import re
import shutil

DEFAULTS = "usr/share/defaults/swupd"
MARKERS = "usr/share/clear/bundles"
_VERSION_ID = re.compile(r"^VERSION_ID=.*$", re.M)


def _write(root: str, rel: str, text: str, mode: int = 0o644) -> None:
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, mode)


def client_config(
    root: str, versionurl: str, contenturl: str, fmt: str, compat: str, public_keys: list[str], stream: str = ""
) -> None:
    """The client's defaults: URLs, format, compat id, stream identity and the trusted public keys."""
    if versionurl:
        _write(root, f"{DEFAULTS}/versionurl", versionurl.rstrip("/") + "\n")
    if contenturl:
        _write(root, f"{DEFAULTS}/contenturl", contenturl.rstrip("/") + "\n")
    _write(root, f"{DEFAULTS}/format", f"{fmt}\n")
    _write(root, f"{DEFAULTS}/compat", f"{compat}\n")
    if stream:
        _write(root, f"{DEFAULTS}/stream", f"{stream}\n")
    keys = os.path.join(root, DEFAULTS, "keys")
    if os.path.isdir(keys):
        shutil.rmtree(keys)
    os.makedirs(keys)
    for i, key in enumerate(public_keys):
        name = os.path.basename(key)
        if not name.endswith(".pub") or os.path.exists(os.path.join(keys, name)):
            name = f"key{i}.pub"  # two keys of one name (release.pub of two key pairs) both stay
        shutil.copyfile(key, os.path.join(keys, name))
        os.chmod(os.path.join(keys, name), 0o644)


def bundle_markers(root: str, bundles: list[str]) -> None:
    """Empty marker files: their presence on a device means the bundle is installed."""
    for b in ["os-core", *bundles]:
        _write(root, f"{MARKERS}/{b}", "")


def set_version_id(root: str, version: str) -> str:
    """Set VERSION_ID in the image's os-release (following a symlink inside the rootfs)."""
    for rel in ("usr/lib/os-release", "etc/os-release"):
        path = os.path.join(root, rel)
        if not os.path.lexists(path):
            continue
        real = os.path.realpath(path)
        if not real.startswith(os.path.realpath(root) + os.sep):
            # An absolute symlink: resolve it inside the rootfs instead.
            real = os.path.join(root, os.readlink(path).lstrip("/"))
        with open(real, encoding="utf-8") as f:
            text = f.read()
        # The rule of the server's swupd.format.osrelease, so the image's file is the published one.
        line = f"VERSION_ID={version}"
        if _VERSION_ID.search(text):
            text = _VERSION_ID.sub(line, text, count=1)
        else:
            text = (text + "\n" if text and not text.endswith("\n") else text) + line + "\n"
        with open(real, "w", encoding="utf-8") as f:
            f.write(text)
        return real
    _write(root, "usr/lib/os-release", f"ID=linux\nVERSION_ID={version}\n")
    return os.path.join(root, "usr/lib/os-release")
