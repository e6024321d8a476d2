"""OE-core's `scripts/` (runqemu, oe-test) and BitBake's `lib/` (which oeqa imports), unpacked
unmodified from the pinned release tarballs in `../shared/yocto` (or `$SWUPD_YOCTO_SOURCES`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP / "tests" / "bitbake"))
from oe import sources_dir  # noqa: E402  (where the pinned tarballs are, as the bitbake tier finds them)

TARBALLS = ("openembedded-core-yocto-6.0.2.tar.xz", "bitbake-yocto-6.0.2.tar.xz")


class Unavailable(Exception):
    """The upstream sources are not on this machine."""


def _unpacked() -> Path:
    from .image import cache_dir

    root = cache_dir() / "yocto"
    stamp = root / ".unpacked"
    if stamp.exists() and stamp.read_text() == "\n".join(TARBALLS):
        return root
    root.mkdir(parents=True, exist_ok=True)
    for name in TARBALLS:
        tarball = sources_dir() / name
        if not tarball.is_file():
            raise Unavailable(f"upstream OE-core not found: {tarball}")
        subprocess.run(["tar", "-C", str(root), "-xJf", str(tarball)], check=True)
    stamp.write_text("\n".join(TARBALLS))
    return root


def oe_core() -> Path:
    return _unpacked() / "openembedded-core"


def bitbake_lib() -> Path:
    return _unpacked() / "bitbake" / "lib"
