"""The test device: three published versions and a bootable disk of version 10.

    image = build(cache)          # cached; rebuilt when the client or this package changes

`image.www[v]` is the published `www/` as it stood right after version v was published (10,
20, 30), `image.disk` a GPT disk whose EFI system partition boots systemd-boot, and
`image.qemuboot` the `<image>.qemuboot.conf` that OE-core's `runqemu` boots it with (QEMU's
user-mode network; the device fetches from http://10.0.2.2:PORT, the host's loopback).
Everything is made as root (debootstrap, chroot, owners in the trees).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import trees
from .trees import run

HERE = Path(__file__).resolve().parent
NAME = "swupd-device"
# The host port the device fetches from (baked into its settings), as the guest sees the host.
PORT = int(os.environ.get("SWUPD_VM_PORT") or 8086)
URL = f"http://10.0.2.2:{PORT}"
VERSIONS = (10, 20, 30)
ESP_MIB, DISK_MIB = 160, 2048
OVMF = "/usr/share/ovmf/OVMF.fd"
HOST_PACKAGES = (
    "debootstrap", "qemu-system-x86", "qemu-utils", "ovmf", "dosfstools", "mtools", "fdisk", "openssh-client",
)  # fmt: skip
SYSTEMD_BOOT = "usr/lib/systemd/boot/efi/systemd-bootx64.efi"


@dataclass
class Image:
    root: Path

    @property
    def deploy(self) -> Path:
        return self.root / "deploy"

    @property
    def disk(self) -> Path:
        return self.deploy / f"{NAME}.wic"

    @property
    def qemuboot(self) -> Path:
        return self.deploy / f"{NAME}.qemuboot.conf"

    def tree(self, version: int) -> Path:
        return self.root / "trees" / str(version)

    def www(self, version: int) -> Path:
        return self.root / f"www-{version}"

    @property
    def public_key(self) -> Path:
        return self.root / "keys" / "release.pub"


def kernel_release(tree: Path) -> str:
    """The release (`uname -r`) of the one kernel a version's tree carries."""
    (release,) = os.listdir(tree / "usr/lib/modules")
    return release


def cache_dir() -> Path:
    return Path(os.environ.get("SWUPD_VM_CACHE") or Path.home() / ".cache" / "meta-swupd" / "vm")


def missing_host_packages() -> list[str]:
    r = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\n", *HOST_PACKAGES],
                       capture_output=True, text=True)  # fmt: skip
    have = {line.split()[0] for line in r.stdout.splitlines() if line.endswith(" installed")}
    return [p for p in HOST_PACKAGES if p not in have]


def provide_host() -> None:
    """QEMU, OVMF, debootstrap and the disk tools, from Debian, when missing (as root)."""
    missing = missing_host_packages()
    if not missing:
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    wait = ("-o", "DPkg::Lock::Timeout=300")  # unattended-upgrades or a parallel test may hold it
    run("apt-get", *wait, "update", "-q", env=env)
    run("apt-get", *wait, "install", "-y", "-q", "--no-install-recommends", *missing, env=env)


