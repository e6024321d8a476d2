"""Rules for the paths and names that appear in manifests and in `www/`, and the paths both
sides give a meaning: boot content, the bundle markers.

A manifest path is the one thing from the update stream that becomes a file system name on the
device, so it is checked here once, strictly: absolute, no empty, `.` or `..` component, no
NUL, TAB or newline, bounded length. Paths are `str` decoded with `surrogateescape`, so any byte
sequence a Linux file name can hold survives the round trip.
"""

from __future__ import annotations

import os
import re

from .errors import FormatError
from .limits import LIMITS, Limits

# Bundle names, stream identities and compat ids: 1-128 of A-Z a-z 0-9 . _ + -, starting with a
# letter or digit (safe as a file name, a URL part and one header line).
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}\Z")
# swupd's names of manifests that are no bundle's (`Manifest.MoM`, `Manifest.full`).
RESERVED_BUNDLES = frozenset({"MoM", "full"})
# The bundle every device has and every other bundle includes; it is never named to be added.
OS_CORE = "os-core"
# A bundle is installed on a device when its marker file (empty) is present here: the server
# adds each bundle's marker to its content, images carry the markers of what they hold.
MARKER_DIR = "/usr/share/clear/bundles"
# Boot content: kernels, their modules and the EFI system partition. The server ghosts what a
# version drops below these (the running kernel still needs it) and a device keeps it on
# update; a change below them asks the boot hook to run.
BOOT_PREFIXES = ("/boot/", "/usr/lib/kernel/", "/usr/lib/modules/", "/lib/modules/", "/efi/")
# Symbolic links followed in one path before it counts as a loop (the kernel's own bound).
_MAX_LINKS = 40


def check_path(path: str, limits: Limits = LIMITS) -> str:
    """Return `path` if it is a valid manifest path, else raise `FormatError`."""
    if not path.startswith("/"):
        raise FormatError(f"path is not absolute: {path!r}")
    raw = path.encode("utf-8", "surrogateescape")
    if len(raw) > limits.max_path_bytes:
        raise FormatError(f"path longer than {limits.max_path_bytes} bytes: {path[:80]!r}...")
    if "\0" in path or "\t" in path or "\n" in path or "\r" in path:
        raise FormatError(f"path holds a control character: {path!r}")
    if path == "/":
        return path
    probe = path + "/"
    if "//" in probe or "/./" in probe or "/../" in probe:
        raise FormatError(f"path has an empty, '.' or '..' component: {path!r}")
    if len(raw) > limits.max_name_bytes and any(
        len(part.encode("utf-8", "surrogateescape")) > limits.max_name_bytes for part in path.split("/")
    ):
        raise FormatError(f"path component longer than {limits.max_name_bytes} bytes: {path!r}")
    return path


def parents(path: str) -> list[str]:
    """The ancestors of an absolute path, outermost first, without `/` itself."""
    parts = path.split("/")[1:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def check_bundle_name(name: str) -> str:
    """Return `name` if it may name a bundle (it becomes a file name in `www/`)."""
    if not NAME.match(name) or name in RESERVED_BUNDLES:
        raise FormatError(f"invalid bundle name: {name!r}")
    return name


def is_bundle_name(name: str) -> bool:
    """True if `name` is acceptable as a bundle name."""
    return bool(NAME.match(name)) and name not in RESERVED_BUNDLES


def to_bytes(path: str) -> bytes:
    """The on-disk bytes of a manifest path."""
    return os.fsencode(path)


def marker(bundle: str) -> str:
    """The file whose presence on a device means the bundle is installed."""
    return f"{MARKER_DIR}/{check_bundle_name(bundle)}"


def resolve_in(root: str, path: str) -> str | None:
    """The host path that `path` names inside the tree at `root`, its symbolic links followed as
    the booted system follows them: an absolute target from the tree's top, `..` never above it.
    None for a loop. So neither side reads or writes a host file through an image's link."""
    todo = [p for p in path.split("/") if p]
    done: list[str] = []
    links = 0
    while todo:
        part = todo.pop(0)
        if part in (".", ".."):
            if part == ".." and done:
                done.pop()
            continue
        host = os.path.join(root, *done, part)
        if not os.path.islink(host):
            done.append(part)
            continue
        links += 1
        if links > _MAX_LINKS:
            return None
        target = os.readlink(host)
        if target.startswith("/"):
            done = []
        todo = [p for p in target.split("/") if p] + todo
    return os.path.join(root, *done)
