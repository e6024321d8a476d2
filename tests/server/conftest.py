"""Fixtures of the build-side tests: a key pair and a published stream of versions 10 and 20.

Both are session-scoped (built once per test process) and must not be modified; a test that
builds on the stream copies its www/ first (`buildutil.copy_www`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest
import reader
from buildutil import EXAMPLE_BUNDLES, cli_process, create, make_stream_tree
from support import oracle


@dataclass(frozen=True)
class Keys:
    private: str
    public: str
    raw: bytes


@dataclass(frozen=True)
class Stream:
    www: str
    rootfs: dict[int, str]
    bundles: str
    keys: Keys

    def reader(self) -> reader.Www:
        return reader.Www(self.www, self.keys.raw)


@pytest.fixture(scope="session")
def keys(tmp_path_factory) -> Keys:
    d = tmp_path_factory.mktemp("keys")
    private, public = str(d / "signing.key"), str(d / "signing.pub")
    r = cli_process("keygen", "--private", private, "--public", public)
    assert r.rc == 0, r.err
    return Keys(private, public, oracle.load_key(public))


@pytest.fixture(scope="session")
def stream(tmp_path_factory, keys) -> Stream:
    """Versions 10 and 20 of the example OS (with extras), 10 built by the installed command in
    a subprocess and 20 in this process."""
    d = tmp_path_factory.mktemp("stream")
    roots = {10: make_stream_tree(str(d / "rootfs-10"), 1), 20: make_stream_tree(str(d / "rootfs-20"), 2)}
    www = str(d / "www")
    r = cli_process(
        "create-update", "--www", www, "--rootfs", roots[10], "--bundles", EXAMPLE_BUNDLES,
        "--version", "10", "--signing-key", keys.private, "--jobs", "2",
    )  # fmt: skip
    assert r.rc == 0, r.err
    create(www, roots[20], 20, keys.private)
    return Stream(www, roots, EXAMPLE_BUNDLES, keys)


@pytest.fixture(scope="session")
def installed10(tmp_path_factory, stream) -> str:
    """Version 10 as a device with every bundle has it, made from the zero packs alone."""
    dest = str(tmp_path_factory.mktemp("installed") / "v10")
    os.makedirs(dest)
    www = stream.reader()
    for name in sorted(www.bundles(10)):
        reader.install_bundle(www, 10, name, dest)
    return dest
