"""Every file name of the `www/` tree, built in one place.

The server writes and the client fetches exactly these relative names, so the two can never
disagree about where something lives. All names are relative to the version or content URL.
"""

from __future__ import annotations

import re

from .errors import FormatError
from .paths import check_bundle_name

MOM = "Manifest.MoM"
SIG_SUFFIX = ".sig"


def latest(fmt: int) -> str:
    """Signed pointer to the newest version of a format, with its expiry."""
    return f"version/format{fmt}/latest"


def sig(name: str) -> str:
    return name + SIG_SUFFIX


def version_dir(version: int) -> str:
    return str(version)


def mom(version: int) -> str:
    return f"{version}/{MOM}"


def manifest(version: int, bundle: str) -> str:
    return f"{version}/Manifest.{check_bundle_name(bundle)}"


def manifests_dir(version: int) -> str:
    """Compressed manifests: a subdirectory, because bundle names may contain dots."""
    return f"{version}/manifests"


def manifest_zst(version: int, bundle: str) -> str:
    """The manifest compressed, which is what devices fetch; the MoM pins its uncompressed bytes."""
    return f"{manifests_dir(version)}/Manifest.{check_bundle_name(bundle)}.zst"


def manifest_delta(version: int, bundle: str, from_version: int) -> str:
    """A delta from the bundle's manifest of `from_version` to its manifest of `version`
    (manifestdelta.py); in a directory per source, so no bundle name can collide with it."""
    return f"{manifests_dir(version)}/from-{from_version}/Manifest.{check_bundle_name(bundle)}.delta"


def files_dir(version: int) -> str:
    return f"{version}/files"


def fullfile(version: int, digest: str) -> str:
    return f"{version}/files/{digest}.tar"


def pack(version: int, bundle: str, from_version: int) -> str:
    """Zero pack when `from_version` is 0, delta pack otherwise."""
    return f"{version}/pack-{check_bundle_name(bundle)}-from-{from_version}.tar"


# A pack holds these two directories, then fullfiles (`staged/<hash>.tar`) and deltas
# (`delta/<from hash>/<to hash>`), and nothing else.
PACK_DELTA_DIR = "delta/"
PACK_FULLFILE_DIR = "staged/"
PACK_DIRS = (PACK_DELTA_DIR, PACK_FULLFILE_DIR)
_HASH = "[0-9a-f]{64}"
PACK_FULLFILE_MEMBER = re.compile(rf"{PACK_FULLFILE_DIR}({_HASH})\.tar\Z")
PACK_DELTA_MEMBER = re.compile(rf"{PACK_DELTA_DIR}({_HASH})/({_HASH})\Z")
PACK_OBJECT_MEMBERS = re.compile(rf"{PACK_FULLFILE_DIR}{_HASH}\.tar|{PACK_DELTA_DIR}{_HASH}/{_HASH}")
PACK_MEMBERS = re.compile("|".join([*map(re.escape, PACK_DIRS), PACK_OBJECT_MEMBERS.pattern]))


def pack_fullfile_member(digest: str) -> str:
    """Name of a fullfile inside a pack."""
    return f"{PACK_FULLFILE_DIR}{digest}.tar"


def pack_delta_member(from_hash: str, to_hash: str) -> str:
    """Name of a delta inside a pack: short enough for a plain ustar header (prefix and name),
    so a device parses one header block per member and no pax record."""
    return f"{PACK_DELTA_DIR}{from_hash}/{to_hash}"


KEYS_DIR = "keys"


def key_introduction(kid: str) -> str:
    """A signing key's introduction: its public key file, signed (`.sig`) by a key that signed
    the stream before it. The key id comes from signature lines a server sent, so it is checked
    before it becomes part of a URL."""
    if len(kid) != 16 or any(c not in "0123456789abcdef" for c in kid):
        raise FormatError(f"key id {kid[:40]!r} is not 16 lowercase hex digits")
    return f"{KEYS_DIR}/{kid}.pub"


def report_dir() -> str:
    return "report"


def build_record(version: int) -> str:
    """What the build of a version found that devices need not know (its warnings), kept for
    `swupd-server report`, which reads nothing but the published tree. Devices never fetch it."""
    return f"{report_dir()}/build-{version}.json"
