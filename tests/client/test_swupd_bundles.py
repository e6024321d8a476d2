"""bundle-add, bundle-remove, bundle-list, bundle-info, search, info and clean."""

from __future__ import annotations

import json
import os
from pathlib import Path

import clientkit as ck
import pytest
from clientkit import Device
from support import oracle
from support.httpserver import FaultServer


@pytest.fixture
def core(v10_core: Device, clone_device, content: FaultServer) -> Device:
    return clone_device(v10_core, content.url())


def test_bundle_add_pulls_in_includes(core: Device, stream: ck.Stream) -> None:
    r = core.swupd("bundle-add", "app-docs")
    assert r.rc == 0, r.err
    assert "Successfully installed 2 bundle(s): app, app-docs" in r.out
    ck.assert_tree(core.root, stream.expected(10, {"app-docs"}))
    r = core.swupd("bundle-add", "app")
    assert r.rc == 0 and "Nothing to do" in r.out
    assert core.swupd("verify").rc == 0


def test_bundle_add_several_and_then_update(core: Device, stream: ck.Stream) -> None:
    before = core.tree()
    r = core.swupd("bundle-add", "tools", "extras")
    assert r.rc == 0, r.err
    ck.assert_tree(core.root, stream.expected(10, {"tools", "extras"}))
    assert core.swupd("update").rc == 0
    ck.assert_tree(core.root, stream.expected(20, {"tools", "extras"}, old=before))


def test_bundle_add_unknown(core: Device) -> None:
    snap = core.snapshot()
    r = core.swupd("bundle-add", "app", "no-such-bundle")
    assert r.rc == 16 and "no-such-bundle" in r.error_line()
    assert ck.diff_snapshots(snap, core.snapshot()) == ""


def test_bundle_remove_keeps_shared_files(device: Device, stream: ck.Stream) -> None:
    r = device.swupd("bundle-remove", "extras")
    assert r.rc == 0, r.err
    assert "Successfully removed 1 bundle(s)" in r.out
    ck.assert_tree(device.root, stream.expected(10, set(ck.ALL_BUNDLES) - {"extras"}))
    assert Path(device.root, "usr/share/common/shared.txt").exists()  # tools still has it
    assert not Path(device.root, "opt/extras").exists()
    r = device.swupd("bundle-remove", "tools")
    assert r.rc == 0, r.err
    assert not Path(device.root, "usr/share/common").exists()


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["os-core"], "os-core cannot be removed"),
        (["app"], "app is required by app-docs"),
        (["no-such-bundle"], "not installed: no-such-bundle"),
    ],
)
def test_bundle_remove_refusals(device: Device, names: list[str], message: str) -> None:
    snap = device.snapshot()
    r = device.swupd("bundle-remove", *names)
    assert r.rc == 16 and message in r.error_line(), r.err
    assert ck.diff_snapshots(snap, device.snapshot()) == ""


def test_bundle_remove_with_its_dependent(device: Device, stream: ck.Stream) -> None:
    r = device.swupd("bundle-remove", "app", "app-docs")
    assert r.rc == 0, r.err
    ck.assert_tree(device.root, stream.expected(10, {"tools", "extras"}))


def test_bundle_list(core: Device) -> None:
    r = core.swupd("bundle-list")
    assert r.rc == 0 and r.out.split() == ["os-core"]
    r = core.swupd("bundle-list", "--all")
    assert r.rc == 0
    assert r.out.splitlines() == ["app", "app-docs", "extras", "os-core (installed)", "tools"]


def test_bundle_info(device: Device, stream: ck.Stream) -> None:
    r = device.swupd("bundle-info", "app-docs", "--json")
    assert r.rc == 0, r.err
    info = [json.loads(line) for line in r.out.splitlines()]
    data = next(x for x in info if x["type"] == "result")
    m = ck.bundle_manifest(stream.www, 10, "app-docs")
    assert data["name"] == "app-docs" and data["installed"] is True and data["version"] == 10
    assert data["includes"] == ["os-core", "app"] and data["all_includes"] == ["app", "os-core"]
    assert data["files"] == len(m.present()) and data["size"] == int(m.header["contentsize"])
    r = device.swupd("bundle-info", "nope")
    assert r.rc == 16


def test_search(device: Device) -> None:
    r = device.swupd("search", "grep")
    assert r.rc == 0 and r.out.splitlines() == ["app\t/opt/app/bin/grep"]
    r = device.swupd("search", "/usr/share/common/shared.txt")
    assert sorted(r.out.splitlines()) == ["extras\t/usr/share/common/shared.txt", "tools\t/usr/share/common/shared.txt"]
    r = device.swupd("search", "no-such-file")
    assert r.rc == 1 and "No bundle provides no-such-file" in r.out


def test_search_by_part_of_a_name_or_a_glob(device: Device) -> None:
    r = device.swupd("search", "shared")
    assert sorted(r.out.splitlines()) == ["extras\t/usr/share/common/shared.txt", "tools\t/usr/share/common/shared.txt"]
    r = device.swupd("search", "gre?")
    assert r.out.splitlines() == ["app\t/opt/app/bin/grep"]
    r = device.swupd("search", "/opt/app/bin/*")
    assert len(r.out.splitlines()) >= 2 and all(line.startswith("app\t/opt/app/bin/") for line in r.out.splitlines())
    r = device.swupd("search", "/app/bin/")
    assert r.rc == 0 and "app\t/opt/app/bin/grep" in r.out.splitlines()


