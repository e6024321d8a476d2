"""The device's settings files: where an image ships them, where an administrator overrides
them, and what a settings directory holds.

The image build writes them (`swupd-server prepare-rootfs`), the device reads them
(swupd.config) and `os-install` keeps what it was given in the new root's `etc/swupd`: one
layout declared here, so that what a build writes is what a device reads.
"""

from __future__ import annotations

from .signing import PublicKey

# Shipped with the OS image, read after the administrator's directory.
DEFAULTS_DIR = "usr/share/defaults/swupd"
# The administrator's: a file here overrides the one of the same name in DEFAULTS_DIR.
ETC_DIR = "etc/swupd"
# Trusted public keys, `*.pub`, in either directory (the first that has any wins).
KEYS_DIR = "keys"
# One file per setting, its value on one line.
NAMES = ("versionurl", "contenturl", "format", "compat", "stream")
# `swupd mirror` writes these in ETC_DIR; they take precedence over both URLs.
MIRROR_VERSIONURL = "mirror_versionurl"
MIRROR_CONTENTURL = "mirror_contenturl"


def files(values: dict[str, str], keys: list[PublicKey]) -> dict[str, bytes]:
    """The files of a settings directory that holds `values` (setting -> value; empty ones are
    left out) and trusts `keys`: name relative to the directory -> content. A key is named by
    its key id, so two key files of one name (release.pub of two key pairs) both stay."""
    out: dict[str, bytes] = {}
    for name, value in values.items():
        if name not in NAMES:
            raise ValueError(f"no setting {name!r}")
        if value:
            out[name] = f"{value}\n".encode()
    for k in keys:
        out[f"{KEYS_DIR}/{k.keyid}.pub"] = k.dumps()
    return out
