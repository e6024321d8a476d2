"""swupd-image's own tasks under upstream BitBake and OE-core (wrynose), run with `bitbake -b`:
swupd_rootfs_config as a ROOTFS_POSTPROCESS_COMMAND of a real do_rootfs, then OE-core's
do_image and do_image_complete, then do_swupd_update with the native server the layer's own
recipe installed, all fakeroot tasks under Debian's pseudo.

OE-core cannot build packages offline (no sources, no pseudo-native, no package manager), so
the test image (tests/bitbake/meta-swupd-test) takes its rootfs and the runtime package data of
its bundle's package from the test. Nor can it build python3-native, so nativepython3 comes from
a stand-in that behaves as OE's does where the server is concerned: a Python whose sys.path is
the native sysroot's site-packages, holding the server's dependencies, and not the host's. The rootfs step makes
every file root's and one user's file 1000's under pseudo; on disk they all stay the build
user's, so the owners in the published stream can only come from pseudo's database.

Two builds, OS_VERSION 10 then 20, publish a stream that the project's client installs and
updates; then the refusals, each a build that stops naming what to set.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import oe
import pytest
from support.environment import require_root, unavailable

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
IMAGE = "swupd-test-image"
STREAM = f"{IMAGE}-qemux86-64"
USER_FILE = "/home/user/notes.txt"
OWNERS = f"/home/user:1000:1000 {USER_FILE}:1000:1000"
# The server's Python dependencies, as meta-python's native recipes would install them.
SERVER_DISTRIBUTIONS = ("pynacl", "cffi", "pycparser", "zstandard", "bsdiff4", "jinja2", "markupsafe", "pyelftools")

sys.path.insert(0, str(oe.TOP / "client"))
from swupd.format import filehash, latest, layout, signing  # noqa: E402
from swupd.format import manifest as mf  # noqa: E402


def _rootfs(directory: Path, version: int) -> Path:
    """What a package manager would have installed for version `version`, and the runtime
    package data of app-tools (the `apps` bundle), in OE's format."""
    files = {
        "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n",
        "etc/group": "root:x:0:\nuser:x:1000:\n",
        "etc/hello.conf": "greeting = hello\n",
        "usr/lib/os-release": 'ID=swupdtest\nNAME="swupd test"\nVERSION_ID=0\n',
        "usr/bin/hello": "#!/bin/sh\necho hello\n",
        "usr/bin/app-tool": "#!/bin/sh\ncat /usr/share/app-tools/release.txt\n",
        "usr/share/app-tools/release.txt": f"release {version // 10}\n",
        USER_FILE.lstrip("/"): "the user's own file\n",
    }
    root = directory / "rootfs"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    for rel in ("usr/bin/hello", "usr/bin/app-tool"):
        (root / rel).chmod(0o755)
    (root / "etc/os-release").symlink_to("../usr/lib/os-release")
    app = ("/usr/bin/app-tool", "/usr/share/app-tools/release.txt")
    info = ", ".join(f'"{p}": {len(files[p.lstrip("/")])}' for p in app)
    runtime = directory / "pkgdata" / "runtime"
    runtime.mkdir(parents=True)
    (runtime / "app-tools").write_text(
        "PN: app-tools\nPV: 1.0\nPR: r0\nPKGV: 1.0\nPKGR: r0\nLICENSE: MIT\nSECTION: base\n"
        f"PKG:app-tools: app-tools\nRDEPENDS:app-tools: \nFILES_INFO:app-tools: {{{info}}}\n"
    )
    return directory


