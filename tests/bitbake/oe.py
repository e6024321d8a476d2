"""Upstream BitBake and OpenEmbedded-Core for the layer's tests, run as a build would run them.

The sources are the pinned upstream release tarballs in ``../shared/yocto`` (or
``$SWUPD_YOCTO_SOURCES``), unpacked as they are. BitBake refuses to run as root and needs the
``en_US.UTF-8`` locale and Yocto's Debian host packages, so when the tests run as root they
first install those packages, generate the locale and create an unprivileged build user; as any
other user they need all of that present already.

Everything BitBake keeps between runs (the unpacked sources, a copy of the layer under test and
the build directories with their parse caches, per checkout) lives outside the clone, in
``$SWUPD_YOCTO_CACHE``, else the build user's ``${XDG_CACHE_HOME:-~/.cache}/meta-swupd/yocto``:
a cold parse of OE-core with meta-oe and meta-python takes minutes, a warm one seconds.

    oe = Yocto.provide("wrynose")                    # raises Unavailable when it cannot
    build = oe.builddir("main", machine="qemux86-64", layers=[oe.layer])
    r = build.run("bitbake", "-e", "ostro-image-swupd")
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pwd
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]
BUILD_USER = "swupd-build"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
FULL = "SWUPD_YOCTO_FULL"

# Every build configuration costs a cold parse, and a world signature run grows with the number
# of recipes: meta-oe and meta-python are masked down to the recipes the layer needs (libsodium,
# PyNaCl, zstandard, tqdm). Both layers stay real and enabled; SWUPD_YOCTO_FULL=1 parses all of
# them.
MASK_UNNEEDED = (
    'BBMASK += "/meta-openembedded/meta-oe/recipes-(?!crypto/libsodium/)"\n'
    'BBMASK += "/meta-openembedded/meta-python/recipes-'
    '(?!devtools/python3-zstandard/|devtools/python/python3-(pynacl|tqdm)_)"\n'
    'BBMASK += "/meta-openembedded/meta-(oe|python)/dynamic-layers/"\n'
)

# Release tarballs per series, each unpacking into one folder.
SERIES: dict[str, tuple[str, ...]] = {
    "wrynose": (
        "bitbake-yocto-6.0.2.tar.xz",
        "openembedded-core-yocto-6.0.2.tar.xz",
        "meta-openembedded-wrynose-6bf0d8ad57.tar.xz",
    ),
}

# Yocto's documented host packages for Debian, and Debian's pseudo for fakeroot tasks.
HOST_PACKAGES = (
    "build-essential", "chrpath", "cpio", "debianutils", "diffstat", "file", "gawk", "gcc", "git",
    "iputils-ping", "libacl1", "locales", "lz4", "pseudo", "python3", "python3-git", "python3-jinja2",
    "python3-pexpect", "python3-pip", "python3-subunit", "socat", "texinfo", "unzip", "wget",
    "xz-utils", "zstd",
)  # fmt: skip

# The parts of the repository a layer user has: the layer and the sources its recipes build.
REPO_PARTS = ("meta-swupd", "client", "server-lib", "conf", "LICENSE", "README.md", "SECURITY.md")
_IGNORED = {"__pycache__", ".pytest_cache", ".ruff_cache"}


# Debian's pseudo as FAKEROOTCMD: OE's pseudo-native cannot be built offline. This pseudo is
# older than OE's and knows PSEUDO_IGNORE_PATHS, not PSEUDO_INCLUDE_PATHS, so it is told which
# paths not to track: the ones OE-core ignored before it named the tracked ones instead.
PSEUDO_CONF = """
FAKEROOTCMD = "/usr/bin/pseudo"
PSEUDO_DEBIAN = "PSEUDO_PREFIX=/usr PSEUDO_BINDIR=/usr/bin PSEUDO_LIBDIR={libdir} \\
    PSEUDO_IGNORE_PATHS=${{@oe.path.canonicalize(d.getVar('PSEUDO_IGNORE_PATHS'))}}"
FAKEROOTBASEENV = "${{PSEUDO_DEBIAN}} PSEUDO_DISABLED=1 PYTHONDONTWRITEBYTECODE=1"
FAKEROOTENV = "${{PSEUDO_DEBIAN}} PSEUDO_LOCALSTATEDIR=${{PSEUDO_LOCALSTATEDIR}} PSEUDO_PASSWD=${{PSEUDO_PASSWD}} \\
    PSEUDO_NOSYMLINKEXP=1 PSEUDO_DISABLED=0"
