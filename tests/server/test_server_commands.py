"""keygen and refresh-latest, and key rotation, through the command line."""

from __future__ import annotations

import hashlib
import os
import re
import stat
import time

import nacl.signing
import reader
from buildutil import assert_same_snapshot, cli, cli_process, copy_www, create, create_args, snapshot
from support import oracle


def test_keygen_writes_a_key_pair(tmp_path):
    private, public = str(tmp_path / "k"), str(tmp_path / "k.pub")
    r = cli_process("keygen", "--private", private, "--public", public)
    assert r.rc == 0, r.err
    seed, pub = oracle.load_key(private), oracle.load_key(public)
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


def test_refresh_latest_leaves_a_www_without_a_version_as_it_was(stream, tmp_path):
    """A mistyped --www is neither made nor written into (no lock file left behind)."""
    missing, foreign = tmp_path / "mistyped", tmp_path / "site"
    foreign.mkdir()
    (foreign / "index.html").write_text("another site\n")
    for www in (missing, foreign):
        r = cli("refresh-latest", "--www", str(www), "--signing-key", stream.keys.private)
        assert "no published version of format 1" in r.one_line_error()
    assert not missing.exists()
    assert os.listdir(foreign) == ["index.html"]


def _keygen(directory, name: str) -> tuple[str, str]:
    private, public = str(directory / name), str(directory / f"{name}.pub")
    assert cli("keygen", "--private", private, "--public", public).rc == 0
    return private, public


def _signers(www: str, rel: str) -> list[str]:
    with open(os.path.join(www, rel + ".sig"), "rb") as f:
        return sorted(kid for kid, _ in oracle.signature_lines(f.read()))


def test_a_rotation_introduces_the_new_key(stream, tmp_path):
    """30 rotates to a new key: signed by both, with the new public key published at
    keys/<keyid>.pub, signed by the old key; 40 is signed by the new key alone, and the old key
    can no longer sign the stream without a rotation back."""
    new_private, new_public = _keygen(tmp_path, "new")
    old_raw, new_raw = stream.keys.raw, oracle.load_key(new_public)
    old_id, new_id = oracle.keyid(old_raw), oracle.keyid(new_raw)
    www = copy_www(stream.www, str(tmp_path / "www"))
    r = create(www, stream.rootfs[20], 30, new_private, stream.bundles, "--rotate-key", stream.keys.private)
    assert f"introduces {new_id}" in r.out
    for public in (old_raw, new_raw):
        w = reader.Www(www, public)
        assert w.mom(30).version == 30
        assert w.latest(1).version == 30
    assert _signers(www, "30/Manifest.MoM") == sorted([old_id, new_id])
    intro = os.path.join(www, "keys", f"{new_id}.pub")
    with open(intro, "rb") as f, open(intro + ".sig", "rb") as g:
        data, sig = f.read(), g.read()
    assert data == open(new_public, "rb").read()
    oracle.verify(data, sig, old_raw)
    assert _signers(www, "keys/" + f"{new_id}.pub") == [old_id]

    create(www, stream.rootfs[10], 40, new_private, stream.bundles)
    assert _signers(www, "40/Manifest.MoM") == [new_id]
    assert _signers(www, "version/format1/latest") == [new_id]
    before = snapshot(www)
    r = cli(*create_args(www, stream.rootfs[20], 50, stream.keys.private))
    assert f"signed by key {new_id} (version 40)" in r.one_line_error()
    assert_same_snapshot(before, snapshot(www))


def test_refresh_latest_keeps_the_stream_key(stream, tmp_path):
    other, _ = _keygen(tmp_path, "other")
    www = copy_www(stream.www, str(tmp_path / "www"))
    before = snapshot(www)
    r = cli("refresh-latest", "--www", www, "--signing-key", other)
    assert "--rotate-key" in r.one_line_error()
    assert_same_snapshot(before, snapshot(www))


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


def _create_on_a_terminal(args: list[str]) -> tuple[int, str, str]:
    """create-update with stderr on a pseudo-terminal of 120 columns; (rc, stdout, stderr)."""
    from buildutil import SERVER
    from support import terminal

    return terminal.run([SERVER, *args], 120, 40, stdout_too=False)


def test_a_build_on_a_terminal_shows_each_long_stage_as_it_goes(stream, tmp_path):
    www = copy_www(stream.www, str(tmp_path / "www"))
    root = stream.rootfs[20]
    key = stream.keys.private
    rc, out, err = _create_on_a_terminal(create_args(www, root, 30, key, stream.bundles, "--cache-dir", tmp_path / "c"))
    assert rc == 0, err
    for stage, unit in (("scan: hashing", "files"), ("elf-check", "files"), ("fullfiles", "files"), ("packs", "packs")):
        assert re.search(rf"{stage}: +\d+%\|.*\| \d+/\d+ \[.* {unit}/s", err), (stage, err[-3000:])
    assert re.search(r"fullfiles: .* [0-9.]+ [kM]?B written", err), err[-3000:]
    assert out.startswith("version 30:") and "%|" not in out
    # Elsewhere (a pipe, BitBake's log) only the report, as before.
    r = cli_process(*create_args(copy_www(stream.www, str(tmp_path / "www2")), root, 30, key, stream.bundles))
    assert r.rc == 0, r.err
    assert "%|" not in r.err + r.out
    assert r.out.startswith("version 30:")


def test_a_build_while_another_holds_the_lock_exits_14(stream, tmp_path):
    import fcntl

    www = copy_www(stream.www, str(tmp_path / "www"))
    with open(os.path.join(www, ".lock"), "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        r = cli_process(*create_args(www, stream.rootfs[20], 30, stream.keys.private, stream.bundles))
    assert r.rc == 14
    assert "another build holds the lock" in r.one_line_error()


def test_verbose_and_log_file_show_each_stage(stream, tmp_path):
    www = copy_www(stream.www, str(tmp_path / "www"))
    log = tmp_path / "build.log"
    args = create_args(www, stream.rootfs[20], 30, stream.keys.private, stream.bundles, "--verbose", "--log-file", log)
    r = cli_process(*args)
    assert r.rc == 0, r.err
    for stage in ("scan", "manifests", "fullfiles", "deltas", "packs", "publish"):
        assert re.search(rf"^swupd-server: {stage} \([0-9.]+ s\): ", r.err, re.M), r.err
        assert re.search(rf"^\d{{4}}-\d\d-\d\d [0-9:,]+ INFO swupd_server: {stage} \(", log.read_text(), re.M)
    assert r.out.startswith("version 30:")