def test_search_offline_answers_from_the_installed_bundles(v10_core: Device, clone_device) -> None:
    """With the server gone, the installed bundles' kept manifests still answer; the bundles
    not installed are left out with a warning."""
    dev = clone_device(v10_core, "http://127.0.0.1:9")  # nothing listens there
    r = dev.swupd("search", "os-release")
    assert r.rc == 0, r.err
    assert "os-core\t/usr/lib/os-release" in r.out.splitlines()
    assert "bundles not installed were not searched" in r.err


def test_info(device: Device, stream: ck.Stream) -> None:
    r = device.swupd("info")
    assert r.rc == 0
    assert "version: 10" in r.out and f"statedir: {device.state}" in r.out
    assert f"bundles: {', '.join(sorted(ck.ALL_BUNDLES))}" in r.out
    r = device.swupd("info", "--json")
    data = json.loads(r.out.splitlines()[1])
    assert data["type"] == "result"
    assert data["root"] == device.root and data["format"] == 1 and data["compat"] == ck.COMPAT
    assert data["versionurl"] == device.url.rstrip("/") and len(data["keys"]) == 1


def test_clean(device: Device, content: FaultServer) -> None:
    assert device.swupd("update").rc == 0
    objects = Path(device.state, "objects")
    (objects / ("0" * 64)).write_bytes(b"a cached object")
    r = device.swupd("clean")
    assert r.rc == 0 and "files removed" in r.out
    # Nothing is left but the store's 256 empty subdirectories, ready for the next update.
    assert sorted(p.name for p in objects.iterdir()) == [f"{i:02x}" for i in range(256)]
    assert not any(any(p.iterdir()) for p in objects.iterdir())
    assert "20" in os.listdir(Path(device.state, "manifests"))
    content.clear_log()
    assert device.swupd("verify").rc == 0
    assert not content.requests("/20/Manifest.MoM"), "the current MoM was kept"
    r = device.swupd("clean", "--all")
    assert r.rc == 0
    assert os.listdir(Path(device.state, "manifests")) == []
    assert device.swupd("verify").rc == 0  # fetched again
    assert content.requests("/20/Manifest.MoM")


def test_clean_keeps_every_manifest_of_the_current_version(device: Device, content: FaultServer) -> None:
    assert device.swupd("update").rc == 0
    assert device.swupd("clean").rc == 0
    content.clear_log()
    assert device.swupd("verify").rc == 0
    assert [e.path for e in content.log if "Manifest" in e.path] == []


def test_clean_keeps_only_what_the_installed_system_uses(device: Device, content: FaultServer) -> None:
    """After 10 -> 20, version 10's MoM and its replaced manifests go; what 20 uses stays."""
    assert device.swupd("update").rc == 0
    mdir = Path(device.state, "manifests")
    assert (mdir / "10/Manifest.MoM").exists() and (mdir / "10/Manifest.os-core").exists()
    assert device.swupd("clean").rc == 0
    kept = sorted(str(p.relative_to(mdir)) for p in mdir.rglob("*") if p.is_file())
    # The device has every bundle (v10_all).
    want = {"20/Manifest.MoM", "20/Manifest.MoM.sig"}
    for e in oracle.load_manifest(str(mdir / "20/Manifest.MoM")).present():
        want |= {f"{e.version}/Manifest.{e.name}", f"{e.version}/parsed/Manifest.{e.name}"}
    assert set(kept) == want, kept
    assert not (mdir / "10/Manifest.MoM").exists()
    content.clear_log()
    assert device.swupd("verify").rc == 0
    assert [e.path for e in content.log if "Manifest" in e.path] == []


def test_bundle_remove_keeps_and_reports_changed_configuration(
    v10_all: Device, clone_device, stream: ck.Stream, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A configuration file of a removed bundle that the administrator changed stays, and the
    command says so."""
    import dataclasses

    d = tmp_path_factory.mktemp("app-etc")
    rootfs = ck.clone(stream.rootfs[20], str(d / "rootfs-30"))
    ck._write(rootfs, "etc/app/app.conf", b"shipped with app\n")
    with open(stream.bundles_toml) as f:
        toml = f.read().replace('paths = ["/opt/app"]', 'paths = ["/opt/app", "/etc/app"]')
    bundles = str(d / "bundles.toml")
    with open(bundles, "w") as f:
        f.write(toml)
    www = ck.copy_www(stream.www, str(d / "www"))
    ck.build_version(www, rootfs, 30, stream.private, bundles)
    dev = clone_device(v10_all, Path(www).as_uri())
    dev.stream = dataclasses.replace(stream, www=www, www30="", rootfs={**stream.rootfs, 30: rootfs})
    u = dev.swupd("update")
    assert u.rc == 0 and dev.version() == 30, u.out + u.err
    conf = Path(dev.root, "etc/app/app.conf")
    conf.write_bytes(b"tuned by the administrator\n")
    r = dev.swupd("bundle-remove", "app-docs", "app")
    assert r.rc == 0, r.err
    assert conf.read_bytes() == b"tuned by the administrator\n"
    assert "Warning: /etc/app/app.conf was changed locally" in r.err, r.err
    assert not Path(dev.root, "opt/app").exists()
