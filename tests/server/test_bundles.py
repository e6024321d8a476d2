"""The bundles file: glob semantics, claims, parents, os-core, and what it refuses."""

from __future__ import annotations

import pytest
from swupd.format.errors import UsageError
from swupd_server import bundles as bl

PATHS = [
    "/etc", "/etc/motd",
    "/opt", "/opt/app", "/opt/app/bin", "/opt/app/bin/grep", "/opt/apple",
    "/usr", "/usr/bin", "/usr/bin/app", "/usr/bin/app-helper", "/usr/bin/xapp", "/usr/bin/sub", "/usr/bin/sub/app",
    "/usr/lib", "/usr/lib/foo", "/usr/lib/foo/bar", "/usr/lib/x", "/usr/lib/x/foo",
    "/usr/share", "/usr/share/doc", "/usr/share/doc/a", "/usr/share/doc/a/b", "/usr/share/doc/a/b/c.txt",
    "/usr/x.conf", "/usr/a", "/usr/a/x.conf", "/usr/a/b", "/usr/a/b/x.conf",
    "/usr/lib/lib1.so", "/usr/lib/lib2.so", "/usr/lib/libA.so",
]  # fmt: skip


def claim(spec: dict) -> dict[str, set[str]]:
    return bl.assign(bl.parse({"bundle": spec}), PATHS)


def test_star_stays_in_one_component():
    got = claim({"b": {"paths": ["/usr/bin/app*"]}})["b"]
    assert {"/usr/bin/app", "/usr/bin/app-helper"} <= got
    assert "/usr/bin/xapp" not in got and "/usr/bin/sub/app" not in got


def test_star_in_the_middle():
    got = claim({"b": {"paths": ["/usr/*/foo"]}})["b"]
    assert "/usr/lib/foo" in got
    assert "/usr/lib/foo/bar" in got  # below a matched directory
    assert "/usr/lib/x/foo" not in got


def test_double_star_spans_components():
    got = claim({"b": {"paths": ["/usr/**/x.conf"]}})["b"]
    assert {"/usr/x.conf", "/usr/a/x.conf", "/usr/a/b/x.conf"} <= got
    docs = claim({"b": {"paths": ["/usr/share/doc/**"]}})["b"]
    assert {"/usr/share/doc/a", "/usr/share/doc/a/b/c.txt"} <= docs


def test_question_mark_and_classes():
    assert {"/usr/lib/lib1.so", "/usr/lib/lib2.so", "/usr/lib/libA.so"} <= claim(
        {"b": {"paths": ["/usr/lib/lib?.so"]}}
    )["b"]
    digits = claim({"b": {"paths": ["/usr/lib/lib[0-9].so"]}})["b"]
    assert {"/usr/lib/lib1.so", "/usr/lib/lib2.so"} <= digits and "/usr/lib/libA.so" not in digits
    negated = claim({"b": {"paths": ["/usr/lib/lib[!0-9].so"]}})["b"]
    assert "/usr/lib/libA.so" in negated and "/usr/lib/lib1.so" not in negated


def test_directory_claims_its_subtree():
    got = claim({"b": {"paths": ["/opt/app"]}})["b"]
    assert {"/opt/app", "/opt/app/bin", "/opt/app/bin/grep"} <= got
    assert "/opt/apple" not in got  # a literal path is not a prefix
    assert got == claim({"b": {"paths": ["/opt/app/"]}})["b"]


def test_literal_path_and_parents():
    got = claim({"b": {"paths": ["/usr/lib/foo/bar"]}})["b"]
    assert got == {"/usr", "/usr/lib", "/usr/lib/foo", "/usr/lib/foo/bar"}


def test_os_core_gets_what_no_bundle_claims():
    claimed = claim({"b": {"paths": ["/opt/app"]}})
    core = claimed[bl.OS_CORE]
    assert {"/etc", "/etc/motd", "/opt/apple", "/usr/bin/app"} <= core
    assert "/opt/app/bin/grep" not in core
    assert "/opt" in core and "/opt" in claimed["b"]  # unclaimed itself, and a parent of b's
    everything = set().union(*claimed.values())
    assert everything == set(PATHS)


def test_a_path_may_be_in_several_bundles():
    claimed = claim({"a": {"paths": ["/opt/app/bin"]}, "b": {"paths": ["/opt/app"]}})
    assert "/opt/app/bin/grep" in claimed["a"] and "/opt/app/bin/grep" in claimed["b"]
    assert "/opt/app/bin/grep" not in claimed[bl.OS_CORE]


def test_includes_closure_in_order():
    specs = bl.parse({"bundle": {"a": {"includes": ["b", "c"]}, "b": {"includes": ["c"]}, "c": {}}})
    assert bl.closure(specs, "a") == ["b", "c"]
    assert bl.closure(specs, "c") == []
    assert set(specs) == {"a", "b", "c", bl.OS_CORE}


@pytest.mark.parametrize(
    "data",
    [
        {"bundle": {"a": {"includes": ["a"]}}},
        {"bundle": {"a": {"includes": ["b"]}, "b": {"includes": ["c"]}, "c": {"includes": ["a"]}}},
        {"bundle": {"a": {"includes": ["missing"]}}},
        {"bundle": {"bad name": {}}},
        {"bundle": {"MoM": {}}},
        {"bundle": {"a": {"paths": "/opt"}}},
        {"bundle": {"a": {"paths": ["opt/relative"]}}},
        {"bundle": {"a": {"paths": [1]}}},
        {"bundle": {"a": {"other": []}}},
        {"bundle": {"os-core": {"includes": ["a"]}, "a": {}}},
        {"bundles": {}},
        {"bundle": []},
    ],
)
def test_refused(data):
    with pytest.raises(UsageError):
        bl.parse(data)


def test_unclosed_bracket_is_refused():
    with pytest.raises(UsageError):
        claim({"b": {"paths": ["/usr/lib/lib[0-9.so"]}})


def test_load_reads_toml(tmp_path):
    path = tmp_path / "b.toml"
    path.write_text('[bundle.app]\nincludes = []\npaths = ["/opt/app"]\n')
    specs = bl.load(str(path))
    assert specs["app"].patterns == ["/opt/app"] and bl.OS_CORE in specs
    path.write_text("[bundle.app\n")
    with pytest.raises(UsageError):
        bl.load(str(path))
    with pytest.raises(UsageError):
        bl.load(str(tmp_path / "absent.toml"))
