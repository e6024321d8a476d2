"""The ELF dependency check: a bundle must find its libraries in itself, its includes or os-core.

In the example tree, only /opt/app/bin/find needs libm.so.6. Putting libm in a bundle of its own
that `app` does not include breaks `app`; including it repairs it.
"""

from __future__ import annotations

import os
import shutil

import exampletree
import pytest
import reader
from buildutil import assert_same_snapshot, cli, copy_www, create_args, snapshot

PROGRAM = "/opt/app/bin/find"
LIBRARY = "/usr/lib/libm.so.6"
BROKEN = f"""\
[bundle.app]
paths = ["/opt/app"]

[bundle.mathlib]
paths = ["{LIBRARY}"]
"""
FIXED = BROKEN.replace("[bundle.app]\n", '[bundle.app]\nincludes = ["mathlib"]\n')


@pytest.fixture(scope="module")
def elf_tree(tmp_path_factory):
    d = tmp_path_factory.mktemp("elf")
    root = exampletree.make_tree(str(d / "rootfs"), 1)
    assert os.path.isfile(os.path.join(root, LIBRARY.lstrip("/")))
    broken, fixed = d / "broken.toml", d / "fixed.toml"
    broken.write_text(BROKEN)
    fixed.write_text(FIXED)
    return root, str(broken), str(fixed)


def test_check_bundles_names_program_and_library(elf_tree):
    root, broken, _ = elf_tree
    r = cli("check-bundles", "--rootfs", root, "--bundles", broken, "--jobs", "2")
    assert r.rc == 1
    problems = [line for line in r.out.splitlines() if line.startswith("bundle ")]
    assert len(problems) == 1, r.out
    assert PROGRAM in problems[0] and LIBRARY in problems[0] and problems[0].startswith("bundle app:")


def test_includes_satisfy_the_check(elf_tree):
    root, _, fixed = elf_tree
    r = cli("check-bundles", "--rootfs", root, "--bundles", fixed, "--jobs", "2")
    assert r.rc == 0, r.out
    assert "0 problem(s)" in r.out


def test_example_bundles_are_clean(elf_tree, stream):
    root, _, _ = elf_tree
    r = cli("check-bundles", "--rootfs", root, "--bundles", stream.bundles)
    assert r.rc == 0, r.out


def test_strict_build_fails_and_publishes_nothing(elf_tree, keys, tmp_path):
    root, broken, _ = elf_tree
    www = str(tmp_path / "www")
    r = cli(*create_args(www, root, 10, keys.private, broken, "--strict"))
    line = r.one_line_error()
    assert PROGRAM in line and LIBRARY in line
    published = [p for p in snapshot(www) if p != b".lock"]
    assert published == []


def test_strict_failure_leaves_an_existing_stream_alone(elf_tree, stream, tmp_path):
    root, broken, _ = elf_tree

    www = copy_www(stream.www, str(tmp_path / "www"))
    before = snapshot(www)
    r = cli(*create_args(www, root, 30, stream.keys.private, broken, "--strict"))
    assert r.rc != 0
    after = snapshot(www)
    assert_same_snapshot(before, after)


def test_without_strict_the_build_warns_and_succeeds(elf_tree, keys, tmp_path):
    root, broken, _ = elf_tree
    www = str(tmp_path / "www")
    r = cli(*create_args(www, root, 10, keys.private, broken))
    assert r.rc == 0, r.err
    warnings = [line for line in r.out.splitlines() if "warning:" in line]
    assert len(warnings) == 1 and PROGRAM in warnings[0] and LIBRARY in warnings[0]
    assert reader.Www(www, keys.raw).latest(1).version == 10


def test_strict_build_with_includes_succeeds(elf_tree, keys, tmp_path):
    root, _, fixed = elf_tree
    www = str(tmp_path / "www")
    r = cli(*create_args(www, root, 10, keys.private, fixed, "--strict"))
    assert r.rc == 0, r.err
    bundles = reader.Www(www, keys.raw).bundles(10)
    assert bundles["app"].includes == ["os-core", "mathlib"]
    assert LIBRARY.encode() in bundles["mathlib"].by_path()
    assert LIBRARY.encode() not in bundles["os-core"].by_path()


def test_library_off_the_search_path_is_named_where_it_is(elf_tree, tmp_path):
    root, _, _ = elf_tree
    moved = tmp_path / "rootfs"
    shutil.copytree(root, moved, symlinks=True)
    private = moved / "usr/lib/private"
    private.mkdir()
    os.rename(moved / LIBRARY.lstrip("/"), private / "libm.so.6")
    bundles = tmp_path / "bundles.toml"
    bundles.write_text('[bundle.app]\npaths = ["/opt/app"]\n')
    r = cli("check-bundles", "--rootfs", str(moved), "--bundles", str(bundles))
    assert r.rc == 1
    problems = [line for line in r.out.splitlines() if line.startswith("bundle ")]
    assert problems == [
        f"bundle app: {PROGRAM} needs libm.so.6, but it is only at /usr/lib/private/libm.so.6, off its search path"
    ], r.out


def test_warnings_are_grouped_by_missing_library(elf_tree, keys, tmp_path):
    """Three programs missing one library give one warning line that counts them."""
    root, broken, _ = elf_tree
    tree = tmp_path / "rootfs"
    shutil.copytree(root, tree, symlinks=True)
    for n in (2, 3):
        shutil.copy2(tree / PROGRAM.lstrip("/"), tree / f"opt/app/bin/find{n}")
    r = cli(*create_args(str(tmp_path / "www"), str(tree), 10, keys.private, broken))
    assert r.rc == 0, r.err
    warnings = [line for line in r.out.splitlines() if "warning:" in line]
    assert len(warnings) == 1, r.out
    assert LIBRARY in warnings[0] and "(and 2 more file(s) need it)" in warnings[0]


def test_a_bundle_path_that_matches_nothing(elf_tree, keys, tmp_path):
    """A typo in a bundle path is a warning, and with --strict an error before anything is
    published."""
    root, _, _ = elf_tree
    typo = tmp_path / "typo.toml"
    typo.write_text('[bundle.app]\npaths = ["/opt/ap", "/opt/app/bin/fin?", "/usr/share/nothing/*"]\n')
    www = str(tmp_path / "www")
    r = cli(*create_args(www, root, 10, keys.private, str(typo)))
    assert r.rc == 0, r.err
    warnings = [line.strip() for line in r.out.splitlines() if "matches nothing" in line]
    assert warnings == [
        "warning: bundle app: path '/opt/ap' matches nothing in the rootfs",
        "warning: bundle app: path '/usr/share/nothing/*' matches nothing in the rootfs",
    ], r.out
    strict = cli(*create_args(str(tmp_path / "www2"), root, 10, keys.private, str(typo), "--strict"))
    assert strict.rc == 2
    assert "path '/opt/ap' matches nothing in the rootfs (and 1 more)" in strict.one_line_error()
    assert not os.path.exists(tmp_path / "www2" / "10")
