"""Key rotation seen from the device: a device learns a stream's new signing key only through
an introduction signed by a key it trusts, keeps it, and never learns a key otherwise.

The stream is real: version 10 signed by the release key, 20 built with `--rotate-key` (signed
by both keys, introducing the new one), 30 signed by the new key alone, 40 rotating again to a
third key and signed by it alone; served over HTTP."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import clientkit as ck
import pytest
from clientkit import Device
from support.httpserver import FaultServer


@dataclass(frozen=True)
class Rotation:
    stream: ck.Stream  # rootfs of 10 to 40; `www` has all four versions
    www20: str  # the stream when 20 was the newest
    www30: str  # the stream when 30 was the newest
    new: tuple[str, str]  # (private, public) of the key 20 introduces
    third: tuple[str, str]  # the key 40 introduces
    forger: tuple[str, str]  # a key no trusted key ever signed


def _keyid(public_file: str) -> str:
    with open(public_file) as f:
        return hashlib.sha256(bytes.fromhex(f.read().split()[-1])).hexdigest()[:16]


@pytest.fixture(scope="module")
def rotation(tmp_path_factory: pytest.TempPathFactory, stream: ck.Stream) -> Rotation:
    d = tmp_path_factory.mktemp("rotation")
    keys = {}
    for name in ("new", "third", "forger"):
        keys[name] = (str(d / f"{name}.key"), str(d / f"{name}.pub"))
        ck.server_cli("keygen", "--private", keys[name][0], "--public", keys[name][1])
    www, bundles = str(d / "www"), stream.bundles_toml
    rootfs = {**stream.rootfs, 40: stream.rootfs[30]}
    ck.build_version(www, rootfs[10], 10, stream.private, bundles)
    ck.build_version(www, rootfs[20], 20, keys["new"][0], bundles, "--rotate-key", stream.private)
    www20 = ck.copy_www(www, str(d / "www20"))
    ck.build_version(www, rootfs[30], 30, keys["new"][0], bundles)
    www30 = ck.copy_www(www, str(d / "www30"))
    ck.build_version(www, rootfs[40], 40, keys["third"][0], bundles, "--rotate-key", keys["new"][0])
    rotated = dataclasses.replace(stream, www=www, www30="", rootfs=rootfs)
    return Rotation(rotated, www20, www30, keys["new"], keys["third"], keys["forger"])


def _install(tmp_path: Path, rotation: Rotation, version: int = 10) -> Device:
    """A device with every bundle at `version`, trusting the release key alone: installed from
    the stream as it was when 20 was the newest, which the release key verifies throughout."""
    dev = Device(str(tmp_path / "root"), str(tmp_path / "state"), "", rotation.stream)
    with FaultServer(rotation.www20) as srv:
        bundles = ",".join(ck.ALL_BUNDLES[1:])
        r = ck.run("os-install", dev.root, "--version", str(version), "--bundles", bundles, *dev.opts(srv.url())[2:])
    assert r.rc == 0, r.err
    assert _learned(dev) == set()
    return dev


def _learned(dev: Device) -> set[str]:
    d = Path(dev.state, "keys")
    return {p.name[:-4] for p in d.glob("*.pub")} if d.is_dir() else set()


def test_a_device_behind_the_rotation_learns_the_new_key(rotation: Rotation, tmp_path: Path) -> None:
    """At 10 (old key only) straight to 30 (new key only): `latest` and the MoM verify through
    the introduction the old key signed, which the device then keeps."""
    dev = _install(tmp_path, rotation)
    with FaultServer(rotation.www30) as srv:
        dev.url = srv.url()
        before = dev.tree()
        r = dev.swupd("update")
        assert r.rc == 0, r.err
        assert dev.version() == 30
        ck.assert_tree(dev.root, rotation.stream.expected(30, ck.ALL_BUNDLES, old=before))
        new = _keyid(rotation.new[1])
        assert _learned(dev) == {new}
        assert [e.status for e in srv.requests(f"/keys/{new}.pub")] == [200]
        # Kept: the next commands verify the new key's signatures without asking again.
        assert dev.swupd("verify").rc == 0
        assert dev.swupd("check-update").rc == 1
        assert [e.status for e in srv.requests(f"/keys/{new}.pub")] == [200]


def test_a_device_at_the_rotation_learns_the_new_key(rotation: Rotation, tmp_path: Path) -> None:
    """At 20, which both keys signed (verified with the old one), on to 30."""
    dev = _install(tmp_path, rotation)
    before = dev.tree()
    with FaultServer(rotation.www20) as srv:
        assert dev.swupd("update", url=srv.url()).rc == 0 and dev.version() == 20
        assert _learned(dev) == set()  # nothing to learn yet: the old key verifies 20
    with FaultServer(rotation.www30) as srv:
        r = dev.swupd("update", url=srv.url())
        assert r.rc == 0, r.err
        assert dev.version() == 30
        ck.assert_tree(dev.root, rotation.stream.expected(30, ck.ALL_BUNDLES, old=before))
        assert _learned(dev) == {_keyid(rotation.new[1])}


def test_a_chain_of_two_rotations(rotation: Rotation, tmp_path: Path) -> None:
    """At 10 straight to 40: the third key was introduced by the new key, which the old one
    introduced; the device follows both introductions."""
    dev = _install(tmp_path, rotation)
    with FaultServer(rotation.stream.www) as srv:
        before = dev.tree()
        r = dev.swupd("update", url=srv.url())
        assert r.rc == 0, r.err
        assert dev.version() == 40
        ck.assert_tree(dev.root, rotation.stream.expected(40, ck.ALL_BUNDLES, old=before))
        assert _learned(dev) == {_keyid(rotation.new[1]), _keyid(rotation.third[1])}


def _forge(rotation: Rotation, tmp_path: Path, intro_sig: bytes | None) -> Path:
    """www30 with `latest` and 30's MoM signed by the forger alone, and an introduction of the
    forger's key signed by the forger (or carrying `intro_sig`)."""
    www = Path(ck.copy_www(rotation.www30, str(tmp_path / "forged")))
    private, public = rotation.forger
    for name in ("version/format1/latest", "30/Manifest.MoM"):
        (www / f"{name}.sig").write_bytes(ck.sign(private, (www / name).read_bytes()))
    intro = www / "keys" / f"{_keyid(public)}.pub"
    intro.write_bytes(Path(public).read_bytes())
    Path(f"{intro}.sig").write_bytes(intro_sig if intro_sig is not None else ck.sign(private, intro.read_bytes()))
    return www


