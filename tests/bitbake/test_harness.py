"""The BitBake test harness works: real BitBake parses, builds an image over meta-testcore with a
layer's rootfs post-processing and image task, reruns only what changed, fails failing tasks,
shows per-recipe overrides, serves Tinfoil, and oelint-adv runs."""

from __future__ import annotations

import os
import sys
import tarfile

import bbtest
import pytest
from bbtest import HARNESS_TEST_LAYER, describe, task_summary, tasks_run

# The image build that most tests look at: meta-testcore + meta-harness-test, a per-recipe
# override of DISTRO_VERSION (os-release's VERSION_ID) in local.conf.
LOCAL_CONF = 'DISTRO_VERSION:pn-test-image = "7"\nHARNESS_GREETING = "first"\n'


@pytest.fixture(scope="module")
def image_build(tmp_path_factory, bitbake_harness):
    if not bbtest.have_fakeroot():
        pytest.skip(bbtest.NO_FAKEROOT)
    top = bbtest.make_builddir(tmp_path_factory.mktemp("image") / "build", [HARNESS_TEST_LAYER], LOCAL_CONF)
    r = bbtest.bitbake(top, "test-image")
    return top, r


def workdir(top, pn):
    return top / "tmp" / "work" / "qemux86-64" / pn / "1.0"


def test_parse_only(builddir, bitbake):
    r = bitbake(builddir, "-p")
    assert r.returncode == 0, describe(r)
    recipes = len(list(bbtest.TESTCORE.glob("recipes-*/*/*.bb")))
    assert f"Parsing of {recipes} .bb files complete" in r.stdout, r.stdout
    assert " 0 errors" in r.stdout
    assert (builddir / "tmp" / "cache").is_dir()


def test_image_build(image_build):
    top, r = image_build
    assert r.returncode == 0, describe(r)
    ran = tasks_run(r)
    for task in ("do_rootfs", "do_image", "do_image_complete", "do_harness_check", "do_build"):
        assert ("test-image.bb", task) in ran, ran
    assert ran.index(("test-image.bb", "do_image_complete")) < ran.index(("test-image.bb", "do_harness_check"))
    for pn in ("hello", "app-tools", "glibc", "base-files", "packagegroup-core-boot"):
        assert (f"{pn}_1.0.bb" if pn != "packagegroup-core-boot" else f"{pn}.bb", "do_package") in ran

    rootfs = workdir(top, "test-image") / "rootfs"
    with open(rootfs / "usr/bin/hello", "rb") as f:
        assert f.read(4) == b"\x7fELF"
    assert (rootfs / "etc/hello.conf").read_text() == "greeting = hello\n"
    assert (rootfs / "usr/bin/app-tool").is_file()  # from the layer's bbappend
    assert (rootfs / "lib/libc.so.6").is_file()  # hello's runtime dependency
    assert os.readlink(rootfs / "etc/os-release") == "../usr/lib/os-release"
    os_release = (rootfs / "usr/lib/os-release").read_text()
    assert "VERSION_ID=7\n" in os_release and "ID=nodistro\n" in os_release

    # The layer's post-process commands ran inside do_rootfs, the shell one under fakeroot.
    assert (rootfs / "etc/harness-python").read_text() == "first\n"
    assert (rootfs / "etc/harness-shell").read_text() == "shell\n"
    log = (workdir(top, "test-image") / "temp" / "log.do_rootfs").read_text()
    assert "harness_rootfs_python ran" in log and "harness_rootfs_shell ran" in log

    # Package data in OE's format.
    pkgdata = top / "tmp" / "pkgdata" / "qemux86-64"
    files = bbtest.read_pkgdata_files(pkgdata, "hello")
    assert files == {"/etc/hello.conf": 17, "/usr/bin/hello": os.path.getsize("/bin/true")}
    assert "RDEPENDS:hello: glibc\n" in (pkgdata / "runtime" / "hello").read_text()

    # do_image and do_image_complete: the tar (ownership from fakeroot) and its link.
    deploy = top / "tmp" / "deploy" / "images" / "qemux86-64"
    link = deploy / "test-image-qemux86-64.rootfs.tar"
    assert link.is_symlink() and os.readlink(link).startswith("test-image-qemux86-64.rootfs-")
    with tarfile.open(link) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["./usr/bin/hello"].mode == 0o755
    assert (members["./home/user"].uid, members["./home/user"].gid) == (1000, 1000)
    assert members["./etc/harness-shell"].uid == 1000
    assert (deploy / "harness-check").read_text().strip() == str((deploy / os.readlink(link)).resolve())
    manifest = (deploy / "test-image-qemux86-64.rootfs.manifest").read_text().splitlines()
    assert "hello qemux86_64 1.0" in manifest


