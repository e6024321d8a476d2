"""meta-swupd in a real OE-core build (wrynose, meta-oe, meta-python; MACHINE qemux86-64, and
qemux86 for the 32-bit class of Edison and Galileo): the layer is accepted, the image's variables
have their documented values, the whole task graph of ostro-image-swupd resolves, and the stream
is published after the image and the native server."""

from __future__ import annotations

import re

import oe
import pytest

IMAGE = "ostro-image-swupd"
CONF = 'OS_VERSION = "10"\nSWUPD_DEV_SIGNING = "1"\n'


@pytest.fixture(scope="module", params=["qemux86-64", "qemux86"])
def build(yocto, request) -> oe.Build:
    machine = request.param
    name = "main" if machine == "qemux86-64" else f"main-{machine}"
    return yocto.builddir(name, machine=machine, layers=[yocto.layer], local_conf=CONF)


def test_bitbake_layers_accepts_the_layer(yocto):
    r = yocto.builddir("main", layers=[yocto.layer], local_conf=CONF).run("bitbake-layers", "show-layers")
    assert r.returncode == 0, oe.describe(r)
    assert re.search(r"^meta-swupd\s+\S+/meta-swupd\s+6$", r.stdout, re.M), oe.describe(r)


def test_image_variables_have_their_documented_values(build):
    r = build.run("bitbake", "-e", IMAGE)
    assert r.returncode == 0, oe.describe(r)
    env = oe.parse_env(r.stdout)
    machine = env["MACHINE"]
    assert env["SWUPD_COMPAT"] == machine
    assert env["SWUPD_STREAM"] == f"{IMAGE}-{machine}"
    assert env["SWUPD_BUNDLES"] == "editors net-tools"
    assert env["DEPLOY_DIR_SWUPD"] == f"{env['DEPLOY_DIR']}/swupd/{machine}/{IMAGE}"
    assert env["SWUPD_FORMAT"] == "1" and env["SWUPD_DELTAPACK_COUNT"] == "2"
    assert {"swupd-client", "vim-tiny", "iproute2", "curl"} <= set(env["IMAGE_INSTALL"].split())
    assert "swupd_rootfs_config" in env["ROOTFS_POSTPROCESS_COMMAND"]


def test_the_whole_task_graph_resolves(build):
    r = build.run("bitbake", "-n", IMAGE)
    assert r.returncode == 0, oe.describe(r)


def test_publishing_comes_after_the_image_and_the_native_server(build, tmp_path):
    r = build.run("bash", "-c", f'mkdir -p "$1" && cd "$1" && bitbake -g {IMAGE}', "bash", str(build.path / "graph"))
    assert r.returncode == 0, oe.describe(r)
    deps = (build.path / "graph" / "task-depends.dot").read_text()

    def edges(task: str) -> set[str]:
        return set(re.findall(rf'^"{re.escape(task)}" -> "([^"]+)"', deps, re.M))

    update = edges(f"{IMAGE}.do_swupd_update")
    assert f"{IMAGE}.do_image_complete" in update
    assert "swupd-server-native.do_populate_sysroot" in update
    # Without SWUPD_PUBLIC_KEYS the rootfs step derives the public key with the native server.
    assert "swupd-server-native.do_populate_sysroot" in edges(f"{IMAGE}.do_rootfs")
    assert f"{IMAGE}.do_swupd_update" in edges(f"{IMAGE}.do_build")