def _digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for top in paths:
        for p in sorted(top.rglob("*")) if top.is_dir() else [top]:
            if p.is_file() and "__pycache__" not in p.parts and ".egg-info" not in str(p):
                h.update(str(p.relative_to(top.parent)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def build(cache: Path | None = None, log=print) -> Image:
    """The device's trees, stream and disk, made once per state of the client and this package."""
    if os.geteuid() != 0:
        raise SystemExit("vm-image: building the test device needs root (debootstrap, chroot, owners)")
    cache = cache or cache_dir()
    provide_host()
    with _locked(cache / ".lock"):
        base = cache / "base"
        want_base = hashlib.sha256(repr((trees.SUITE, trees.PACKAGES)).encode()).hexdigest()[:16]
        if (cache / "base.stamp").exists() and (cache / "base.stamp").read_text() == want_base:
            pass
        else:
            log("debootstrap: Debian 12 minbase with the device's packages")
            shutil.rmtree(base, ignore_errors=True)
            trees.debootstrap(base, cache / "debs")
            (cache / "base.stamp").write_text(want_base)
        image = Image(cache / "image")
        # What goes into the trees: the client and its install steps, the layer's rootfs code,
        # the image builder itself.
        client, lib = trees.TOP / "client", trees.TOP / "meta-swupd" / "lib" / "swupdlayer"
        made_by = (client / "swupd", client / "boot", client / "install", client / "man", client / "completion", lib,
                   HERE / "trees.py", HERE / "image.py")  # fmt: skip
        want = f"{want_base}:{PORT}:" + _digest(*made_by)
        stamp = image.root / ".stamp"
        if stamp.exists() and stamp.read_text() == want:
            return image
        shutil.rmtree(image.root, ignore_errors=True)
        image.root.mkdir(parents=True)
        _make(image, base, cache, log)
        stamp.write_text(want)
        return image


def _copy_tree(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    run("cp", "-a", src, dst)


def _make(image: Image, base: Path, cache: Path, log) -> None:
    keys = image.public_key.parent
    keys.mkdir(parents=True)
    server = [str(Path(sys.executable).parent / "swupd-server")]
    run(*server, "keygen", "--private", keys / "release.key", "--public", image.public_key)
    trees.fetch_wheels(cache / "wheels")
    bundles = image.root / "bundles.toml"
    bundles.write_text(trees.BUNDLES_TOML)
    www = image.root / "www"
    for v in VERSIONS:
        tree = image.tree(v)
        if v == 10:
            log("version 10: device settings, the client, a pruned kernel")
            _copy_tree(base, tree)
            trees.prepare_base(tree)
        else:
            _copy_tree(image.tree(v - 10), tree)
            if v == 20:
                log("version 20: another kernel")
                trees.newer_kernel(tree)
            else:
                (tree / "etc/motd").write_text(f"swupd test device, release {v}\n")
        trees.install_swupd(tree, cache / "wheels")
        trees.stamp(tree, v, URL, image.public_key)
        trees.tidy(tree)
        log(f"version {v}: publishing")
        run(*server, "create-update", "--www", www, "--rootfs", tree, "--bundles", bundles, "--version", str(v),
            "--signing-key", keys / "release.key", "--compat", "swupd-device",
            "--cache-dir", image.root / "server-cache")  # fmt: skip
        run("cp", "-a", www, image.www(v))
    log("disk: version 10 on GPT with an EFI system partition")
    make_disk(image.tree(10), image)


def make_disk(tree: Path, image: Image) -> None:
    """GPT: an EFI system partition with systemd-boot, version 10's kernel and a boot entry, as a
    board's image is laid out; then the root file system (ext4, owners and modes kept)."""
    work = image.root / "disk"
    work.mkdir(parents=True, exist_ok=True)
    esp_dir = work / "esp"
    shutil.rmtree(esp_dir, ignore_errors=True)
    (esp_dir / "EFI/BOOT").mkdir(parents=True)
    (esp_dir / "loader/entries").mkdir(parents=True)
    shutil.copy(tree / SYSTEMD_BOOT, esp_dir / "EFI/BOOT/BOOTX64.EFI")
    shutil.copy(tree / "boot" / trees.KERNEL, esp_dir / trees.KERNEL)
    shutil.copy(tree / "boot" / trees.INITRD, esp_dir / trees.INITRD)
    (esp_dir / "loader/loader.conf").write_text("default boot.conf\ntimeout 0\n")
    (esp_dir / "loader/entries/boot.conf").write_text(
        f"title Debian (swupd 10)\nlinux /{trees.KERNEL}\ninitrd /{trees.INITRD}\noptions {trees.CMDLINE}\n"
    )
    esp = work / "esp.img"
    esp.unlink(missing_ok=True)
    run("mkfs.vfat", "-F", "32", "-n", "ESP", "-C", esp, str(ESP_MIB * 1024))
    run("mcopy", "-s", "-i", esp, *sorted(esp_dir.iterdir()), "::")
    root_mib = DISK_MIB - ESP_MIB - 2
    rootfs = work / "root.ext4"
    rootfs.unlink(missing_ok=True)
    run("mkfs.ext4", "-q", "-L", "root", "-d", tree, rootfs, f"{root_mib}M")
    image.deploy.mkdir(parents=True, exist_ok=True)
    disk = image.disk
    disk.unlink(missing_ok=True)
    with open(disk, "wb") as f:
        f.truncate(DISK_MIB << 20)
    layout = (
        "label: gpt\n"
        f"start=2048, size={ESP_MIB * 2048}, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=esp\n"
        f"start={2048 + ESP_MIB * 2048}, size={root_mib * 2048}, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root\n"
    )
    run("sfdisk", "-q", disk, input=layout)
    for part, offset_mib in ((esp, 1), (rootfs, 1 + ESP_MIB)):
        run("dd", f"if={part}", f"of={disk}", "bs=1M", f"seek={offset_mib}", "conv=notrunc,sparse", "status=none")
    shutil.rmtree(esp_dir)
    esp.unlink()
    rootfs.unlink()
    shutil.copy(OVMF, image.deploy / "ovmf.bin")
    write_qemuboot(image.deploy)


def write_qemuboot(deploy: Path, kvm: bool = False) -> Path:
    """The configuration OE-core's runqemu reads for an image it did not build itself."""
    conf = deploy / f"{NAME}.qemuboot.conf"
    conf.write_text(
        "[config_bsp]\n"
        f"deploy_dir_image = {deploy}\n"
        f"image_name = {NAME}\n"
        f"image_link_name = {NAME}\n"
        "machine = qemux86-64\n"
        "qb_system_name = qemu-system-x86_64\n"
        "qb_default_fstype = wic\n"
        "qb_mem = -m 768\n"
        "qb_smp = -smp 2\n"
        "qb_machine = -machine q35\n"
        "qb_cpu = -cpu max\n"
        "qb_cpu_kvm = -cpu host\n"
        "qb_drive_type = /dev/vd\n"
        "qb_network_device = -device virtio-net-pci,netdev=net0,mac=@MAC@\n"
        "qb_rng = -object rng-random,filename=/dev/urandom,id=rng0 -device virtio-rng-pci,rng=rng0\n"
        "qb_serial_opt = -serial mon:stdio -serial null\n"
        "qb_graphics = \n"
        "qb_opt_append = -no-reboot\n"
        f"qb_kernel_cmdline_append = {trees.CMDLINE}\n"
        "serial_consoles = 115200;ttyS0\n"
        "staging_bindir_native = /usr/bin\n"
        "staging_dir_native = /\n"
        "staging_dir_host = /\n"
        "tune_arch = x86_64\n"
    )
    return conf
