"""os-install, and the installed tree checked against the build's input, file by file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import clientkit as ck
import pytest
from support.httpserver import FaultServer


def test_os_install_all_bundles_over_http(stream: ck.Stream, content: FaultServer, tmp_path: Path) -> None:
    root, state = str(tmp_path / "root"), str(tmp_path / "state")
    opts = ["--statedir", state, "--url", content.url(), "--key", stream.key, "--format", "1", "--compat", ck.COMPAT]
    r = ck.run("os-install", root, "--bundles", ",".join(ck.ALL_BUNDLES[1:]), *opts)
    assert r.rc == 0, r.err
    assert f"Installed version 20 into {root}" in r.out
    ck.assert_tree(root, stream.expected(20, ck.ALL_BUNDLES))
    assert ck.os_release_version(root) == 20
    assert sorted(p.name for p in Path(root, "usr/share/clear/bundles").iterdir()) == sorted(ck.ALL_BUNDLES)


def test_os_install_a_subset_of_a_given_version_from_a_file_url(stream: ck.Stream, tmp_path: Path) -> None:
    root, state = str(tmp_path / "root"), str(tmp_path / "state")
    opts = ["--statedir", state, "--url", Path(stream.www).as_uri(), "--key", stream.key, "--format", "1"]
    r = ck.run("os-install", root, "--version", "10", "--bundles", "app-docs", *opts)
    assert r.rc == 0, r.err
    assert f"Installed version 10 into {root}" in r.out
    # app-docs includes app: both come, with os-core; tools and extras do not.
    ck.assert_tree(root, stream.expected(10, {"app-docs"}))
    assert sorted(p.name for p in Path(root, "usr/share/clear/bundles").iterdir()) == ["app", "app-docs", "os-core"]
    assert ck.os_release_version(root) == 10
    assert not Path(root, "opt/tools").exists()


def test_os_install_with_the_state_dir_inside_the_root(stream: ck.Stream, content: FaultServer, tmp_path: Path) -> None:
    root = tmp_path / "root"
    opts = ["--url", content.url(), "--key", stream.key, "--format", "1"]
    r = ck.run("os-install", "--path", str(root), "--version", "10", *opts)
    assert r.rc == 0, r.err
    ck.assert_tree(str(root), stream.expected(10, set()), allow_extra=["/var/lib/swupd"])
    assert (root / "var/lib/swupd/version").read_text().strip() == "10"
    assert (root / "var/lib/swupd").stat().st_mode & 0o777 == 0o700
    # The installed system then updates with the same defaults.
    r = ck.run("update", "--path", str(root), *opts)
    assert r.rc == 0, r.err
    assert ck.os_release_version(str(root)) == 20


def test_os_install_keeps_its_settings_for_the_installed_system(
    stream: ck.Stream, content: FaultServer, tmp_path: Path
) -> None:
    """What os-install was given goes to ROOT/etc/swupd/, so a bare `swupd update` works
    there, and `info` says where each setting comes from."""
    root, state = tmp_path / "root", str(tmp_path / "state")
    opts = ["--statedir", state, "--url", content.url(), "--key", stream.key, "--format", "1", "--compat", ck.COMPAT]
    r = ck.run("os-install", str(root), "--version", "10", *opts)
    assert r.rc == 0, r.err
    etc = root / "etc/swupd"
    kid = hashlib.sha256(bytes.fromhex(Path(stream.key).read_text().split()[1])).hexdigest()[:16]
    files = {str(p.relative_to(etc)): p.read_bytes() for p in sorted(etc.rglob("*")) if p.is_file()}
    assert files == {
        "versionurl": f"{content.url().rstrip('/')}\n".encode(),
        "contenturl": f"{content.url().rstrip('/')}\n".encode(),
        "format": b"1\n",
        "compat": f"{ck.COMPAT}\n".encode(),
        f"keys/{kid}.pub": Path(stream.key).read_bytes(),
    }
    assert all(p.stat().st_mode & 0o777 in (0o644, 0o755) for p in etc.rglob("*"))
    bare = ["--path", str(root), "--statedir", state]
    info = ck.run("info", *bare, "--json")
    assert info.rc == 0, info.err
    record = next(r for r in map(json.loads, info.out.splitlines()) if r["type"] == "result")
    assert record["settings_from"]["versionurl"] == str(etc / "versionurl")
    assert record["settings_from"]["keys"] == str(etc / "keys")
    assert record["format"] == 1
    r = ck.run("update", *bare)
    assert r.rc == 0, r.err
    assert ck.os_release_version(str(root)) == 20


def test_a_missing_setting_names_the_file_to_write(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    r = ck.run("check-update", "--path", str(root), "--statedir", str(tmp_path / "state"))
    assert f"write it to {root}/etc/swupd/versionurl" in r.error_line()


def test_os_install_refuses_a_non_empty_directory(stream: ck.Stream, content: FaultServer, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "precious").write_text("keep me")
    opts = ["--statedir", str(tmp_path / "state"), "--url", content.url(), "--key", stream.key, "--format", "1"]
    r = ck.run("os-install", str(root), *opts)
    assert r.rc == 2 and "not empty" in r.error_line(), r.err
    assert [p.name for p in root.iterdir()] == ["precious"]
    assert not content.log


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--bundles", "no-such-bundle"], 16, "no-such-bundle"),
        (["--version", "15"], 12, "not found"),
    ],
)
def test_os_install_failures_leave_the_target_empty(
    stream: ck.Stream, content: FaultServer, tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    root = tmp_path / "root"
    opts = ["--statedir", str(tmp_path / "state"), "--url", content.url(), "--key", stream.key, "--format", "1"]
    r = ck.run("os-install", str(root), *args, *opts)
    assert r.rc == code and message in r.error_line(), (r.rc, r.err)
    assert not any(root.iterdir())


def test_os_install_needs_a_target(stream: ck.Stream, content: FaultServer) -> None:
    r = ck.run("os-install", "--url", content.url(), "--key", stream.key, "--format", "1")
    assert r.rc == 2 and "other than /" in r.error_line()


@pytest.mark.parametrize("fault", ["journal-written:kill", "action@3:kill"])
def test_os_install_run_again_finishes_an_installation_cut_off_after_its_commit(
    stream: ck.Stream, content: FaultServer, tmp_path: Path, fault: str
) -> None:
    """A power cut after the journal leaves a target that is not empty; running the same
    os-install again finishes the installation instead of refusing the target."""
    import os

    root, state = str(tmp_path / "root"), str(tmp_path / "state")
    opts = ["--statedir", state, "--url", content.url(), "--key", stream.key, "--format", "1", "--compat", ck.COMPAT]
    r = ck.run_process("os-install", root, *opts, env=dict(os.environ, SWUPD_FAULT=fault))
    assert r.rc != 0 and Path(state, "journal").exists(), (r.rc, r.err)
    r = ck.run("os-install", root, *opts)
    assert r.rc == 0, r.err
    assert f"Installed version 20 into {root}" in r.out
    ck.assert_tree(root, stream.expected(20, set()))
    assert not Path(state, "journal").exists()
    r = ck.run("verify", "--path", root, *opts)
    assert r.rc == 0 and "0 missing, 0 modified, 0 extra" in r.out, r.out


def test_os_install_takes_the_zero_packs_of_the_versions_its_objects_come_from(
    stream: ck.Stream, content: FaultServer, tmp_path: Path
) -> None:
    """Installing version 20: os-core's small objects of version 10 come from 10's zero pack,
    and no object a fetched pack holds is fetched again as a fullfile."""
    import io
    import tarfile

    import zstandard

    root, state = str(tmp_path / "root"), str(tmp_path / "state")
    opts = ["--statedir", state, "--url", content.url(), "--key", stream.key, "--format", "1", "--compat", ck.COMPAT]
    r = ck.run("os-install", root, "--bundles", ",".join(ck.ALL_BUNDLES[1:]), *opts)
    assert r.rc == 0, r.err
    ck.assert_tree(root, stream.expected(20, ck.ALL_BUNDLES))
    packs = [e.path for e in content.requests(method="GET") if "/pack-" in e.path]
    assert "/10/pack-os-core-from-0.tar" in packs
    packed = set()
    for rel in packs:
        blob = (Path(stream.www) / rel.lstrip("/")).read_bytes()
        raw = zstandard.ZstdDecompressor().stream_reader(blob, read_across_frames=True).read()
        with tarfile.open(fileobj=io.BytesIO(raw)) as t:
            packed |= {m.name.removeprefix("staged/").removesuffix(".tar") for m in t.getmembers() if m.isreg()}
    fullfiles = {e.path.rsplit("/", 1)[1].removesuffix(".tar") for e in content.requests() if "/files/" in e.path}
    assert fullfiles and not fullfiles & packed
