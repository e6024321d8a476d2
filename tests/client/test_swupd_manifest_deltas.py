"""Manifest deltas: an update fetches each rewritten bundle manifest as a small delta from the
one the device holds, and a bad or missing delta costs only the download of the whole one."""

from __future__ import annotations

from pathlib import Path

import clientkit as ck
import pytest
import zstandard
from clientkit import Device
from support.httpserver import FaultServer


@pytest.fixture
def dev(v10_all: Device, clone_device, private_server: FaultServer) -> Device:
    return clone_device(v10_all, private_server.url())


def _deltas(www: Path) -> dict[str, Path]:
    return {p.name[len("Manifest.") : -len(".delta")]: p for p in sorted((www / "20/manifests/from-10").iterdir())}


def _gets(srv: FaultServer, what: str) -> list[tuple[str, int | None]]:
    return [(e.path, e.status) for e in srv.requests(method="GET") if what in e.path]


def _updated(dev: Device) -> None:
    r = dev.swupd("update")
    assert r.rc == 0, r.err
    assert dev.version() == 20
    v = dev.swupd("verify")
    assert v.rc == 0, v.out + v.err


def test_an_update_fetches_deltas_instead_of_the_rewritten_manifests(dev, private_www, private_server):
    deltas = _deltas(private_www)
    assert "os-core" in deltas
    _updated(dev)
    assert sorted(_gets(private_server, "/20/manifests/")) == sorted(
        (f"/20/manifests/from-10/Manifest.{name}.delta", 200) for name in deltas
    )
    fetched = sum(p.stat().st_size for p in deltas.values())
    whole = sum((private_www / f"20/manifests/Manifest.{name}.zst").stat().st_size for name in deltas)
    assert fetched * 2 < whole


def test_a_delta_that_gives_other_bytes_costs_only_the_whole_manifest(dev, private_www, private_server):
    """A well-formed delta to bytes of the right size that the MoM does not pin: refused by
    its hash, with a warning, and the compressed manifest is fetched instead."""
    delta = _deltas(private_www)["os-core"]
    old = (private_www / "10/Manifest.os-core").read_bytes()
    new = (private_www / "20/Manifest.os-core").read_bytes().replace(b"/usr/bin/ls", b"/usr/bin/LS")
    d = zstandard.ZstdCompressionDict(old, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    delta.write_bytes(zstandard.ZstdCompressor(dict_data=d, write_content_size=True).compress(new))
    r = dev.swupd("update")
    assert r.rc == 0, r.err
    assert "Manifest.os-core.delta: its result does not match the MoM" in r.err
    _updated(dev)
    assert ("/20/manifests/Manifest.os-core.zst", 200) in _gets(private_server, "/20/manifests/")


@pytest.mark.parametrize("damage", ["garbage", "bomb", "truncated"])
def test_a_broken_delta_costs_only_the_whole_manifest(dev, private_www, private_server, damage):
    delta = _deltas(private_www)["os-core"]
    blob = delta.read_bytes()
    new = (private_www / "20/Manifest.os-core").read_bytes()
    delta.write_bytes(
        {
            "garbage": b"not a zstd frame" * 8,
            "bomb": zstandard.ZstdCompressor(level=19).compress(new + b"\0" * (32 << 20)),
            "truncated": blob[: len(blob) // 2],
        }[damage]
    )
    r = dev.swupd("update")
    assert r.rc == 0, r.err
    assert "Manifest.os-core.delta" in r.err
    assert ("/20/manifests/Manifest.os-core.zst", 200) in _gets(private_server, "/20/manifests/")
    assert dev.version() == 20


def test_a_server_without_manifest_deltas_serves_whole_manifests(dev, private_www, private_server):
    deltas = _deltas(private_www)
    for p in deltas.values():
        p.unlink()
    _updated(dev)
    got = _gets(private_server, "/20/manifests/")
    for name in deltas:
        assert (f"/20/manifests/from-10/Manifest.{name}.delta", 404) in got
        assert (f"/20/manifests/Manifest.{name}.zst", 200) in got


def test_a_device_without_the_old_manifest_fetches_the_whole_one(dev, private_server):
    """bundle-add of a bundle the device never had: nothing to apply a delta to."""
    r = dev.swupd("update")
    assert r.rc == 0, r.err
    assert ck.run("bundle-remove", "app-docs", *dev.opts()).rc == 0
    private_server.clear_log()
    r = dev.swupd("bundle-add", "app-docs")
    assert r.rc == 0, r.err
    assert not [p for p, _ in _gets(private_server, "/manifests/from-")]
