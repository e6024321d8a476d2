"""Ed25519 keys and signature files."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest
from swupd.format import signing
from swupd.format.errors import FormatError, SignatureError

DATA = b"MANIFEST\t1\nversion:\t10\n"


@pytest.fixture(scope="module")
def two():
    return signing.generate(), signing.generate()


def test_sign_and_verify(two):
    k, _ = two
    sig = signing.sign(DATA, [k])
    assert signing.verify(DATA, sig, [k.public]) == k.public
    line = sig.decode()
    assert line.endswith("\n") and line.count("\n") == 1
    alg, kid, value = line.split()
    assert alg == "ed25519"
    assert kid == hashlib.sha256(k.public.raw).hexdigest()[:16] == k.public.keyid
    assert len(value) == 128


def test_tampered_data_fails(two):
    k, _ = two
    sig = signing.sign(DATA, [k])
    with pytest.raises(SignatureError):
        signing.verify(DATA + b"x", sig, [k.public])
    flipped = bytearray(sig)
    flipped[-3] = ord("0") if flipped[-3] != ord("0") else ord("1")
    with pytest.raises(SignatureError):
        signing.verify(DATA, bytes(flipped), [k.public])


def test_wrong_key_fails(two):
    k, other = two
    with pytest.raises(SignatureError):
        signing.verify(DATA, signing.sign(DATA, [k]), [other.public])
    with pytest.raises(SignatureError):
        signing.verify(DATA, signing.sign(DATA, [k]), [])


def test_forged_line_under_the_right_keyid_fails(two):
    k, other = two
    forged = signing.sign(DATA, [other]).decode().replace(other.public.keyid, k.public.keyid).encode()
    with pytest.raises(SignatureError):
        signing.verify(DATA, forged, [k.public])


def test_two_keys_for_a_rotation(two):
    old, new = two
    sig = signing.sign(DATA, [old, new])
    assert len(sig.splitlines()) == 2
    assert signing.verify(DATA, sig, [old.public]) == old.public
    assert signing.verify(DATA, sig, [new.public]) == new.public
    assert signing.verify(DATA, sig, [new.public, old.public]) in (old.public, new.public)


def test_no_key_to_sign_with():
    with pytest.raises(SignatureError):
        signing.sign(DATA, [])


@pytest.mark.parametrize(
    "sig",
    [
        b"",
        b"\n",
        b"rsa 0123456789abcdef " + b"00" * 64 + b"\n",
        b"ed25519 0123456789abcdef\n",
        b"ed25519 0123456789abcdef " + b"00" * 63 + b"\n",
        b"ed25519 0123456789abcdef " + b"AB" * 64 + b"\n",
        b"ed25519 0123456789abcdef " + b"zz" * 64 + b"\n",
        b"ed25519  0123456789abcdef " + b"00" * 64 + b"\n",
        b"ed25519 0123456789abcdef " + b"00" * 64 + b" extra\n",
        "ed25519 ü ".encode() + b"00" * 64 + b"\n",
        b"x" * 20000,
        b"".join(b"ed25519 0123456789abcdef " + b"00" * 64 + b"\n" for _ in range(17)),
    ],
)
def test_malformed_signature_files(two, sig):
    k, _ = two
    with pytest.raises(SignatureError):
        signing.verify(DATA, sig, [k.public])


def test_a_malformed_line_spoils_the_file(two):
    k, _ = two
    sig = signing.sign(DATA, [k]) + b"garbage\n"
    with pytest.raises(SignatureError):
        signing.verify(DATA, sig, [k.public])


def test_key_files(tmp_path, two):
    k, _ = two
    private = str(tmp_path / "k")
    signing.write_private(k, private)
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
    with open(private, "rb") as f:
        assert f.read() == b"ed25519-private " + k.seed.hex().encode() + b"\n"
    assert signing.load_private(private) == k
    assert not signing.load_private(private).untyped
    public = tmp_path / "k.pub"
    public.write_bytes(k.public.dumps())
    assert public.read_bytes() == b"ed25519-public " + k.public.raw.hex().encode() + b"\n"
    assert signing.load_public(str(public)) == k.public
    with pytest.raises(FileExistsError):
        signing.write_private(k, private)


def test_a_public_key_is_no_private_key_and_the_reverse(tmp_path, two):
    """Both kinds are 32 bytes; the tag tells them apart, and each loader refuses the other."""
    k, _ = two
    public = tmp_path / "k.pub"
    public.write_bytes(k.public.dumps())
    public.chmod(0o600)
    with pytest.raises(FormatError, match="is a public key"):
        signing.load_private(str(public))
    private = str(tmp_path / "k")
    signing.write_private(k, private)
    with pytest.raises(FormatError, match="is a private key"):
        signing.load_public(private)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_a_private_key_others_may_read_is_refused(tmp_path, two, mode):
    k, _ = two
    private = tmp_path / "k"
    signing.write_private(k, str(private))
    private.chmod(mode)
    with pytest.raises(FormatError, match=f"mode {mode:04o}"):
        signing.load_private(str(private))
    private.chmod(0o400)
    assert signing.load_private(str(private)) == k


def test_untyped_key_files_of_earlier_releases(tmp_path, two):
    """64 bare hex digits still load: as a public key, and as a private key marked untyped,
    which the build side must prove before it signs (swupd_server/keys.py)."""
    k, _ = two
    bare = tmp_path / "bare"
    bare.write_bytes(k.public.raw.hex().encode() + b"\n")
    assert signing.load_public(str(bare)) == k.public
    bare.write_bytes(k.seed.hex().encode() + b"\n")
    bare.chmod(0o600)
    loaded = signing.load_private(str(bare))
    assert loaded == k and loaded.untyped


@pytest.mark.parametrize("content", [b"", b"00" * 31 + b"\n", b"ZZ" * 32 + b"\n", b"00" * 33 + b"\n", b"0" * 2000])
def test_malformed_key_files(tmp_path, content):
    path = tmp_path / "bad"
    path.write_bytes(content)
    with pytest.raises(FormatError):
        signing.load_public(str(path))
    with pytest.raises(FormatError):
        signing.load_private(str(path))


def test_missing_key_file(tmp_path):
    with pytest.raises(FormatError, match="cannot read"):
        signing.load_private(str(tmp_path / "absent"))
