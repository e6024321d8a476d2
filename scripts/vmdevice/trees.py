"""The test device's root file systems, versions 10, 20 and 30, made from Debian packages.

A Yocto image cannot be built offline on two cores, so the device's OS is Debian 12 (debootstrap
minbase with systemd, sshd and Debian's cloud kernel and initramfs). What makes it a swupd
device is what the layer puts into an image: the client installed by `client/install` (the
steps the swupd-client recipe runs), the post-update hook that boots each new kernel from the
EFI system partition (`client/install boot-efi`, as swupd-boot-efi installs it), and the
client's settings, the bundle markers and VERSION_ID by what the layer's rootfs step runs
(`swupd-server prepare-rootfs`). Version 20
brings another kernel (the newest bookworm kernel, or the generic flavour where the suite has
no newer one); version 30 changes one file.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from swupd_server import image as server_image

TOP = Path(__file__).resolve().parents[2]

SUITE = "bookworm"
PACKAGES = (
    "systemd", "systemd-sysv", "udev", "dbus", "kmod", "iproute2", "procps", "less",
    "openssh-server", "initramfs-tools", "linux-image-cloud-amd64", "systemd-boot-efi",
    "python3", "python3-cffi-backend", "python3-nacl",
)  # fmt: skip
# The client's dependencies that Debian 12 lacks or ships too old, as wheels meeting the
# client's own requirements (bookworm's Python is 3.11, as the wheels are).
WHEELS = ("bsdiff4>=1.3", "zstandard>=0.21", "requests>=2.28", "urllib3>=2", "idna", "charset-normalizer", "certifi",
          "tqdm>=4.60")  # fmt: skip
# What the kernel needs on this virtual machine; every other module goes, so a kernel update
# moves megabytes rather than a whole driver tree.
MODULES = ("virtio_pci", "virtio_blk", "virtio_net", "virtio_rng", "vfat", "nls_cp437", "nls_ascii", "efivarfs")
SITE = "/usr/lib/python3/dist-packages"
EFI_DIR = "/efi"
KERNEL, INITRD = "vmlinuz", "initrd.img"
BUNDLES_TOML = """\
# The test device's bundles: everything else is os-core.
[bundle.pager]
paths = ["/usr/bin/less", "/usr/bin/lessecho", "/usr/bin/lessfile", "/usr/bin/lesskey", "/usr/bin/lesspipe"]
"""
# no_timer_check: under TCG on a loaded host the kernel's early check of the timer interrupt can
# fail and panic ("IO-APIC + timer doesn't work"), as one power-cut trial's boot did; virtual
# machines skip that check, as cloud images do.
CMDLINE = "root=LABEL=root rw console=ttyS0,115200 quiet no_timer_check"


def run(*cmd: str | Path, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise SystemExit(f"vm-image: {' '.join(map(str, cmd[:4]))} failed:\n{(r.stdout + r.stderr)[-3000:]}")
    return r


def mirrors() -> tuple[str, str]:
    """The Debian mirror and the security mirror this host's apt uses."""
    main, security = "http://deb.debian.org/debian", "http://deb.debian.org/debian-security"
    texts = []
    for d in ("/etc/apt/sources.list.d",):
        if os.path.isdir(d):
            texts += [Path(d, f).read_text() for f in sorted(os.listdir(d)) if f.endswith((".sources", ".list"))]
    if os.path.exists("/etc/apt/sources.list"):
        texts.append(Path("/etc/apt/sources.list").read_text())
    for uri in re.findall(r"(?:^URIs:\s*|^deb\s+(?:\[[^]]*\]\s+)?)(\S+)", "\n".join(texts), re.M):
        if uri.rstrip("/").endswith("-security"):
            security = uri.rstrip("/")
        elif "debian" in uri:
            main = uri.rstrip("/")
    return main, security


