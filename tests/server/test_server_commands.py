"""keygen and refresh-latest, and key rotation, through the command line."""

from __future__ import annotations

import hashlib
import os
import stat
import time

import nacl.signing
import reader
from buildutil import cli, cli_process, copy_www, create


def test_keygen_writes_a_key_pair(tmp_path):
    private, public = str(tmp_path / "k"), str(tmp_path / "k.pub")
    r = cli_process("keygen", "--private", private, "--public", public)
    assert r.rc == 0, r.err
    seed, pub = reader.load_key(private), reader.load_key(public)
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
    assert bytes(nacl.signing.SigningKey(seed).verify_key) == pub
    assert hashlib.sha256(pub).hexdigest()[:16] in r.out


def test_keygen_refuses_to_overwrite(tmp_path):
    private, public = tmp_path / "k", tmp_path / "k.pub"
    private.write_text("keep me\n")
    r = cli("keygen", "--private", str(private), "--public", str(public))
    assert str(private) in r.one_line_error()
    assert private.read_text() == "keep me\n"
    assert not public.exists()


def test_refresh_latest_resigns_with_a_new_expiry(stream, tmp_path, monkeypatch):
    www = copy_www(stream.www, str(tmp_path / "www"))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1800000000")
    r = cli("refresh-latest", "--www", www, "--signing-key", stream.keys.private, "--expiry-days", "5")
    assert r.rc == 0, r.err
    record = reader.Www(www, stream.keys.raw).latest(1)
    assert record.version == 20
    assert record.fields["timestamp"] == 1800000000
    assert record.fields["expires"] == 1800000000 + 5 * 86400


def test_refresh_latest_without_a_version_fails(stream, tmp_path):
    r = cli("refresh-latest", "--www", str(tmp_path / "empty"), "--signing-key", stream.keys.private)
    assert "no published version" in r.one_line_error()


def test_two_signing_keys_for_a_rotation(stream, tmp_path):
    """Built with an old and a new key, both signatures verify, each line on its own."""
    new_private, new_public = str(tmp_path / "new"), str(tmp_path / "new.pub")
    assert cli("keygen", "--private", new_private, "--public", new_public).rc == 0
    www = copy_www(stream.www, str(tmp_path / "www"))
    create(www, stream.rootfs[20], 30, stream.keys.private, stream.bundles, "--signing-key", new_private)
    new_raw = reader.load_key(new_public)
    for public in (stream.keys.raw, new_raw):
        w = reader.Www(www, public)
        assert w.mom(30).version == 30
        assert w.latest(1).version == 30
    with open(os.path.join(www, "30", "Manifest.MoM.sig"), "rb") as f:
        ids = [kid for kid, _ in reader.signature_lines(f.read())]
    assert sorted(ids) == sorted([reader.keyid(stream.keys.raw), reader.keyid(new_raw)])


def test_refresh_latest_never_orders_below_the_published_pointer(stream, tmp_path, monkeypatch):
    """With a SOURCE_DATE_EPOCH older than the published pointer's timestamp, the re-signed
    pointer keeps that timestamp (same version: at, not below it), its stream, and an expiry
    counted from now."""
    www = copy_www(stream.www, str(tmp_path / "www"))
    before = reader.Www(www, stream.keys.raw).latest(1)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(before.fields["timestamp"] - 30 * 86400))
    r = cli("refresh-latest", "--www", www, "--signing-key", stream.keys.private, "--expiry-days", "5")
    assert r.rc == 0, r.err
    after = reader.Www(www, stream.keys.raw).latest(1)
    assert (after.version, after.fields["timestamp"]) == (20, before.fields["timestamp"])
    assert after.stream == before.stream
    assert abs(after.fields["expires"] - (time.time() + 5 * 86400)) < 60
