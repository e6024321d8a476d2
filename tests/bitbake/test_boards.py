"""Boards (docs/boards.md). With a layer of collection `intel` (meta-intel; here the stand-in
meta-intel-standin), the layer's dynamic part gives intel-corei7-64 images the post-update hook
that moves each new kernel onto the EFI system partition, and the client's C extensions are
built for the machine's tune; without such a layer that part stays out. The hook itself runs
here as the client runs it, on a tree with an EFI system partition laid out as systemd-boot's."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import oe
import pytest
from swupd.ops.transaction import HOOK_DIRS

STANDIN = "meta-intel-standin"
CONF = 'OS_VERSION = "10"\nSWUPD_DEV_SIGNING = "1"\nIMAGE_FSTYPES = "tar.zst"\n'
HOOK = "50-boot-efi"
INSTALL = oe.TOP / "client" / "install"
CLIENT_RECIPE = "recipes-core/swupd-client/swupd-client_0.1.0.bb"
SYSTEMD_BOOT_VENDOR = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"


@pytest.fixture(scope="module")
def intel(yocto) -> oe.Build:
    layers = [yocto.layer, yocto.test_layer(STANDIN)]
    return yocto.builddir("intel", machine="intel-corei7-64", layers=layers, local_conf=CONF)


def bitbake_env(build: oe.Build, *args: str) -> dict[str, str]:
    r = build.run("bitbake", "-e", *args)
    assert r.returncode == 0, oe.describe(r)
    return oe.parse_env(r.stdout)


def test_intel_corei7_64_gets_the_efi_boot_hook_and_its_tune(intel):
    env = bitbake_env(intel, "swupd-client")
    assert "swupd-boot-efi" in env["RRECOMMENDS:swupd-client"].split()
    env = bitbake_env(intel, "swupd-boot-efi")
    assert env["PACKAGE_ARCH"] == "intel_corei7_64"
    # Installed where the client looks, whatever libdir is.
    assert env["FILES:swupd-boot-efi"].split()[-1] == f"/{HOOK_DIRS[0]}/{HOOK}"
    assert env["SWUPD_EFI_DIR"] == "/efi" and env["KERNEL_IMAGETYPE"] == "bzImage"
    assert env["RDEPENDS:swupd-boot-efi"].split() == ["kernel-image"]
    # The client's C extensions are built for the machine's tune (docs/boards.md).
    env = bitbake_env(intel, "python3-bsdiff4")
    assert env["TUNE_PKGARCH"] == env["PACKAGE_ARCH"] == "corei7-64"
    assert "-march=nehalem" in env["TUNE_CCARGS"].split()


def test_the_intel_image_installs_the_hook_and_a_kernel(intel):
    graph = intel.path / "graph"
    r = intel.run("bash", "-c", 'mkdir -p "$1" && cd "$1" && bitbake -g ostro-image-swupd', "bash", str(graph))
    assert r.returncode == 0, oe.describe(r)
    built = set((graph / "pn-buildlist").read_text().split())
    assert {"swupd-boot-efi", "linux-yocto", "swupd-client"} <= built


def test_without_meta_intel_the_dynamic_part_stays_out(yocto, intel):
    # `bitbake -b` parses one recipe (no whole parse): enough to show what the configuration adds.
    recipe = str(yocto.layer / CLIENT_RECIPE)
    dynamic = str(yocto.layer / "dynamic-layers" / "meta-intel")
    with_intel = bitbake_env(intel, "-b", recipe)
    assert dynamic in with_intel["BBFILES"]
    plain = yocto.builddir("plain-b", layers=[yocto.layer], local_conf=CONF)
    without = bitbake_env(plain, "-b", recipe)
    assert dynamic not in without["BBFILES"]
    assert "swupd-boot-efi" not in without.get("RRECOMMENDS:swupd-client", "")


# The hook, as the recipe installs it for intel-corei7-64, run as the client runs it.


def hook(tmp: Path, *initrd: str) -> Path:
    """The hook as swupd-boot-efi installs it (client/install boot-efi)."""
    dest = tmp / "installed"
    args = ["--efi-dir", "/efi", "--kernel", "bzImage", *(("--initrd", initrd[0]) if initrd else ())]
    subprocess.run(["sh", str(INSTALL), "boot-efi", *args, str(dest)], check=True)
    return dest / HOOK_DIRS[0] / HOOK


def device(tmp: Path) -> Path:
    """A tree as a freshly imaged device has it: a kernel in /boot and the ESP that wic wrote."""
    root = tmp / "root"
    (root / "usr/lib").mkdir(parents=True)
    (root / "boot").mkdir()
    esp = root / "efi"
    (esp / "loader/entries").mkdir(parents=True)
    (esp / "loader/loader.conf").write_text("default boot\ntimeout 5\n")
    (esp / "loader/entries/boot.conf").write_text(
        "title boot\nlinux /bzImage\n"
        "options LABEL=Boot root=PARTUUID=1234 rootwait console=ttyS0\ninitrd /microcode.cpio\n"
    )
    (esp / "bzImage").write_bytes(b"kernel 6.6.1")
    install_kernel(root, "6.6.1", 10)
    return root


def place_boot_file(root: Path, name: str, kver: str, data: bytes) -> None:
    """/boot/<name>-<kver> and the link /boot/<name> to it, as an update leaves them."""
    (root / f"boot/{name}-{kver}").write_bytes(data)
    link = root / f"boot/{name}"
    if link.is_symlink():
        link.unlink()
    link.symlink_to(f"{name}-{kver}")


def install_kernel(root: Path, kver: str, version: int) -> str:
    """What an update does: a new /boot/bzImage-<kver>, the link to it, and os-release."""
    data = f"kernel {kver}".encode()
    place_boot_file(root, "bzImage", kver, data)
    (root / "usr/lib/os-release").write_text(f'NAME="Poky"\nVERSION_ID="{version}"\n')
    return "swupd-" + hashlib.sha256(data).hexdigest()[:16]


def run(hook_path: Path, root: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SWUPD_ROOT": str(root)}
    return subprocess.run(["/bin/sh", str(hook_path)], env=env, capture_output=True, text=True, timeout=60)


def snapshot(esp: Path) -> dict[str, bytes]:
    return {str(p.relative_to(esp)): p.read_bytes() for p in sorted(esp.rglob("*")) if p.is_file()}


def entry(esp: Path, ident: str) -> dict[str, str]:
    lines = (esp / f"loader/entries/{ident}.conf").read_text().splitlines()
    return dict(line.split(" ", 1) for line in lines)


def test_the_hook_makes_the_new_kernel_the_default_and_keeps_the_way_back(tmp_path):
    h, root = hook(tmp_path), device(tmp_path)
    esp = root / "efi"
    first = install_kernel(root, "6.6.2", 20)
    r = run(h, root)
    assert r.returncode == 0, r.stderr
    e = entry(esp, first)
    assert e["title"] == "Poky 20"
    assert (esp / e["linux"].lstrip("/")).read_bytes() == b"kernel 6.6.2"
    # The options and the microcode of the entry that was the default.
    assert e["options"] == "LABEL=Boot root=PARTUUID=1234 rootwait console=ttyS0"
    assert e["initrd"] == "/microcode.cpio"
    assert (esp / "loader/loader.conf").read_text() == f"default {first}.conf\ntimeout 5\n"
    assert (esp / "loader/entries/boot.conf").exists() and (esp / "bzImage").exists()
    assert not [p for p in esp.rglob("*.tmp")]

    # After every update: with the same kernel it changes nothing.
    before = snapshot(esp)
    assert run(h, root).returncode == 0
    assert snapshot(esp) == before

    second = install_kernel(root, "6.6.3", 30)
    assert run(h, root).returncode == 0
    assert (esp / "loader/loader.conf").read_text().splitlines()[0] == f"default {second}.conf"
    assert entry(esp, second)["options"] == "LABEL=Boot root=PARTUUID=1234 rootwait console=ttyS0"
    assert (esp / f"loader/entries/{first}.conf").exists()  # the way back

    third = install_kernel(root, "6.6.4", 40)
    assert run(h, root).returncode == 0
    names = sorted(p.name for p in (esp / "loader/entries").iterdir())
    assert names == sorted(["boot.conf", f"{second}.conf", f"{third}.conf"])
    kernels = sorted(p.read_bytes() for p in (esp / "swupd").iterdir())
    assert kernels == [b"kernel 6.6.3", b"kernel 6.6.4"]

    # The device runs the second kernel, picked from the menu; the default is the third. The
    # next update keeps the entry it booted as well.
    efivars = root / "sys/firmware/efi/efivars"
    efivars.mkdir(parents=True)
    (efivars / f"LoaderEntrySelected-{SYSTEMD_BOOT_VENDOR}").write_bytes(
        b"\x06\x00\x00\x00" + f"{second}.conf\0".encode("utf-16-le")
    )
    fourth = install_kernel(root, "6.6.5", 50)
    assert run(h, root).returncode == 0
    names = sorted(p.name for p in (esp / "loader/entries").iterdir())
    assert names == sorted(["boot.conf", f"{second}.conf", f"{third}.conf", f"{fourth}.conf"])
    assert (esp / "loader/loader.conf").read_text().splitlines()[0] == f"default {fourth}.conf"


def test_the_hook_leaves_a_tree_without_an_efi_partition_alone(tmp_path):
    h, root = hook(tmp_path), tmp_path / "tree"
    (root / "boot").mkdir(parents=True)
    (root / "usr/lib").mkdir(parents=True)
    install_kernel(root, "6.6.1", 10)
    r = run(h, root)
    assert r.returncode == 0, r.stderr
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == sorted(
        ["boot", "boot/bzImage", "boot/bzImage-6.6.1", "usr", "usr/lib", "usr/lib/os-release"]
    )


def test_the_hook_fails_without_a_kernel_in_boot(tmp_path):
    h, root = hook(tmp_path), device(tmp_path)
    (root / "boot/bzImage").unlink()
    r = run(h, root)
    assert r.returncode != 0 and "no kernel at" in r.stderr
    assert (root / "efi/loader/loader.conf").read_text() == "default boot\ntimeout 5\n"



def test_the_hook_places_the_initramfs_a_kernel_boots_with(tmp_path):
    """A kernel that needs an initramfs (SWUPD_BOOT_INITRD, a distribution kernel such as the test
    device's) gets the one beside it in /boot, in place of the template's, named by the pair's
    hash; entries that go take their initramfs with them."""
    h, root = hook(tmp_path, "initrd.img"), device(tmp_path)
    esp = root / "efi"

    def kernel_and_initrd(kver: str, version: int) -> str:
        install_kernel(root, kver, version)
        data = f"initramfs {kver}".encode()
        place_boot_file(root, "initrd.img", kver, data)
        return "swupd-" + hashlib.sha256(f"kernel {kver}".encode() + data).hexdigest()[:16]

    first = kernel_and_initrd("6.6.2", 20)
    r = run(h, root)
    assert r.returncode == 0, r.stderr
    lines = (esp / f"loader/entries/{first}.conf").read_text().splitlines()
    initrds = [line.split(" ", 1)[1] for line in lines if line.startswith("initrd ")]
    assert initrds == [f"/swupd/initrd.img-{first[6:]}"]
    assert (esp / initrds[0].lstrip("/")).read_bytes() == b"initramfs 6.6.2"
    kernel_and_initrd("6.6.3", 30)
    assert run(h, root).returncode == 0
    kernel_and_initrd("6.6.4", 40)
    assert run(h, root).returncode == 0
    assert sorted(p.read_bytes() for p in (esp / "swupd").iterdir() if p.name.startswith("initrd")) == [
        b"initramfs 6.6.3", b"initramfs 6.6.4"
    ]
    (root / "boot/initrd.img").unlink()
    r = run(h, root)
    assert r.returncode != 0 and "no initramfs at" in r.stderr