class Chroot:
    """A tree with /proc, /dev and /sys mounted, for dpkg and apt inside it."""

    def __init__(self, root: Path):
        self.root = root
        self.mounted: list[Path] = []

    def __enter__(self) -> Chroot:
        for fs, target, opts in (("proc", "proc", []), ("devtmpfs", "dev", []), ("sysfs", "sys", [])):
            path = self.root / target
            path.mkdir(exist_ok=True)
            run("mount", "-t", fs, *opts, fs, path)
            self.mounted.append(path)
        shutil.copy("/etc/resolv.conf", self.root / "etc/resolv.conf")
        # No service starts in the tree.
        policy = self.root / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        return self

    def __exit__(self, *exc: object) -> None:
        for path in reversed(self.mounted):
            subprocess.run(["umount", "-l", str(path)], check=False)
        (self.root / "usr/sbin/policy-rc.d").unlink(missing_ok=True)
        (self.root / "etc/resolv.conf").unlink(missing_ok=True)

    def __call__(self, *cmd: str) -> subprocess.CompletedProcess:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
        return run("chroot", self.root, *cmd, env=env)


def debootstrap(target: Path, debs: Path) -> None:
    """Debian 12 minbase with the device's packages (the bookworm suite alone)."""
    main, _ = mirrors()
    debs.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    run("debootstrap", "--variant=minbase", f"--cache-dir={debs}", f"--include={','.join(PACKAGES)}", SUITE, tmp, main)
    tmp.rename(target)


def kernels(root: Path) -> list[str]:
    return sorted(os.listdir(root / "usr/lib/modules"))


def _prune_modules(ch: Chroot) -> None:
    """Only the modules the virtual machine needs, then a fresh initramfs for each kernel."""
    for release in kernels(ch.root):
        keep: set[str] = set()
        for mod in MODULES:
            out = ch("modprobe", "-S", release, "--show-depends", mod).stdout
            keep |= {os.path.realpath(ch.root / line.split()[1].lstrip("/"))
                     for line in out.splitlines() if line.startswith("insmod ")}  # fmt: skip
        base = ch.root / "usr/lib/modules" / release / "kernel"
        for path in list(base.rglob("*.ko*")):
            if os.path.realpath(path) not in keep:
                path.unlink()
        ch("depmod", release)
    ch("update-initramfs", "-u", "-k", "all")


def _boot_links(root: Path) -> None:
    """/boot/vmlinuz and /boot/initrd.img name the one kernel the tree carries (what the
    boot hook copies onto the EFI system partition)."""
    (release,) = kernels(root)
    for name in ("vmlinuz", "vmlinuz.old", "initrd.img", "initrd.img.old"):
        for d in (root, root / "boot"):
            if (d / name).is_symlink():
                (d / name).unlink()
    (root / "boot" / KERNEL).symlink_to(f"vmlinuz-{release}")
    (root / "boot" / INITRD).symlink_to(f"initrd.img-{release}")


# Documentation an image leaves out, as OE's images do without their -doc and -locale packages.
DOCS = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale")


def tidy(root: Path) -> None:
    """What is the build's and not the OS's: caches, logs, machine identity, documentation."""
    # /dev is devtmpfs on the device (OE's images ship it empty too), /run and /tmp are tmpfs.
    for rel in ("dev", "run", "tmp", "var/cache/apt", "var/lib/apt/lists", "var/log", *DOCS):
        p = root / rel
        if p.is_dir():
            for child in p.iterdir():
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    # A machine id of its own: without one, systemd's first boot applies Debian's presets, which
    # enable every unit with an [Install] section, the automatic-update timer among them.
    _write(root, "etc/machine-id", hashlib.sha256(b"swupd test device").hexdigest()[:32] + "\n", 0o444)
    for pyc in root.glob("usr/lib/python3*/**/__pycache__"):
        if "dist-packages/swupd" not in str(pyc):
            shutil.rmtree(pyc)