PSEUDO_IGNORE_PATHS = "/usr/,/etc/,/lib,/dev/,/run/,${{T}},${{WORKDIR}}/recipe-sysroot,${{SSTATE_DIR}},\\
${{STAMPS_DIR}},${{WORKDIR}}/pkgdata-sysroot,${{TMPDIR}}/sstate-control,${{DEPLOY_DIR}},${{WORKDIR}}/deploy-,\\
${{TMPDIR}}/buildstats,${{WORKDIR}}/sstate-build-package_,${{WORKDIR}}/sstate-install-package_,\\
${{WORKDIR}}/sstate-build-image_complete,${{TMPDIR}}/sysroots-components,${{TMPDIR}}/pkgdata,\\
${{TOPDIR}}/cache,${{COREBASE}}/scripts"
"""


def pseudo_conf() -> str:
    """local.conf lines that run fakeroot tasks under Debian's pseudo (raises Unavailable)."""
    libs = sorted(Path("/usr/lib").glob("*/pseudo/libpseudo.so"))
    if not Path("/usr/bin/pseudo").is_file() or not libs:
        raise Unavailable("Debian's pseudo is not installed (/usr/bin/pseudo, /usr/lib/<arch>/pseudo)")
    return PSEUDO_CONF.format(libdir=libs[0].parent)


class Unavailable(Exception):
    """The tier cannot run on this machine; the message says what is missing."""


def sources_dir() -> Path:
    """$SWUPD_YOCTO_SOURCES, else the first `shared/yocto` beside the clone or a folder above it
    (a clone at /work/main and a worktree at /work/wt/name both find /work/shared/yocto)."""
    if os.environ.get("SWUPD_YOCTO_SOURCES"):
        return Path(os.environ["SWUPD_YOCTO_SOURCES"])
    for parent in TOP.parents:
        if (parent / "shared" / "yocto").is_dir():
            return parent / "shared" / "yocto"
    return TOP.parent / "shared" / "yocto"


def _run_root(*cmd: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)


def _missing_packages() -> list[str]:
    r = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\n", *HOST_PACKAGES],
        capture_output=True,
        text=True,
    )
    installed = {line.split()[0] for line in r.stdout.splitlines() if line.endswith(" installed")}
    return [p for p in HOST_PACKAGES if p not in installed]


def _have_locale() -> bool:
    r = subprocess.run(["locale", "-a"], capture_output=True, text=True)
    return any(n.lower().replace("-", "") == "en_us.utf8" for n in r.stdout.split())


def _provision_host() -> None:
    """As root: Yocto's host packages, the en_US.UTF-8 locale and the build user."""
    missing = _missing_packages()
    if missing:
        r = _run_root("apt-get", "install", "-y", "-q", "--no-install-recommends", *missing)
        if r.returncode != 0:
            _run_root("apt-get", "update", "-q")
            r = _run_root("apt-get", "install", "-y", "-q", "--no-install-recommends", *missing)
        if r.returncode != 0:
            raise Unavailable(f"cannot install Yocto's host packages {missing}: {r.stderr.strip()[-400:]}")
    if not _have_locale():
        gen = Path("/etc/locale.gen")
        text = gen.read_text() if gen.exists() else ""
        if not re.search(r"^en_US\.UTF-8 UTF-8", text, re.M):
            gen.write_text(text + "en_US.UTF-8 UTF-8\n")
        r = _run_root("locale-gen")
        if r.returncode != 0 or not _have_locale():
            raise Unavailable(f"cannot generate the en_US.UTF-8 locale: {r.stderr.strip()[-400:]}")
    try:
        pwd.getpwnam(BUILD_USER)
    except KeyError:
        r = _run_root("useradd", "--create-home", "--shell", "/bin/bash", BUILD_USER)
        if r.returncode != 0:
            raise Unavailable(f"cannot create the build user {BUILD_USER}: {r.stderr.strip()}") from None


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, gid)


def _sync(src: Path, dst: Path) -> None:
    """Make `dst` a copy of `src`, keeping modification times and leaving unchanged files alone,
    so that BitBake's caches of the copy stay valid between runs."""
    if src.is_file():
        key = (src.stat().st_mtime_ns, src.stat().st_size)
        same = dst.exists() and (dst.stat().st_mtime_ns, dst.stat().st_size) == key
        if not same:
            shutil.copy2(src, dst)
        return
    dst.mkdir(parents=True, exist_ok=True)
    wanted = {p.name for p in src.iterdir() if p.name not in _IGNORED}
    for extra in set(os.listdir(dst)) - wanted:
        target = dst / extra
        shutil.rmtree(target) if target.is_dir() and not target.is_symlink() else target.unlink()
    for name in sorted(wanted):
        s, d = src / name, dst / name
        if s.is_symlink():
            if d.is_symlink() and os.readlink(d) == os.readlink(s):
                continue
            if d.exists() or d.is_symlink():
                shutil.rmtree(d) if d.is_dir() and not d.is_symlink() else d.unlink()
            os.symlink(os.readlink(s), d)
        elif s.is_dir():
            if d.exists() and not d.is_dir():
                d.unlink()
            _sync(s, d)
        else:
            if d.is_dir() and not d.is_symlink():
                shutil.rmtree(d)
            _sync(s, d)


