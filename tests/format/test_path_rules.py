"""Path and bundle name rules."""

from __future__ import annotations

import os

import pytest
from swupd.format import paths
from swupd.format.errors import FormatError
from swupd.format.limits import Limits

GOOD = ["/", "/usr", "/usr/bin/ls", "/a b/c", "/ünï/名前", os.fsdecode(b"/raw-\xff\xfe"), "/.hidden", "/a/...",
        "/a/..b"]  # fmt: skip
BAD = ["", "usr/bin", "./usr", "/usr/", "//usr", "/usr//bin", "/usr/./bin", "/usr/../etc", "/..", "/.",
       "/a\0b", "/a\tb", "/a\nb", "/a\rb"]  # fmt: skip


@pytest.mark.parametrize("path", GOOD)
def test_good_paths(path):
    assert paths.check_path(path) == path
    assert paths.to_bytes(path) == os.fsencode(path)


@pytest.mark.parametrize("path", BAD)
def test_bad_paths(path):
    with pytest.raises(FormatError):
        paths.check_path(path)


def test_length_limits():
    limits = Limits(max_path_bytes=20, max_name_bytes=5)
    assert paths.check_path("/abcde/abcde", limits)
    with pytest.raises(FormatError):
        paths.check_path("/abcdef", limits)
    with pytest.raises(FormatError):
        paths.check_path("/abcde/abcde/abcde/abc", limits)
    # The limits count bytes, not characters.
    with pytest.raises(FormatError):
        paths.check_path("/ééé", limits)


def test_parents():
    assert paths.parents("/a/b/c") == ["/a", "/a/b"]
    assert paths.parents("/a") == []


@pytest.mark.parametrize("name", ["os-core", "app", "a.b_c+d-1", "X" * 128])
def test_good_bundle_names(name):
    assert paths.check_bundle_name(name) == name and paths.is_bundle_name(name)


@pytest.mark.parametrize("name", ["", "MoM", "full", "-app", ".app", "a/b", "a b", "X" * 129, "ünï", "a\n"])
def test_bad_bundle_names(name):
    assert not paths.is_bundle_name(name)
    with pytest.raises(FormatError):
        paths.check_bundle_name(name)
