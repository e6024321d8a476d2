"""A package installed as it is deployed, for the benchmarks.

On a device or a build host the client and the server are regular installs whose modules are
byte-compiled. The development environment installs them editable (an import hook) and, with
PYTHONDONTWRITEBYTECODE set, compiles their modules from source on every run: costs of tens of
milliseconds per command that no deployment pays, so the benchmarks measure a regular install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def install(work: str, packages: list[str], command: str) -> str:
    """Install the project's `packages` (directories under the top, e.g. "client") into a fresh
    virtual environment in `work`; return the path of `command` in it. Exits on failure."""
    venv = os.path.join(work, "venv-" + "-".join(packages))
    subprocess.run([sys.executable, "-m", "venv", "--clear", venv], check=True)
    python = os.path.join(venv, "bin", "python")
    sources = []
    for package in packages:
        # Built from a copy: setuptools writes build/ beside the sources it builds.
        src = os.path.join(work, "src-" + package)
        shutil.rmtree(src, ignore_errors=True)
        skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
        shutil.copytree(os.path.join(TOP, package), src, ignore=skip)
        sources.append(src)
    r = subprocess.run(
        [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *sources], capture_output=True, text=True
    )
    if r.returncode != 0:
        sys.exit(f"cannot install {', '.join(packages)}: {r.stderr.strip()[-500:]}")
    subprocess.run([python, "-m", "compileall", "-q", venv], check=True, stdout=subprocess.DEVNULL)
    return os.path.join(venv, "bin", command)
