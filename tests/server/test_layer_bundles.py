"""The layer's bundles file (meta-swupd/lib/swupdlayer/bundles.py) as swupd-server reads it:
every name the format allows survives, each bundle holds its packages' files."""

from __future__ import annotations

import json
import os
import sys

import pytest
import reader
from buildutil import TOP, cli, create_args
from support.trees import write_file

sys.path.insert(0, os.path.join(TOP, "meta-swupd", "lib"))
from swupdlayer import bundles as layer

FILES = {"tools-pkg": ["/usr/bin/dev-tool"], "gxx-pkg": ["/usr/bin/g++", "/usr/lib/gcc/cc1plus"]}


def _pkgdata(tmp_path) -> str:
    d = tmp_path / "pkgdata"
    (d / "runtime").mkdir(parents=True)
    for pkg, files in FILES.items():
        (d / "runtime" / pkg).write_text(f"PKG:{pkg}: {pkg}\nFILES_INFO:{pkg}: {json.dumps(dict.fromkeys(files, 1))}\n")
    return str(d)


def _rootfs(tmp_path) -> str:
    root = str(tmp_path / "rootfs")
    for path in ["/usr/bin/sh", *(p for files in FILES.values() for p in files)]:
        write_file(root, path, path.encode())
    return root


def test_names_with_dots_and_plus_reach_the_published_stream(keys, tmp_path):
    text = layer.bundles_toml(
        ["dev.tools", "g++"],
        {"dev.tools": ["tools-pkg"], "g++": ["gxx-pkg"]},
        {"g++": ["dev.tools"]},
        _pkgdata(tmp_path),
        [],
    )
    (tmp_path / "bundles.toml").write_text(text)
    www = str(tmp_path / "www")
    r = cli(*create_args(www, _rootfs(tmp_path), 10, keys.private, str(tmp_path / "bundles.toml")))
    assert r.rc == 0, r.err
    published = reader.Www(www, keys.raw).bundles(10)
    assert set(published) == {"os-core", "dev.tools", "g++"}
    assert b"/usr/bin/dev-tool" in published["dev.tools"].by_path()
    assert {b"/usr/bin/g++", b"/usr/lib/gcc/cc1plus"} <= set(published["g++"].by_path())
    assert "dev.tools" in published["g++"].includes


def test_an_include_of_no_bundle_is_refused_by_the_server(keys, tmp_path):
    text = layer.bundles_toml(["g++"], {"g++": ["gxx-pkg"]}, {"g++": ["ghost"]}, _pkgdata(tmp_path), [])
    (tmp_path / "bundles.toml").write_text(text)
    r = cli(*create_args(str(tmp_path / "www"), _rootfs(tmp_path), 10, keys.private, str(tmp_path / "bundles.toml")))
    assert "bundle 'g++' includes unknown bundle 'ghost'" in r.one_line_error()


def test_a_package_without_package_data_names_the_package(tmp_path):
    with pytest.raises(layer.BundleConfigError, match="no package data for 'gone'"):
        layer.bundles_toml(["x"], {"x": ["gone"]}, {}, _pkgdata(tmp_path), [])