@dataclass
class Build:
    """One build directory of one series, run as the build user, one BitBake at a time."""

    yocto: Yocto
    path: Path

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Only one BitBake server may use a build directory; test processes take turns."""
        with open(self.path.parent / f".{self.path.name}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def run(self, *cmd: str, env: Mapping[str, str] | None = None, timeout: int = 3600) -> subprocess.CompletedProcess:
        """Runs `cmd` in the build environment OE-core's oe-init-build-env sets up; the names in
        `env` are passed through to BitBake (BB_ENV_PASSTHROUGH_ADDITIONS)."""
        with self.locked():
            return self.yocto.as_user(
                f"cd {self.yocto.oe_core} && . ./oe-init-build-env {self.path} >/dev/null && exec \"$@\"",
                *cmd,
                env=env,
                timeout=timeout,
            )


@dataclass
class Yocto:
    """One series' upstream sources, unpacked, with the layer under test beside them."""

    series: str
    root: Path
    user: pwd.struct_passwd

    @property
    def oe_core(self) -> Path:
        return self.root / "openembedded-core"

    @property
    def meta_oe(self) -> Path:
        return self.root / "meta-openembedded" / "meta-oe"

    @property
    def meta_python(self) -> Path:
        return self.root / "meta-openembedded" / "meta-python"

    @property
    def work(self) -> Path:
        """This checkout's own layer copy and build directories (worktrees do not share them)."""
        return self.root / "checkouts" / hashlib.sha256(str(TOP).encode()).hexdigest()[:12]

    @property
    def repo(self) -> Path:
        """A copy of the repository's parts a layer user clones, as a git work tree."""
        return self.work / "repo"

    @property
    def layer(self) -> Path:
        return self.repo / "meta-swupd"

    @classmethod
    def provide(cls, series: str = "wrynose") -> Yocto:
        """The series unpacked and the layer copied, ready for builds (raises Unavailable)."""
        tarballs = [sources_dir() / t for t in SERIES[series]]
        absent = [str(t) for t in tarballs if not t.is_file()]
        if absent:
            raise Unavailable(f"upstream Yocto sources not found: {', '.join(absent)}")
        if os.geteuid() == 0:
            with _host_lock():
                _provision_host()
            user = pwd.getpwnam(BUILD_USER)
        else:
            user = pwd.getpwuid(os.geteuid())
            if missing := _missing_packages():
                raise Unavailable(f"Yocto's host packages are missing (run the tests as root once): {missing}")
            if not _have_locale():
                raise Unavailable("the en_US.UTF-8 locale is missing (run the tests as root once)")
        cache = os.environ.get("SWUPD_YOCTO_CACHE")
        if cache:
            base = Path(cache)
        else:
            xdg = os.environ.get("XDG_CACHE_HOME") if os.geteuid() != 0 else None
            base = Path(xdg or Path(user.pw_dir) / ".cache") / "meta-swupd" / "yocto"
        yocto = cls(series, base / series, user)
        with yocto._lock("setup"):
            yocto._unpack(tarballs)
            yocto._copy_layer()
        return yocto

    @contextlib.contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        self._own(self.root.parent)
        self._own(self.root)
        with open(self.root / f".{name}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _own(self, path: Path, tree: bool = False) -> None:
        if os.geteuid() == 0:
            if tree:
                _chown_tree(path, self.user.pw_uid, self.user.pw_gid)
            else:
                os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def _unpack(self, tarballs: list[Path]) -> None:
        stamp = self.root / ".unpacked"
        want = "\n".join(t.name for t in tarballs) + "\n"
        if stamp.exists() and stamp.read_text() == want:
            return
        for t in tarballs:
            r = subprocess.run(["tar", "-C", str(self.root), "-xJf", str(t)], capture_output=True, text=True)
            if r.returncode != 0:
                raise Unavailable(f"cannot unpack {t}: {r.stderr.strip()}")
        self._own(self.root, tree=True)
        stamp.write_text(want)

    def _copy_layer(self) -> None:
        """The build user may not be able to read the clone (under /root, say), so the layer
        runs from a copy: the repository parts a user clones, in a git work tree of their own
        (yocto-check-layer looks for SECURITY.md at the top of the layer's repository)."""
        self.repo.mkdir(parents=True, exist_ok=True)
        self._own(self.work.parent)
        self._own(self.work)
        for part in REPO_PARTS:
            src = TOP / part
            if src.exists():
                _sync(src, self.repo / part)
        for extra in set(os.listdir(self.repo)) - set(REPO_PARTS) - {".git"}:
            target = self.repo / extra
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        self._own(self.repo, tree=True)
        if not (self.repo / ".git").exists():
            self.as_user("git init -q . && git add -A && git -c user.name=t -c user.email=t@localhost commit -qm layer",
                         cwd=self.repo, check=True)  # fmt: skip

    def test_layer(self, name: str) -> Path:
        """The layer `name` of tests/bitbake, copied into this checkout's work directory."""
        return self.copy(TOP / "tests" / "bitbake" / name, f"layers/{name}")

    def hand_over(self, path: Path) -> None:
        """Gives a tree the tests made (as root) to the build user, which BitBake runs as."""
        self._own(path, tree=True)

    def copy(self, src: Path, name: str) -> Path:
        """A copy of `src` (a test layer, say) in this checkout's work directory, owned by the
        build user, updated in place so that BitBake's caches of it stay valid (the build user
        may not be able to read the clone)."""
        dst = self.work / name
        with self._lock("setup"):
            _sync(src, dst)
            self._own(dst.parent)
            self._own(dst, tree=True)
        return dst

    def as_user(
        self,
        script: str,
        *args: str,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        timeout: int = 3600,
        check: bool = False,
    ) -> subprocess.CompletedProcess:
        """Runs a shell script as the build user in a clean environment, as a developer's shell."""
        base = {
            "HOME": self.user.pw_dir,
            "USER": self.user.pw_name,
            "LANG": "en_US.UTF-8",
            "LC_ALL": "en_US.UTF-8",
            "PATH": SYSTEM_PATH,
            "SHELL": "/bin/bash",
        }
        extra = dict(env or {})
        if extra:
            base["BB_ENV_PASSTHROUGH_ADDITIONS"] = " ".join(extra)
        base.update(extra)
        cmd = ["bash", "-c", script, "bash", *map(str, args)]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", self.user.pw_name, "--", "env", "-i", *(f"{k}={v}" for k, v in base.items()), *cmd]
            environ = {"PATH": SYSTEM_PATH}
        else:
            environ = base
        r = subprocess.run(cmd, capture_output=True, text=True, env=environ, cwd=cwd or self.root, timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(describe(r))
        return r

    def builddir(
        self,
        name: str,
        machine: str = "qemux86-64",
        layers: Iterable[Path] = (),
        local_conf: str = "",
        core_only: bool = False,
    ) -> Build:
        """A build directory with OE-core, meta-oe, meta-python (only OE-core with `core_only`) and
        `layers`; its configuration is rewritten only when it changes, so that its parse cache
        stays warm."""
        path = self.work / f"build-{name}"
        (path / "conf").mkdir(parents=True, exist_ok=True)
        base = [self.oe_core / "meta"] if core_only else [self.oe_core / "meta", self.meta_oe, self.meta_python]
        all_layers = [*base, *layers]
        bblayers = (
            'BBPATH = "${TOPDIR}"\nBBFILES ?= ""\nBBLAYERS = " \\\n'
            + "".join(f"    {p} \\\n" for p in all_layers)
            + '"\n'
        )
        local = (
            f'CONF_VERSION = "2"\nMACHINE = "{machine}"\nBB_NO_NETWORK = "1"\nBB_NUMBER_THREADS = "2"\n'
            'CONNECTIVITY_CHECK_URIS = ""\nSANITY_TESTED_DISTROS = ""\n'
            # No hash equivalence server: nothing is restored from sstate here, and with it a
            # dry run of the image's graph took 800 s (330 s without, on a quieter machine).
            'BB_SIGNATURE_HANDLER = "OEBasicHash"\nBB_HASHSERVE = ""\n'
            f'DL_DIR = "{self.root}/downloads"\nSSTATE_DIR = "{self.root}/sstate-cache"\n'
            + ("" if os.environ.get(FULL) == "1" else MASK_UNNEEDED)
            + local_conf
        )
        for fname, text in (("bblayers.conf", bblayers), ("local.conf", local)):
            target = path / "conf" / fname
            if not target.exists() or target.read_text() != text:
                target.write_text(text)
        self._own(path)
        self._own(path / "conf", tree=True)
        return Build(self, path)


@contextlib.contextmanager
def _host_lock() -> Iterator[None]:
    with open("/run/lock/meta-swupd-yocto-host.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def describe(r: subprocess.CompletedProcess) -> str:
    """A failed command's output, for assertion messages (the end of each stream)."""
    return f"exit {r.returncode}\n--- stdout (end)\n{r.stdout[-6000:]}\n--- stderr (end)\n{r.stderr[-4000:]}"


def parse_env(text: str) -> dict[str, str]:
    """Variables from `bitbake -e` output (the plain `NAME="value"` lines)."""
    out = {}
    for m in re.finditer(r'^(?:export )?([A-Za-z0-9_:+.${}/-]+)="(.*)"$', text, re.M):
        out[m.group(1)] = m.group(2)
    return out
