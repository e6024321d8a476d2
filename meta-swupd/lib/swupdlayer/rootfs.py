"""What the image carries for its swupd client, written into the rootfs at rootfs time.

The bundle markers and VERSION_ID are written by `swupd-server prepare-rootfs` (called from
swupd-image.bbclass), by the rules the server publishes them with; this is the client's
configuration, which only images carry."""

from __future__ import annotations

import os
import shutil

DEFAULTS = "usr/share/defaults/swupd"


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