@pytest.mark.parametrize("how", ["self-signed", "genuine signature of another introduction"])
def test_a_forged_introduction_is_refused(rotation: Rotation, tmp_path: Path, how: str) -> None:
    genuine = Path(rotation.www30, "keys", f"{_keyid(rotation.new[1])}.pub.sig").read_bytes()
    www = _forge(rotation, tmp_path, None if how == "self-signed" else genuine)
    dev = _install(tmp_path, rotation)
    with FaultServer(str(www)) as srv:
        snap = dev.snapshot()
        r = dev.swupd("update", url=srv.url())
        assert r.rc == 4, (r.rc, r.err)
        assert "no valid signature by a trusted key" in r.error_line()
        assert ck.diff_snapshots(snap, dev.snapshot()) == ""
        assert _learned(dev) == set()
        assert srv.requests(f"/keys/{_keyid(rotation.forger[1])}.pub")  # it was looked at


def test_learned_keys_last_only_as_long_as_the_key_that_introduced_them(rotation: Rotation, tmp_path: Path) -> None:
    """A device configured to trust another key no longer trusts what the old key introduced."""
    dev = _install(tmp_path, rotation)
    with FaultServer(rotation.www30) as srv:
        assert dev.swupd("update", url=srv.url()).rc == 0 and _learned(dev)
        assert dev.swupd("verify", url=srv.url()).rc == 0
        r = dev.swupd("verify", url=srv.url(), key=rotation.forger[1])
        assert r.rc == 4, (r.rc, r.err)


