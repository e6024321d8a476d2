"""Small JSON files in the build cache (scan stamps, ELF facts).

A cache only saves time: an unreadable or missing file reads as empty, and a write replaces the
file whole so a killed build never leaves half of one."""

from __future__ import annotations

import json
import os
from typing import Any


def load(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def save(path: str | None, data: dict[str, Any]) -> None:
    if not path:
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    text = json.dumps(data, separators=(",", ":"))  # one call: json.dump encodes in Python, 5x slower
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(path + ".tmp", path)