def _write(root: Path, rel: str, text: str, mode: int = 0o644) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def configure(root: Path) -> None:
    """The device's own settings: network, sshd for the tests, the ESP mount, the timer."""
    _write(root, "etc/hostname", "swupd-device\n")
    _write(root, "etc/fstab", f"LABEL=root / ext4 rw,errors=remount-ro 0 1\nLABEL=ESP {EFI_DIR} vfat umask=0077 0 2\n")
    (root / EFI_DIR.lstrip("/")).mkdir(exist_ok=True)
    _write(root, "etc/systemd/network/80-wired.network", "[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n")
    # The tests log in as root without a password, as OE's debug images allow.
    _write(root, "etc/ssh/sshd_config.d/test-device.conf", "PermitRootLogin yes\nPermitEmptyPasswords yes\nUseDNS no\n")
    # Automatic updates come 15 s after `swupd autoupdate --enable` rather than hours later.
    _write(root, "etc/systemd/system/swupd-update.timer.d/test-device.conf",
           "[Timer]\nOnActiveSec=15s\nRandomizedDelaySec=0\n")  # fmt: skip
    _write(root, "etc/kernel-img.conf", "do_symlinks = yes\nlink_in_boot = yes\n")
    with Chroot(root) as ch:
        ch("passwd", "-d", "root")
        ch("systemctl", "enable", "systemd-networkd", "ssh")


def install_swupd(root: Path, wheels: Path) -> None:
    """The client as the swupd-client recipe installs it, and the boot hook as swupd-boot-efi
    does: both by `client/install`, run inside the tree with the tree's own Python."""
    src = root / "tmp/swupd-src"
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(TOP / "client", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    with Chroot(root) as ch:
        ch("sh", "/tmp/swupd-src/install", "client", "--python", "python3", "--sitedir", SITE, "/")
        ch("sh", "/tmp/swupd-src/install", "boot-efi", "--efi-dir", EFI_DIR, "--kernel", KERNEL,
           "--initrd", INITRD, "/")  # fmt: skip
    shutil.rmtree(src)
    for whl in sorted(wheels.glob("*.whl")):
        run(sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--upgrade",
            "--target", root / SITE.lstrip("/"), whl)  # fmt: skip
    shutil.rmtree(root / SITE.lstrip("/") / "bin", ignore_errors=True)  # the wheels' own commands


def fetch_wheels(target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    run(sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", "3.11",
        "--platform", "manylinux2014_x86_64", "--implementation", "cp", "-d", target, *WHEELS)  # fmt: skip


def stamp(root: Path, version: int, url: str, public_key: Path) -> None:
    """What swupd-image's rootfs step writes: client settings, bundle markers, VERSION_ID."""
    settings = server_image.ClientSettings(url, url, 1, "swupd-device", public_keys=[str(public_key)])
    server_image.prepare(str(root), version, ["pager"], settings)


def newer_kernel(root: Path) -> None:
    """Version 20's kernel: the newest of bookworm with its updates and security fixes, or, if
    that is the kernel version 10 has, the generic flavour of it (another build)."""
    main, security = mirrors()
    old = kernels(root)
    suites = (f"{main} {SUITE}", f"{main} {SUITE}-updates", f"{security} {SUITE}-security")
    _write(root, "etc/apt/sources.list", "".join(f"deb {s} main\n" for s in suites))
    with Chroot(root) as ch:
        ch("apt-get", "update", "-q")
        ch("apt-get", "install", "-y", "-q", "--no-install-recommends", "linux-image-cloud-amd64")
        if kernels(root) == old:
            ch("apt-get", "install", "-y", "-q", "--no-install-recommends", "linux-image-amd64")
        for release in old:
            ch("apt-get", "purge", "-y", "-q", f"linux-image-{release}")
        ch("apt-get", "clean")
        _prune_modules(ch)
    _write(root, "etc/apt/sources.list", f"deb {main} {SUITE} main\n")
    _boot_links(root)


def prepare_base(root: Path) -> None:
    """Version 10 before its VERSION_ID and settings: pruned kernel, links, device settings."""
    configure(root)
    with Chroot(root) as ch:
        _prune_modules(ch)
    _boot_links(root)
