"""Files of the build cache (scan stamps, ELF facts, pack frames).

A cache only saves time: an unreadable, damaged or missing file, or one written by another
Python, reads as empty, and a write replaces the file whole so a killed build never leaves half
of one. The format is marshal behind a SHA-256 of it: the scan stamps of a whole rootfs load and
save much faster than as JSON, which every rebuild does (docs/benchmarks.md).
"""

from __future__ import annotations

import hashlib
import marshal
import os
import sys
from typing import Any

from swupd.format.durable import write_atomic

_MAGIC = f"swupd-cache {marshal.version} {sys.version_info[0]}.{sys.version_info[1]}\n".encode()


def load(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError:
        return {}
    head = len(_MAGIC) + 32
    if not blob.startswith(_MAGIC) or hashlib.sha256(blob[head:]).digest() != blob[len(_MAGIC) : head]:
        return {}
    try:
        data = marshal.loads(blob[head:])
    except (EOFError, ValueError, TypeError):
        return {}
    return data if isinstance(data, dict) else {}


def save(path: str | None, data: dict[str, Any]) -> None:
    if not path:
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    payload = marshal.dumps(data)
    # Not fsynced: a file a power cut damaged fails its hash and reads as empty.
    write_atomic(path, _MAGIC + hashlib.sha256(payload).digest() + payload, sync=False)