def _python_site(target: Path) -> Path:
    """The server's dependencies for the host's python3, which plays python3-native: the files of
    this venv's distributions when it is the same Python version, else from the package index."""
    host = subprocess.run(["/usr/bin/python3", "-c", "import sys; print(sys.version_info[:2])"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    target.mkdir(parents=True)
    if host == str(sys.version_info[:2]):
        for name in SERVER_DISTRIBUTIONS:
            dist = importlib.metadata.distribution(name)
            for f in dist.files or ():
                src = Path(dist.locate_file(f))
                if "__pycache__" in f.parts or f.parts[0].startswith("..") or not src.is_file():
                    continue
                (target / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target / f)
    else:
        pip = ["/usr/bin/python3", "-m", "pip", "install", "-q", "--break-system-packages", "--target", str(target)]
        r = subprocess.run([*pip, *SERVER_DISTRIBUTIONS], capture_output=True, text=True)
        if r.returncode != 0:
            unavailable(f"cannot install the server's dependencies for the host's python3: {r.stderr[-400:]}")
    return target


class Stream:
    """The test build directory, its keys and inputs, and what the two builds left."""

    first: subprocess.CompletedProcess
    second: subprocess.CompletedProcess
    rootfs_20: Path  # a copy of the rootfs of version 20, which later builds replace

    def __init__(self, yocto: oe.Yocto, build: oe.Build, layer: Path):
        self.yocto, self.build, self.layer = yocto, build, layer
        self.base = build.path / "swupd-test"
        self.deploy = self.base / "deploy"
        self.www = self.deploy / "www"
        self.key, self.pub = self.keypair("release")

    def keypair(self, name: str, mode: int = 0o600) -> tuple[Path, Path]:
        key, pub = self.base / "keys" / f"{name}.key", self.base / "keys" / f"{name}.pub"
        key.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([BIN / "swupd-server", "keygen", "--private", key, "--public", pub], check=True)
        key.chmod(mode)
        self.own(key.parent)
        return key, pub

    def own(self, path: Path) -> None:
        self.yocto.hand_over(path)

    def env(self, version: int | None, **extra: str) -> dict[str, str]:
        env = {
            "SWUPD_TEST_ROOTFS": str(self.base / f"rootfs-{version if version in (10, 20) else 20}"),
            "SWUPD_TEST_OWNERS": OWNERS,
            "SWUPD_SIGNING_KEY": str(self.key),
            "SWUPD_PUBLIC_KEYS": str(self.pub),
            "DEPLOY_DIR_SWUPD": str(self.deploy),
        }
        if version is not None:
            env["OS_VERSION"] = str(version)
        env.update(extra)
        return {k: v for k, v in env.items() if v is not None}

    def bitbake(self, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
        return self.build.run("bitbake", *args, env=env)

    def image(self, version: int | None, **extra: str) -> subprocess.CompletedProcess:
        recipe = self.layer / "recipes-test" / "images" / f"{IMAGE}.bb"
        return self.bitbake("-b", str(recipe), env=self.env(version, **extra))

    @property
    def server_recipe(self) -> str:
        return f"virtual:native:{self.yocto.layer}/recipes-devtools/swupd-server/swupd-server_0.1.0.bb"

    @property
    def workdir(self) -> Path:
        return next((self.build.path / "tmp" / "work").glob(f"*/{IMAGE}/*"))

    @property
    def rootfs(self) -> Path:
        return self.workdir / "rootfs"


def _reset(build: oe.Build) -> None:
    """A new stream each session: the image's (and the client recipe's) work directory and
    stamps go, so that its sysroot is staged again from the native recipes built now, and every
    task runs; so do the previous sessions' logs (BitBake's event log takes megabytes per call)."""
    for pattern in (f"tmp/work/*/{IMAGE}", f"tmp/stamps/*/{IMAGE}", "tmp/log", "swupd-test",
                    "tmp/work/*/swupd-client", "tmp/stamps/*/swupd-client"):  # fmt: skip
        for path in build.path.glob(pattern):
            shutil.rmtree(path)


@pytest.fixture(scope="module")
def stream(yocto) -> Stream:
    """The native server and nativepython3 installed by their recipes' tasks, then two builds of
    the test image, OS_VERSION 10 and 20 (a changed file in the bundle)."""
    try:
        conf = oe.pseudo_conf()
    except oe.Unavailable as e:
        unavailable(str(e))
    # An SBOM describes packages, and no package is built here.
    conf += 'INHERIT_DISTRO:remove = "create-spdx"\n'
    layer = yocto.copy(HERE / "meta-swupd-test", "meta-swupd-test")
    # Each test process has its own: pytest-xdist may hand this module's tests to two of them.
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    name = f"image-{worker}" if worker else "image"
    build = yocto.builddir(name, layers=[yocto.layer, layer], local_conf=conf)
    _reset(build)
    s = Stream(yocto, build, layer)
    for version in (10, 20):
        _rootfs(s.base / f"rootfs-{version}", version)
    site = _python_site(s.base / "python-site")
    s.own(s.base)
    standin = str(layer / "recipes-test" / "nativepython3" / "nativepython3-standin-native_1.0.bb")
    # The stand-in copies the dependencies afresh each session; the server is installed again
    # only when its sources changed (or comes from sstate).
    r = s.bitbake("-b", standin, "-C", "install", "-c", "populate_sysroot", env={"SWUPD_TEST_PYTHON_SITE": str(site)})
    assert r.returncode == 0, oe.describe(r)
    r = s.bitbake("-b", s.server_recipe, "-c", "populate_sysroot", env={})
    assert r.returncode == 0, oe.describe(r)
    s.first = s.image(10)
    s.second = s.image(20) if s.first.returncode == 0 else s.first
    if s.second.returncode == 0:
        s.rootfs_20 = s.base / "rootfs-20-built"
        subprocess.run(["cp", "-a", s.rootfs, s.rootfs_20], check=True)
    return s


def _built(s: Stream) -> None:
    assert s.first.returncode == 0, oe.describe(s.first)
    assert s.second.returncode == 0, oe.describe(s.second)


def _out(r: subprocess.CompletedProcess) -> str:
    return r.stdout + r.stderr


def swupd(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([BIN / "swupd", *map(str, args)], capture_output=True, text=True)


def test_the_native_server_runs_as_do_swupd_update_runs_it(stream):
    """The command the image's tasks find first in PATH (its native sysroot) is the one the
    swupd-server recipe installed, and it runs there: under nativepython3, which sees the
    sysroot's site-packages, where the host's python3 would not find swupd_server."""
    r = stream.bitbake("-e", "-b", str(stream.layer / "recipes-test" / "images" / f"{IMAGE}.bb"), env=stream.env(20))
    assert r.returncode == 0, oe.describe(r)
    env = oe.parse_env(r.stdout)
    bindir = Path(env["STAGING_BINDIR_NATIVE"])
    assert env["PATH"].split(":").index(str(bindir)) < env["PATH"].split(":").index(env["HOSTTOOLS_DIR"])
    out = stream.base / "derived.pub"
    r = stream.yocto.as_user(
        'command -v "$1" && exec "$@"', env["SWUPD_SERVER"], "public-key", "--private", str(stream.key),
        "--output", str(out), env={"PATH": env["PATH"]},
    )  # fmt: skip
    assert r.returncode == 0, oe.describe(r)
    assert r.stdout.splitlines()[0] == str(bindir / "swupd-server")
    assert out.read_bytes() == stream.pub.read_bytes()
    assert (bindir / "swupd-server").read_text().startswith("#!/usr/bin/env nativepython3\n")
    _built(stream)
    assert "swupd-server create-update" in (stream.workdir / "temp" / "log.do_swupd_update").read_text()


def test_an_updated_checkout_installs_its_server_again(stream):
    """The recipe builds the checkout's sources, which no fetcher tracks: a changed server file
    changes do_install's signature, so the native sysroot gets the new server (built, or from
    sstate when that change was built before), not the one the stamps say is done."""
    _built(stream)
    source = stream.yocto.repo / "server-lib" / "swupd_server" / "__init__.py"
    original = source.read_bytes()
    try:
        source.write_bytes(original + b"# a change\n")
        r = stream.bitbake("-b", stream.server_recipe, "-c", "populate_sysroot", env={})
        assert r.returncode == 0, oe.describe(r)
        staged = stream.build.path / "tmp" / "sysroots-components" / "x86_64" / "swupd-server-native"
        installed = next(staged.glob("usr/lib/python3*/site-packages/swupd_server/__init__.py"))
        assert installed.read_bytes().endswith(b"# a change\n")
    finally:
        source.write_bytes(original)


def _package_of(path: str, env: dict[str, str]) -> str | None:
    """The package OE's do_package gives an installed file: the first of PACKAGES whose FILES
    names it, or a directory above it, or a glob that matches it."""
    for pkg in env["PACKAGES"].split():
        for pattern in env.get(f"FILES:{pkg}", "").split():
            if path == pattern or path.startswith(pattern.rstrip("/") + "/") or fnmatch.fnmatch(path, pattern):
                return pkg
    return None


@pytest.mark.parametrize(
    "pn,recipe,command,folder",
    [("swupd-client", "recipes-core/swupd-client/swupd-client_0.1.0.bb", "swupd", "client"),
     ("swupd-server", "recipes-devtools/swupd-server/swupd-server_0.1.0.bb", "swupd-server", "server-lib")],
)  # fmt: skip
def test_the_recipes_install_and_split_the_man_page_and_completions(stream, pn, recipe, command, folder):
    """do_install (the client's through client/install) puts the committed man page and
    completions where OE looks for them, and the recipe's packages take them as OE-core splits
    them: the page in -doc, the completions in -bash-completion and -zsh-completion. (do_package
    itself does not run under `bitbake -b`: OE-core's pkgdata step fails there.)"""
    path = str(stream.yocto.layer / recipe)
    r = stream.bitbake("-b", path, "-c", "install", env={})
    assert r.returncode == 0, oe.describe(r)
    r = stream.bitbake("-e", "-b", path, env={})
    assert r.returncode == 0, oe.describe(r)
    env = oe.parse_env(r.stdout)
    mandir, datadir = env["mandir"], env["datadir"]
    bash = f"{datadir}/bash-completion/completions/{command}"
    made = {  # installed path: (the committed file, the package it belongs in)
        f"{mandir}/man1/{command}.1": (f"man/{command}.1", f"{pn}-doc"),
        bash: (f"completion/bash/{command}", f"{pn}-bash-completion"),
        f"{datadir}/zsh/site-functions/_{command}": (f"completion/zsh/_{command}", f"{pn}-zsh-completion"),
    }
    for installed, (committed, package) in made.items():
        assert (Path(env["D"]) / installed.lstrip("/")).read_bytes() == (oe.TOP / folder / committed).read_bytes()
        assert _package_of(installed, env) == package, installed
    assert _package_of(f"{env['bindir']}/{command}", env) == pn


def test_two_builds_publish_a_signed_stream_with_pseudo_owners(stream):
    _built(stream)
    www = stream.www
    trusted = [signing.load_public(str(stream.pub))]
    pointer = www / layout.latest(1)
    signing.verify(pointer.read_bytes(), (www / layout.sig(layout.latest(1))).read_bytes(), trusted)
    assert latest.loads(pointer.read_bytes()).version == 20
    mom_bytes = (www / layout.mom(20)).read_bytes()
    signing.verify(mom_bytes, (www / layout.sig(layout.mom(20))).read_bytes(), trusted)
    mom = mf.loads(mom_bytes, is_mom=True)
    assert mom.compat == "qemux86-64" and mom.stream == STREAM
    bundles = {e.path: e for e in mom.entries}
    assert set(bundles) == {"os-core", "apps"}
    apps = mf.loads((www / layout.manifest(bundles["apps"].version, "apps")).read_bytes()).by_path()
    core = mf.loads((www / layout.manifest(bundles["os-core"].version, "os-core")).read_bytes()).by_path()
    # The bundle's paths come from the package data; the blacklist keeps a file out.
    assert {"/usr/bin/app-tool", "/usr/share/app-tools/release.txt"} <= set(apps)
    assert "/usr/bin/hello" in core and "/usr/bin/app-tool" not in core and "/etc/hello.conf" not in core
    assert apps["/usr/share/app-tools/release.txt"].version == 20 and core["/usr/bin/hello"].version == 10
    assert (www / layout.pack(20, "apps", 10)).is_file()
    # Owners: on disk the build user's; in the stream pseudo's, root's and the user's.
    src = stream.base / "rootfs-20" / "rootfs"
    assert os.lstat(src / USER_FILE.lstrip("/")).st_uid == stream.yocto.user.pw_uid != 1000
    assert os.lstat(stream.rootfs / "usr/bin/hello").st_uid == stream.yocto.user.pw_uid
    for manifest, path, uid in ((core, USER_FILE, 1000), (core, "/usr/bin/hello", 0), (apps, "/usr/bin/app-tool", 0)):
        data = (src / path.lstrip("/")).read_bytes()
        mode = os.lstat(src / path.lstrip("/")).st_mode
        assert manifest[path].hash == filehash.hash_bytes(data, mode, uid, uid), path


def test_image_carries_the_client_configuration(stream):
    _built(stream)
    root = stream.rootfs_20
    defaults = root / "usr/share/defaults/swupd"
    assert (defaults / "versionurl").read_text() == f"file://{stream.www}\n"
    assert (defaults / "contenturl").read_text() == f"file://{stream.www}\n"
    assert (defaults / "format").read_text() == "1\n"
    assert (defaults / "compat").read_text() == "qemux86-64\n"
    assert (defaults / "stream").read_text() == f"{STREAM}\n"
    assert [p.read_bytes() for p in (defaults / "keys").iterdir()] == [stream.pub.read_bytes()]
    assert sorted(p.name for p in (root / "usr/share/clear/bundles").iterdir()) == ["apps", "os-core"]
    assert "VERSION_ID=20\n" in (root / "usr/lib/os-release").read_text()
    assert os.readlink(root / "etc/os-release") == "../usr/lib/os-release"


def test_client_installs_10_and_updates_to_20(stream, tmp_path):
    require_root("installing content with its owners, as on a device, needs root")
    _built(stream)
    device = tmp_path / "device"
    r = swupd("os-install", "--url", f"file://{stream.www}", "--key", stream.pub, "--format", "1", "--version", "10",
              "--compat", "qemux86-64", "--bundles", "apps", device)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert (device / "usr/share/app-tools/release.txt").read_text() == "release 1\n"
    st = os.lstat(device / USER_FILE.lstrip("/"))
    assert (st.st_uid, st.st_gid) == (1000, 1000)
    assert os.lstat(device / "usr/bin/hello").st_uid == 0
    # From here the device uses the configuration the image carries.
    r = swupd("update", "--path", device)
    assert r.returncode == 0, r.stderr
    assert (device / "usr/share/app-tools/release.txt").read_text() == "release 2\n"
    assert "VERSION_ID=20\n" in (device / "usr/lib/os-release").read_text()
    r = swupd("verify", "--path", device)
    assert r.returncode == 0, r.stdout + r.stderr


def test_build_without_signing_key_stops_naming_the_variable(stream):
    _built(stream)
    r = stream.image(30, SWUPD_SIGNING_KEY="", SWUPD_PUBLIC_KEYS="")
    assert r.returncode != 0
    assert "SWUPD_SIGNING_KEY is not set" in _out(r), oe.describe(r)
    assert not (stream.www / "30").exists()


def test_image_without_os_version_is_skipped_with_the_reason(stream):
    r = stream.image(None)
    assert r.returncode != 0
    assert "was skipped: OS_VERSION must be a positive integer" in _out(r), oe.describe(r)


def test_os_version_must_rise(stream):
    _built(stream)
    r = stream.image(15)
    assert r.returncode != 0
    assert "OS_VERSION 15 is not above 20, the latest version published" in _out(r), oe.describe(r)
    assert not (stream.www / "15").exists()


def test_signing_keys_are_checked_naming_the_variable(stream):
    """A public key as SWUPD_SIGNING_KEY, a private key others may read, or a file that holds no
    key (found by the native server deriving the image's public key in do_rootfs) stops the
    build with one error naming the variable, not a stack trace."""
    _built(stream)
    r = stream.image(30, SWUPD_SIGNING_KEY=str(stream.pub))
    assert r.returncode != 0
    assert f"SWUPD_SIGNING_KEY = '{stream.pub}' is a public key" in _out(r), oe.describe(r)
    readable, _ = stream.keypair("readable", mode=0o644)
    r = stream.image(30, SWUPD_SIGNING_KEY=str(readable), SWUPD_PUBLIC_KEYS="")
    assert r.returncode != 0
    assert f"SWUPD_SIGNING_KEY = '{readable}' has mode 0644" in _out(r), oe.describe(r)
    ssh = stream.base / "keys" / "id_ed25519"
    ssh.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n")
    ssh.chmod(0o600)
    stream.own(ssh.parent)
    r = stream.image(30, SWUPD_SIGNING_KEY=str(ssh), SWUPD_PUBLIC_KEYS="")
    assert r.returncode != 0
    assert f"SWUPD_SIGNING_KEY = '{ssh}'" in _out(r) and "is not a key file" in _out(r), oe.describe(r)
    assert "Traceback" not in _out(r) and "CalledProcessError" not in _out(r), oe.describe(r)
    assert not (stream.www / "30").exists()


def test_development_signing_is_explicit_and_loud(stream):
    _built(stream)
    deploy = stream.base / "dev"
    no_key = {"SWUPD_SIGNING_KEY": "", "SWUPD_PUBLIC_KEYS": ""}
    r = stream.image(10, **no_key, SWUPD_DEV_SIGNING="1", DEPLOY_DIR_SWUPD=str(deploy))
    assert r.returncode == 0, oe.describe(r)
    assert "signing swupd-test-image with the published DEVELOPMENT key" in _out(r), oe.describe(r)
    dev_pub = stream.yocto.layer / "files/dev-signing/development.pub"
    dev = signing.load_public(str(dev_pub))
    www = deploy / "www"
    signing.verify((www / layout.mom(10)).read_bytes(), (www / layout.sig(layout.mom(10))).read_bytes(), [dev])
    keys = stream.rootfs / "usr/share/defaults/swupd/keys"
    assert [p.read_bytes() for p in keys.iterdir()] == [dev_pub.read_bytes()]


def _copy_stream(stream: Stream, name: str) -> Path:
    deploy = stream.base / name
    subprocess.run(["cp", "-a", stream.deploy, deploy], check=True)
    return deploy


def test_a_rotation_needs_swupd_rotate_key(stream):
    """A new signing key without SWUPD_ROTATE_KEY stops the build naming that variable; with it,
    the build introduces the new key, signed by the old one, and the image trusts both."""
    _built(stream)
    deploy = _copy_stream(stream, "rotated")
    new_key, new_pub = stream.keypair("next")
    env = {"SWUPD_SIGNING_KEY": str(new_key), "SWUPD_PUBLIC_KEYS": f"{stream.pub} {new_pub}"}
    env["DEPLOY_DIR_SWUPD"] = str(deploy)
    r = stream.image(40, **env)
    assert r.returncode != 0
    assert "SWUPD_ROTATE_KEY" in _out(r), oe.describe(r)
    www = deploy / "www"
    assert not (www / "40").exists()
    r = stream.image(40, **env, SWUPD_ROTATE_KEY=str(stream.key))
    assert r.returncode == 0, oe.describe(r)
    old, new = signing.load_public(str(stream.pub)), signing.load_public(str(new_pub))
    intro = layout.key_introduction(new.keyid)
    assert (www / intro).read_bytes() == new_pub.read_bytes()
    signing.verify((www / intro).read_bytes(), (www / layout.sig(intro)).read_bytes(), [old])
    signing.verify((www / layout.mom(40)).read_bytes(), (www / layout.sig(layout.mom(40))).read_bytes(), [new])
    keys = stream.rootfs / "usr/share/defaults/swupd/keys"
    assert sorted(p.read_bytes() for p in keys.iterdir()) == sorted([stream.pub.read_bytes(), new_pub.read_bytes()])


def test_a_refusal_names_the_variable_a_build_sets(stream):
    """swupd-server's refusals name its options; a build's error says what to set instead: a
    stream published before stream identities goes on with SWUPD_FORMAT, and a build does not
    move a stream to another SWUPD_STREAM."""
    _built(stream)
    old = _copy_stream(stream, "no-identity")
    private = [signing.load_private(str(stream.key))]
    for rel in (layout.mom(20), layout.latest(1)):
        path = old / "www" / rel
        lines = path.read_bytes().splitlines(keepends=True)
        data = b"".join(line for line in lines if not line.startswith(b"stream:\t"))
        path.write_bytes(data)
        (old / "www" / layout.sig(rel)).write_bytes(signing.sign(data, private))
    r = stream.image(60, DEPLOY_DIR_SWUPD=str(old))
    assert r.returncode != 0
    assert "has no stream identity" in _out(r) and "(in a build: SWUPD_FORMAT)" in _out(r), oe.describe(r)
    assert not (old / "www/60").exists()
    r = stream.image(60, SWUPD_STREAM="another-stream")
    assert r.returncode != 0
    out = _out(r)
    assert "'another-stream'" in out and "keep SWUPD_STREAM and SWUPD_COMPAT" in out, oe.describe(r)
    assert "another DEPLOY_DIR_SWUPD" in out, oe.describe(r)
    assert not (stream.www / "60").exists()


def test_a_new_os_version_alone_reruns_the_rootfs_step(stream):
    """OS_VERSION reaches the image only through swupd_rootfs_config, so that ROOTFS_POSTPROCESS
    command must be part of do_rootfs's signature: with nothing else changed, a new version still
    rebuilds the rootfs and publishes its own VERSION_ID."""
    _built(stream)
    r = stream.image(70)
    assert r.returncode == 0, oe.describe(r)
    assert "VERSION_ID=70\n" in (stream.rootfs / "usr/lib/os-release").read_text()
    mom = mf.loads((stream.www / layout.mom(70)).read_bytes(), is_mom=True)
    core = next(e for e in mom.entries if e.path == "os-core")
    entries = mf.loads((stream.www / layout.manifest(core.version, "os-core")).read_bytes()).by_path()
    assert entries["/usr/lib/os-release"].version == 70
