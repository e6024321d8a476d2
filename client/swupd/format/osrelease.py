"""VERSION_ID in os-release: the one rule for how a version is written into it.

The image that boots and the content the server publishes must be the same file, byte for byte:
a device whose os-release differs from its manifest starts out "modified", and a delta made
against the published file cannot apply to it. So the line is replaced where it stands (or
appended when there is none) and every other byte is kept, comments and order included.
"""

from __future__ import annotations

import re

# Where os-release lives, in the order readers look: the OS's own file, then /etc's (most
# often a link to it). The published /usr/lib/os-release always holds VERSION_ID.
OS_RELEASE = "/usr/lib/os-release"
ETC_OS_RELEASE = "/etc/os-release"
PATHS = (OS_RELEASE, ETC_OS_RELEASE)
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
