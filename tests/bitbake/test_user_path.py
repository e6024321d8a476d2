"""The first build of meta-swupd/README.md as a user takes it on wrynose: a new build directory
from OE-core's template, the layers added with `bitbake-layers add-layer` in the README's order,
conf/local.conf.sample appended. The layers end up as conf/bblayers.conf.sample lists them, and
the image's configuration is what the sample and the README say (where www/ lands, the address
a slirp guest fetches from). Only the configuration and single recipes are parsed."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import oe

IMAGE_RECIPE = "recipes-core/images/ostro-image-swupd.bb"
# The README's first experiment: the layer's development key instead of a key of one's own.
FIRST_EXPERIMENT = 'SWUPD_SIGNING_KEY = ""\nSWUPD_DEV_SIGNING = "1"\n'


def bblayers(conf: Path) -> list[str]:
    text = conf.read_text()
    m = re.search(r'^BBLAYERS \??= "(.*?)"', text, re.M | re.S)
    assert m, text
    return m.group(1).replace("\\\n", " ").split()


def test_the_readmes_first_build(yocto):
    top = yocto.work / "build-userpath"
    shutil.rmtree(top, ignore_errors=True)
    env = f'cd {yocto.oe_core} && . ./oe-init-build-env "$1" >/dev/null && '

    def step(script: str, *args: str):
        return yocto.as_user(env + script, str(top), *map(str, args))

    r = step("bitbake-layers add-layer $2", yocto.meta_oe)
    assert r.returncode == 0, oe.describe(r)
    # Before meta-python the layer is refused: the order of the README matters.
    r = step("bitbake-layers add-layer $2", yocto.layer)
    assert r.returncode != 0 and "meta-python" in r.stdout + r.stderr, oe.describe(r)
    r = step("bitbake-layers add-layer $2 && bitbake-layers add-layer $3", yocto.meta_python, yocto.layer)
    assert r.returncode == 0, oe.describe(r)

    sample = bblayers(oe.TOP / "conf" / "bblayers.conf.sample")
    added = bblayers(top / "conf" / "bblayers.conf")
    assert [Path(p.replace("##OEROOT##", str(yocto.oe_core))).resolve() for p in sample[:3]] == [
        Path(p).resolve() for p in added[:3]
    ]
    # The layer, wherever the user cloned the repository.
    assert [Path(p).name for p in sample[3:]] == [Path(p).name for p in added[3:]] == ["meta-swupd"]

    local = top / "conf" / "local.conf"
    local.write_text(local.read_text() + (oe.TOP / "conf" / "local.conf.sample").read_text() + FIRST_EXPERIMENT)
    r = step("bitbake -e -b $2", yocto.layer / IMAGE_RECIPE)
    assert r.returncode == 0, oe.describe(r)
    image = oe.parse_env(r.stdout)
    assert image["MACHINE"] == "qemux86-64"
    assert image["DEPLOY_DIR_SWUPD"] == f"{top}/tmp/deploy/swupd/qemux86-64/ostro-image-swupd"
    assert image["SWUPD_VERSION_URL"] == image["SWUPD_CONTENT_URL"] == "http://10.0.2.2:8000"
    assert image["TEST_RUNQEMUPARAMS"] == "slirp"
    assert "systemd" in image["DISTRO_FEATURES"].split()
    assert image["SWUPD_BUNDLES"] == "editors net-tools"