def _chain_of_keys(www: Path, stream: ck.Stream, length: int) -> None:
    """Introductions of `length` new keys, each signed by the one before it (the first by the
    release key), and `latest` signed by the last key alone."""
    from swupd.format import signing

    signer = signing.load_private(stream.private)
    for _ in range(length):
        key = signing.generate()
        intro = www / "keys" / f"{key.public.keyid}.pub"
        intro.parent.mkdir(exist_ok=True)
        intro.write_bytes(key.public.dumps())
        Path(f"{intro}.sig").write_bytes(signing.sign(intro.read_bytes(), [signer]))
        signer = key
    latest = www / "version/format1/latest"
    Path(f"{latest}.sig").write_bytes(signing.sign(latest.read_bytes(), [signer]))


@pytest.mark.parametrize("length", [8, 9])
def test_a_chain_of_introductions_is_followed_up_to_its_limit(
    v10_all: Device, clone_device, private_www: Path, private_server: FaultServer, stream: ck.Stream, length: int
) -> None:
    """Limits.max_key_chain (8) introductions are followed; a ninth is not."""
    _chain_of_keys(private_www, stream, length)
    dev = clone_device(v10_all, private_server.url())
    r = dev.swupd("check-update")
    if length <= 8:
        assert r.rc == 0, r.err
        assert len(_learned(dev)) == length
    else:
        assert r.rc == 4, (r.rc, r.err)
        assert _learned(dev) == set()
        assert len([e for e in private_server.log if e.path.startswith("/keys/") and e.path.endswith(".pub")]) == 8


def test_an_introduction_of_another_key_than_its_name_is_refused(
    v10_all: Device, clone_device, private_www: Path, private_server: FaultServer, stream: ck.Stream
) -> None:
    """keys/<id>.pub must hold the key with that id, even when a trusted key signed it."""
    from swupd.format import signing

    _chain_of_keys(private_www, stream, 1)
    (intro,) = (private_www / "keys").glob("*.pub")
    other = signing.generate().public.dumps()
    intro.write_bytes(other)
    Path(f"{intro}.sig").write_bytes(signing.sign(other, [signing.load_private(stream.private)]))
    dev = clone_device(v10_all, private_server.url())
    r = dev.swupd("check-update")
    assert r.rc == 4, (r.rc, r.err)
    assert _learned(dev) == set()
    assert private_server.requests(f"/keys/{intro.name}")  # looked at, and not taken


@pytest.mark.parametrize("how", ["altered", "another stream"])
def test_no_key_is_learned_through_something_refused(rotation: Rotation, tmp_path: Path, how: str) -> None:
    """Beside the new key's genuine introduction, a `latest` the new key did not sign (altered)
    or one of another stream the new key signed (as a stream that shares the old key would
    publish) is refused, and the device keeps no key for it: a key is learned only together
    with a file that passes every check."""
    www = Path(ck.copy_www(rotation.www30, str(tmp_path / "served")))
    latest = www / "version/format1/latest"
    if how == "altered":
        latest.write_bytes(latest.read_bytes().replace(b"30\n", b"31\n", 1))
        rc, said = 4, "no valid signature by a trusted key"
    else:
        text = latest.read_bytes()
        stream = text.split(b"stream:")[1].split(b"\n")[0].strip()
        latest.write_bytes(text.replace(stream, b"another-" + stream))
        Path(f"{latest}.sig").write_bytes(ck.sign(rotation.new[0], latest.read_bytes()))
        rc, said = 9, "belongs to stream"
    dev = _install(tmp_path, rotation)
    with FaultServer(str(www)) as srv:
        snap = dev.snapshot()
        r = dev.swupd("update", url=srv.url())
        assert r.rc == rc, (r.rc, r.err)
        assert said in r.error_line()
        assert ck.diff_snapshots(snap, dev.snapshot()) == ""
        assert srv.requests(f"/keys/{_keyid(rotation.new[1])}.pub")  # it was looked at
        assert _learned(dev) == set()
    # The genuine stream still teaches the key.
    with FaultServer(rotation.www30) as srv:
        r = dev.swupd("update", url=srv.url())
        assert r.rc == 0, r.err
        assert _learned(dev) == {_keyid(rotation.new[1])}
