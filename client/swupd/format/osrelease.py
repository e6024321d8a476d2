"""VERSION_ID in os-release: the one rule for how a version is written into it, and which
file's text it is written into.

The image that boots and the content the server publishes must be the same file, byte for byte:
a device whose os-release differs from its manifest starts out "modified", and a delta made
against the published file cannot apply to it. So the line is replaced where it stands (or
appended when there is none) and every other byte is kept, comments and order included.
"""

from __future__ import annotations

import os
import re

from .paths import resolve_in

# Where os-release lives, in the order readers look: the OS's own file, then /etc's (most
# often a link to it). The published /usr/lib/os-release always holds VERSION_ID.
OS_RELEASE = "/usr/lib/os-release"
ETC_OS_RELEASE = "/etc/os-release"
PATHS = (OS_RELEASE, ETC_OS_RELEASE)
# What a tree without any os-release is given.
DEFAULT_TEXT = 'NAME="Linux"\nID=linux\n'
_LINE = re.compile(r"^VERSION_ID=.*$", re.M)
# What a reader takes for a version: digits, quoted or not (os-release allows quotes).
_VERSION = re.compile(r'^VERSION_ID=["\']?([0-9]+)["\']?\s*$', re.M)


def with_version_id(text: str, version: int | str) -> str:
    line = f"VERSION_ID={version}"
    if _LINE.search(text):
        return _LINE.sub(line, text, count=1)
    if text and not text.endswith("\n"):
        text += "\n"
    return text + line + "\n"


def version_id(text: str) -> int | None:
    """The version an os-release names, None when its VERSION_ID is missing or not a number."""
    m = _VERSION.search(text)
    return int(m[1]) if m else None


def read_text(root: str) -> str:
    """The os-release a tree gives itself: the first of PATHS that is a file inside the tree, or
    DEFAULT_TEXT. Both the published content and the image's file are made from this text."""
    for path in PATHS:
        host = resolve_in(root, path)
        if host is not None and os.path.isfile(host):
            with open(host, encoding="utf-8", errors="surrogateescape") as f:
                return f.read()
    return DEFAULT_TEXT


def stamped(etc_is_file: bool) -> list[str]:
    """The files that carry the stamped text: /usr/lib/os-release always (a file, replacing a
    link), /etc/os-release too when it is a file of its own, so the two never disagree."""
    return [OS_RELEASE, ETC_OS_RELEASE] if etc_is_file else [OS_RELEASE]
