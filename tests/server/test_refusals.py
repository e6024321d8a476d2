"""Inputs create-update must refuse: a one-line error, a non-zero exit and www/ untouched."""

from __future__ import annotations

import os

import pytest
from buildutil import EXAMPLE_BUNDLES, assert_same_snapshot, cli, copy_www, create_args, snapshot


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


def test_refusals_leave_a_www_that_builds(stream, target, tmp_path):
    """After a refusal, the next correct build continues the stream."""
    bad = _bundles(tmp_path, '[bundle.a]\nincludes = ["a"]\n')
    assert cli(*create_args(target, stream.rootfs[20], 30, stream.keys.private, bad)).rc != 0
    r = cli(*create_args(target, stream.rootfs[20], 30, stream.keys.private))
    assert r.rc == 0, r.err
