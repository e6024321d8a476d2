"""Bundle path lists from package data, and the bundles file for swupd-server.

Bundles are defined by packages (`BUNDLE_CONTENTS[<bundle>]`). The paths a package installs are
in OE's package data (`${PKGDATA_DIR}/runtime/<package>`, the `FILES_INFO:<package>` line),
so one rootfs holding every bundle is enough: each bundle gets the paths of its packages.
Bundle names and includes are checked by swupd-server, by the format's rules: `prepare-rootfs`
at rootfs time (before this runs), `create-update` again when it reads the bundles file.
"""

from __future__ import annotations

import json
import os


class BundleConfigError(Exception):
    """A bundle variable is wrong; the message names it."""


def package_files(pkgdata_dir: str, package: str) -> list[str]:
    """Paths a package installs, from its runtime package data."""
    path = os.path.join(pkgdata_dir, "runtime", package)
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                key, sep, value = line.partition(": ")
                if sep and key == f"FILES_INFO:{package}":
                    return sorted(json.loads(value))
    except FileNotFoundError:
        raise BundleConfigError(
            f"no package data for {package!r} ({path}); is it a package name built for this image?"
        ) from None
    return []


def _toml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def bundles_toml(
    bundles: list[str],
    contents: dict[str, list[str]],
    includes: dict[str, list[str]],
    pkgdata_dir: str,
    exclude: list[str],
) -> str:
    """The bundles file: each bundle's paths from its packages' file lists."""
    lines = ["# Written by swupd-image.bbclass from SWUPD_BUNDLES and BUNDLE_CONTENTS."]
    if exclude:
        lines.append("exclude = [" + ", ".join(_toml_str(p) for p in exclude) + "]")
    for b in bundles:
        packages = contents.get(b) or []
        if not packages:
            raise BundleConfigError(f"BUNDLE_CONTENTS[{b}] is empty: a bundle needs at least one package")
        paths = sorted({p for pkg in packages for p in package_files(pkgdata_dir, pkg)})
        lines.append("")
        lines.append(f"[bundle.{_toml_str(b)}]")  # quoted: a name may hold `.` or `+`
        if includes.get(b):
            lines.append("includes = [" + ", ".join(_toml_str(i) for i in includes[b]) + "]")
        lines.append("paths = [")
        lines += [f"    {_toml_str(p)}," for p in paths]
        lines.append("]")
    return "\n".join(lines) + "\n"
