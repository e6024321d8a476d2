"""Inputs create-update must refuse: a one-line error, a non-zero exit and www/ untouched."""

from __future__ import annotations

import os
import re

import pytest
import reader
from buildutil import EXAMPLE_BUNDLES, assert_same_snapshot, cli, copy_www, create_args, snapshot
from support import oracle
from support.environment import unavailable


@pytest.fixture
def target(stream, tmp_path):
    return copy_www(stream.www, str(tmp_path / "www"))


def _bundles(tmp_path, text: str) -> str:
    path = tmp_path / "bundles.toml"
    path.write_text(text)
    return str(path)


def _key(tmp_path, source: str, mode: int = 0o600, text: str | None = None) -> str:
    """A copy of a key file with `mode`, or a file of `text`."""
    path = tmp_path / f"key-{mode:o}-{len(os.listdir(tmp_path))}"
    path.write_text(text if text is not None else open(source).read())
    path.chmod(mode)
    return str(path)


def _untyped(path: str) -> str:
    """The key file's digits alone, as releases before typed key files wrote them."""
    return open(path).read().split()[-1] + "\n"


def _new_key(tmp_path, name: str = "new") -> str:
    private = str(tmp_path / f"{name}.key")
    assert cli("keygen", "--private", private, "--public", private + ".pub").rc == 0
    return private