def test_rebuild_reruns_only_what_changed(image_build):
    top, first = image_build
    assert first.returncode == 0, describe(first)
    r = bbtest.bitbake(top, "test-image")
    assert r.returncode == 0, describe(r)
    summary = task_summary(r)
    assert summary and summary.attempted == summary.not_rerun, r.stdout
    assert [t for t in tasks_run(r) if t[1] != "do_build"] == []

    # A variable the layer's post-process function uses: do_rootfs and what follows it rerun.
    bbtest.append_local_conf(top, 'HARNESS_GREETING = "second"')
    r = bbtest.bitbake(top, "test-image")
    assert r.returncode == 0, describe(r)
    rerun = {task for recipe, task in tasks_run(r) if recipe == "test-image.bb"}
    assert {"do_rootfs", "do_image", "do_image_complete", "do_harness_check"} <= rerun
    assert not [t for t in tasks_run(r) if t[0] != "test-image.bb"], "packages were rebuilt"
    assert (workdir(top, "test-image") / "rootfs/etc/harness-python").read_text() == "second\n"


def test_failing_task_fails_the_build(image_build):
    top, _ = image_build
    r = bbtest.bitbake(top, "failing", "-c", "fail")
    assert r.returncode == 1, describe(r)
    out = r.stdout + r.stderr
    assert "failed with exit code 1" in out
    assert "failing is about to fail" in out  # bbwarn from the shell reached BitBake
    assert "1 failed" in out


def test_env_shows_per_recipe_override_and_passthrough(image_build):
    top, _ = image_build
    r = bbtest.bitbake(top, "-e", "test-image", env={"HARNESS_FROM_ENV": "from-the-environment"})
    assert r.returncode == 0, describe(r)
    variables = bbtest.parse_env_output(r.stdout)
    assert variables["VERSION_ID"] == "7"
    assert variables["HARNESS_FROM_ENV"] == "from-the-environment"
    assert variables["STAGING_BINDIR_NATIVE"] == str(bbtest.venv() / "bin")
    assert "pn-test-image" in variables["OVERRIDES"].split(":")

    r = bbtest.bitbake(top, "-e")  # the global datastore has no recipe override
    assert r.returncode == 0, describe(r)
    assert bbtest.parse_env_output(r.stdout)["DISTRO_VERSION"] == "nodistro.0"


# -- Tinfoil: one per module (a new one per test would wait for the last server to exit) ----


@pytest.fixture(scope="module")
def tinfoil(tmp_path_factory, bitbake_harness):
    tinfoil_module = pytest.importorskip(
        "bb.tinfoil", reason="Tinfoil runs BitBake in the test process: run pytest with the venv's python"
    )
    if not bbtest.have_fakeroot():
        pytest.skip(bbtest.NO_FAKEROOT)

    top = bbtest.make_builddir(tmp_path_factory.mktemp("tinfoil") / "build", [HARNESS_TEST_LAYER], LOCAL_CONF)
    saved_env, saved_cwd, saved_stdin, saved_exe = dict(os.environ), os.getcwd(), sys.stdin, sys.executable
    # BitBake daemonizes its server by fork and dup2 onto sys.stdin's descriptor: pytest's
    # capture leaves sys.stdin without one, so give it /dev/null. The server is then started as
    # sys.executable, which must not be relative to the directory we leave. And BitBake cleans
    # os.environ of this process: run it in the harness's clean environment and restore ours.
    sys.stdin = open(os.devnull)
    sys.executable = os.path.abspath(sys.executable)
    os.environ.clear()
    os.environ.update(bbtest.clean_env(top))
    os.chdir(top)
    t = tinfoil_module.Tinfoil()
    try:
        t.prepare(config_only=False, quiet=2)
        yield t
    finally:
        t.shutdown()
        bbtest.wait_for_server_exit(top)
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        sys.stdin.close()
        sys.stdin, sys.executable = saved_stdin, saved_exe


def test_tinfoil_reads_configuration_and_recipes(tinfoil):
    assert tinfoil.config_data.getVar("BB_NUMBER_THREADS") == "2"
    assert tinfoil.config_data.getVar("MACHINE") == "qemux86-64"
    d = tinfoil.parse_recipe("test-image")
    assert d.getVar("VERSION_ID") == "7"
    assert "app-tools" in d.getVar("IMAGE_INSTALL").split()
    assert d.getVarFlag("do_rootfs", "fakeroot") == "1"
    assert any(p.endswith("classes-recipe/harnessimage.bbclass") for p in d.getVar("BBINCLUDED").split())
    assert "harness_rootfs_python;" in d.getVar("ROOTFS_POSTPROCESS_COMMAND").replace(" ", "")


def test_tinfoil_builds(tinfoil):
    assert tinfoil.build_targets("hello", "do_package", handle_events=True)
    pkgdata = tinfoil.config_data.getVar("PKGDATA_DIR")
    assert "/usr/bin/hello" in bbtest.read_pkgdata_files(pkgdata, "hello")


# -- oelint-adv ------------------------------------------------------------------------------


def test_oelint_runs(tmp_path, oelint):
    recipe = tmp_path / "sample_1.0.bb"
    recipe.write_text('SUMMARY = "sample"\nLICENSE = "MIT"\nSAMPLE_SETTING = "1"\n')
    r = oelint(recipe)
    assert r.returncode == 1, r.stderr
    rules = {f.rule for f in r.findings}
    assert "oelint.var.mandatoryvar.HOMEPAGE" in rules
    assert "oelint.vars.mispell.unknown" in rules

    r = oelint(recipe, known_vars=["SAMPLE_SETTING"])
    assert "oelint.vars.mispell.unknown" not in {f.rule for f in r.findings}
