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


def test_refusals_leave_a_www_that_builds(stream, target, tmp_path):
    """After a refusal, the next correct build continues the stream."""
    bad = _bundles(tmp_path, '[bundle.a]\nincludes = ["a"]\n')
    assert cli(*create_args(target, stream.rootfs[20], 30, stream.keys.private, bad)).rc != 0
    r = cli(*create_args(target, stream.rootfs[20], 30, stream.keys.private))
    assert r.rc == 0, r.err