CASES = {
    "version-equal": (lambda s, t: {"version": 20}, "not above"),
    "version-below": (lambda s, t: {"version": 15}, "not above"),
    "unknown-include": (
        lambda s, t: {"bundles": _bundles(t, '[bundle.a]\nincludes = ["nope"]\npaths = ["/opt"]\n')},
        "nope",
    ),
    "include-cycle": (
        lambda s, t: {"bundles": _bundles(t, '[bundle.a]\nincludes = ["b"]\n[bundle.b]\nincludes = ["a"]\n')},
        "cycle",
    ),
    "rootfs-is-a-file": (lambda s, t: {"rootfs": s.keys.public}, "not a directory"),
    "rootfs-missing": (lambda s, t: {"rootfs": str(t / "no-such-rootfs")}, "no-such-rootfs"),
    "malformed-toml": (lambda s, t: {"bundles": _bundles(t, '[bundle.app\npaths = ["/opt"\n')}, "TOML"),
    "missing-key": (lambda s, t: {"key": str(t / "absent.key")}, "absent.key"),
    "public-key-as-signing-key": (lambda s, t: {"key": _key(t, s.keys.public)}, "is a public key"),
    "untyped-public-key-as-signing-key": (
        lambda s, t: {"key": _key(t, "", text=_untyped(s.keys.public))},
        "is the stream's public key (it signed version 20)",
    ),
    "untyped-key-that-signed-nothing": (
        lambda s, t: {"key": _key(t, "", text=_untyped(_new_key(t)))},
        "untyped key, which may as well be a public key",
    ),
    "group-readable-key": (lambda s, t: {"key": _key(t, s.keys.private, 0o640)}, "mode 0640"),
    "world-readable-key": (lambda s, t: {"key": _key(t, s.keys.private, 0o644)}, "mode 0644"),
    "another-key": (lambda s, t: {"key": _new_key(t)}, "to rotate, pass --rotate-key"),
    "rotation-without-the-old-key": (
        lambda s, t: {"key": _new_key(t), "extra": ["--rotate-key", _new_key(t, "other")]},
        "did not sign version 20",
    ),
    "rotation-with-the-public-old-key": (
        lambda s, t: {"key": _new_key(t), "extra": ["--rotate-key", _key(t, s.keys.public)]},
        "is a public key",
    ),
    "unknown-delta-version": (lambda s, t: {"extra": ["--delta-versions", "10 15"]}, "15"),
    "unknown-delta-version-only": (lambda s, t: {"extra": ["--delta-versions", "7"]}, "7"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused(case, stream, target, tmp_path):
    make, expected = CASES[case]
    spec = {"version": 30, "bundles": EXAMPLE_BUNDLES, "rootfs": stream.rootfs[20], "key": stream.keys.private}
    spec.update(make(stream, tmp_path))
    before = snapshot(target)
    args = create_args(target, spec["rootfs"], spec["version"], spec["key"], spec["bundles"], *spec.get("extra", []))
    r = cli(*args)
    line = r.one_line_error()
    assert expected in line
    assert r.out == ""
    assert_same_snapshot(before, snapshot(target))
    assert not [n for n in os.listdir(target) if n.startswith(".stage")]


def test_an_untyped_private_key_that_signed_the_stream_still_signs(stream, target, tmp_path):
    """Key files of earlier releases keep working where the stream proves what they are."""
    key = _key(tmp_path, "", text=_untyped(stream.keys.private))
    r = cli(*create_args(target, stream.rootfs[20], 30, key))
    assert r.rc == 0, r.err


def test_a_new_stream_refuses_an_untyped_key(stream, tmp_path):
    key = _key(tmp_path, "", text=_untyped(stream.keys.private))
    www = str(tmp_path / "fresh")
    r = cli(*create_args(www, stream.rootfs[10], 10, key))
    assert "ed25519-private" in r.one_line_error()
    assert not os.path.exists(os.path.join(www, "10"))


def test_a_malformed_stream_identity_is_refused_before_www_is_made(stream, tmp_path):
    """An identity devices could not hold to is an input error: refused before the stream's
    directory (and its lock) is made, as a malformed bundles file is."""
    www = str(tmp_path / "fresh")
    r = cli(*create_args(www, stream.rootfs[10], 10, stream.keys.private, EXAMPLE_BUNDLES, "--stream", "my image!"))
    assert "stream identity 'my image!'" in r.one_line_error()
    assert not os.path.exists(www)


@pytest.mark.parametrize("compat", ["machine\nstream:\tother", "two words"])
def test_a_malformed_compat_id_is_refused_before_www_is_made(stream, tmp_path, compat):
    """A compat id is one header line of the signed MoM: one that would add a line, or that a
    device could not hold to, is refused, as a malformed stream identity is."""
    www = str(tmp_path / "fresh")
    r = cli(*create_args(www, stream.rootfs[10], 10, stream.keys.private, EXAMPLE_BUNDLES, "--compat", compat))
    assert "compat id" in r.one_line_error()
    assert not os.path.exists(www)


def test_refusals_leave_a_www_that_builds(stream, target, tmp_path):
    """After a refusal, the next correct build continues the stream."""
    bad = _bundles(tmp_path, '[bundle.a]\nincludes = ["a"]\n')
    assert cli(*create_args(target, stream.rootfs[20], 30, stream.keys.private, bad)).rc != 0
    r = cli(*create_args(target, stream.rootfs[20], 30, stream.keys.private))
    assert r.rc == 0, r.err


# -- a stream's order, identity and compat id --------------------------------------------------


def _resign(www: str, rel: str, data: bytes, key: str) -> None:
    """Replace a signed file of `www` with `data` and its signature by `key`."""
    import nacl.signing

    with open(os.path.join(www, rel), "wb") as f:
        f.write(data)
    seed = oracle.load_key(key)
    signer = nacl.signing.SigningKey(seed)
    line = f"ed25519 {oracle.keyid(bytes(signer.verify_key))} {signer.sign(data).signature.hex()}\n"
    with open(os.path.join(www, rel + ".sig"), "w") as f:
        f.write(line)


def _refused(target: str, args: list[str], expected: str, *more: str) -> None:
    before = snapshot(target)
    line = cli(*args).one_line_error()
    for text in (expected, *more):
        assert text in line, line
    assert_same_snapshot(before, snapshot(target))


def test_refuses_a_pointer_below_the_published_one(stream, target):
    """A www whose signed latest names a version it does not hold (1000): publishing 30 would
    move the pointer backwards, which devices that trust 1000's refuse."""
    latest = os.path.join(target, "version/format1/latest")
    with open(latest, "rb") as f:
        lines = f.read().split(b"\n")
    _resign(target, "version/format1/latest", b"\n".join([b"1000", *lines[1:]]), stream.keys.private)
    args = create_args(target, stream.rootfs[20], 30, stream.keys.private)
    _refused(target, args, "version 30 (timestamp", "below the published one, version 1000 (timestamp")


@pytest.mark.parametrize("option", [["--compat", "other-machine"], ["--stream", "another-image"]])
def test_refuses_another_compat_or_stream_part_way_unless_told(stream, target, option):
    args = create_args(target, stream.rootfs[20], 30, stream.keys.private, EXAMPLE_BUNDLES, *option)
    _refused(target, args, option[1], "--change-stream")
    r = cli(*args, "--change-stream")
    assert r.rc == 0, r.err
    www = reader.Www(target, stream.keys.raw)
    old, new = www.mom(20).header, www.mom(30).header
    changed = option[0][2:]
    assert new.get(changed, "") == option[1] and old.get(changed, "") != option[1]
    assert www.latest(1).stream == new["stream"]
    kept = "stream" if changed == "compat" else "compat"
    assert new.get(kept) == old.get(kept)


def test_a_stream_keeps_its_identity(stream, target):
    """Named at its first version (from its content), kept without --stream, and carried by
    every pointer."""
    www = reader.Www(target, stream.keys.raw)
    first = www.mom(10).header["stream"]
    assert re.fullmatch(r"[0-9a-f]{16}", first)
    assert www.mom(20).header["stream"] == first == www.latest(1).stream
    r = cli(*create_args(target, stream.rootfs[20], 30, stream.keys.private))
    assert r.rc == 0, r.err
    assert www.mom(30).header["stream"] == first == www.latest(1).stream


def test_a_format_without_stream_identities_continues_in_a_new_format(stream, target):
    """A www whose last version was published before streams had an identity: its devices read
    no pointer with one, so the stream goes on in the next format."""
    for rel in ("20/Manifest.MoM", "version/format1/latest"):
        with open(os.path.join(target, rel), "rb") as f:
            data = f.read()
        old = b"".join(line for line in data.splitlines(keepends=True) if not line.startswith(b"stream:\t"))
        assert old != data
        _resign(target, rel, old, stream.keys.private)
    args = create_args(target, stream.rootfs[20], 30, stream.keys.private)
    _refused(target, args, "version 20 of format 1 has no stream identity", "--format 2")
    r = cli(*args, "--format", "2")
    assert r.rc == 0, r.err
    www = reader.Www(target, stream.keys.raw)
    assert www.mom(30).header["stream"] == www.latest(2).stream


def test_a_stream_that_moved_to_a_new_format_is_not_published_in_the_old_one(stream, target):
    """Once format 2 has a version, later versions are format 2's: one published in format 1
    would keep that format's devices from the version that moves them (docs/format.md)."""
    r = cli(*create_args(target, stream.rootfs[20], 30, stream.keys.private, EXAMPLE_BUNDLES, "--format", "2"))
    assert r.rc == 0, r.err
    args = create_args(target, stream.rootfs[20], 40, stream.keys.private, EXAMPLE_BUNDLES, "--format", "1")
    _refused(target, args, "format 2", "--format 2")


def test_refuses_xattrs_a_fullfile_cannot_carry(stream, tmp_path):
    """A file whose xattr records pass the 64 KiB a device takes in a fullfile stops the build,
    naming it, before anything is published (tmpfs holds that many xattrs; ext4 does not)."""
    import shutil
    import tempfile

    from buildutil import make_stream_tree

    try:
        shm = tempfile.mkdtemp(dir="/dev/shm")
    except OSError:
        unavailable("no /dev/shm")
    try:
        root = make_stream_tree(os.path.join(shm, "rootfs"), 1)
        path = os.path.join(root, "usr/share/data/same.txt")
        try:
            for i in range(20):
                os.setxattr(path, f"user.big{i:02d}", b"v" * 4000)
        except OSError:
            unavailable("this tmpfs does not hold 80 KB of xattrs")
        www = tmp_path / "www"
        r = cli(*create_args(www, root, 10, stream.keys.private))
        assert r.rc != 0 and "Traceback" not in r.err
        assert "/usr/share/data/same.txt" in r.err and "xattr" in r.err, r.err
        assert not (www / "10").exists()
    finally:
        shutil.rmtree(shm)
