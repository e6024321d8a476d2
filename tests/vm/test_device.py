"""The test device in QEMU: the layer's oeqa runtime test run by OE-core's `oe-test runtime`
over SSH, and power cuts during an update (scripts/powercut)."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from vmdevice import oeqa, powercut
from vmdevice.runner import Device
from vmdevice.serve import Server


def test_the_image_carries_the_client_as_the_recipe_installs_it(device_image, tmp_path):
    """client/install, run here as the swupd-client recipe runs it, puts the same files there
    as the image builder did inside the device's tree (but the documentation, which the image
    leaves out as OE's images leave out the recipe's -doc package)."""
    tree = device_image.tree(10)
    site = "/usr/lib/python3/dist-packages"
    r = subprocess.run(["sh", str(powercut.img.trees.TOP / "client/install"), "client", "--python", "python3",
                        "--sitedir", site, str(tmp_path)], capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr
    for path in sorted(p for p in tmp_path.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        rel = path.relative_to(tmp_path)
        if str(rel).startswith(powercut.img.trees.DOCS):
            assert not (tree / rel).exists(), rel
            continue
        assert (tree / rel).read_bytes() == path.read_bytes(), rel
    assert (tmp_path / "usr/share/man/man1/swupd.1").is_file()
    hook = tree / "usr/lib/swupd/post-update.d/50-boot-efi"
    assert hook.stat().st_mode & 0o111 and "initrd_name=initrd.img" in hook.read_text()


_VERSIONS = """import importlib.metadata as m, sys
for name in sys.argv[1:]:
    try:
        print(name, m.version(name))
    except m.PackageNotFoundError:
        print(name, "-")
"""


def unmet_requirements(tree: Path) -> list[str]:
    """The client's requirements (client/pyproject.toml) that the Python of `tree` lacks, or has
    at a version that does not meet them."""
    project = tomllib.loads((powercut.img.trees.TOP / "client/pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in project["dependencies"]]
    r = subprocess.run(["chroot", str(tree), "python3", "-B", "-c", _VERSIONS, *(q.name for q in wanted)],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr
    found = dict(line.split() for line in r.stdout.splitlines())
    return [str(q) for q in wanted if found[q.name] == "-" or not q.specifier.contains(found[q.name], prereleases=True)]


def test_the_image_carries_what_the_client_requires(device_image):
    """A requirement the device lacks fails only where it is used (tqdm: on a terminal), so each
    version's tree is checked for all of them."""
    for version in powercut.img.VERSIONS:
        assert unmet_requirements(device_image.tree(version)) == [], version


def test_oeqa_runtime_suite_passes_on_the_booted_device(device_image, tmp_path):
    srv = Server(device_image, tmp_path, 10)
    dev = Device(device_image, tmp_path)
    try:
        dev.boot()
        r = oeqa.run(device_image, dev, srv.link, tmp_path / "oeqa")
    finally:
        dev.shutdown()
        srv.stop()
    out = r.stdout + r.stderr
    assert oeqa.results(out) == {name: "PASSED" for name in oeqa.TESTS}, out[-6000:]
    assert r.returncode == 0, out[-3000:]


def test_three_power_cuts_leave_a_clean_device(device_image, tmp_path):
    lines: list[str] = []
    results = powercut.run(3, seed=14, workdir=tmp_path, log=lines.append)
    text = "\n".join(lines)
    assert [t.state for t in results] == ["clean"] * 3, text
    assert re.fullmatch(r"powercut: 3 trials, 3 booted, 3 clean, 0 mixed, 0 failed", powercut.summary(results)), text
