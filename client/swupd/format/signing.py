"""Ed25519 keys and detached signature files.

Key files are text: 64 hex digits and a newline, the 32-byte seed (private) or public key.
A signature file `X.sig` holds one line per signature, `ed25519 <keyid> <128 hex digits>`, where
keyid is the first 16 hex digits of SHA-256 of the public key. Several lines let a stream be
signed by an old and a new key during a rotation. Verification works on the exact bytes as
downloaded, before anything parses them.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import nacl.exceptions
import nacl.signing

from .errors import FormatError, SignatureError
from .limits import LIMITS, Limits

ALGORITHM = "ed25519"


def _hex(text: str, nbytes: int, what: str) -> bytes:
    value = text.strip()
    if len(value) != 2 * nbytes or any(c not in "0123456789abcdef" for c in value):
        raise FormatError(f"{what} is not {2 * nbytes} lowercase hex digits")
    return bytes.fromhex(value)


def keyid(public: bytes) -> str:
    """Short identifier of a public key, as written in signature lines."""
    return hashlib.sha256(public).hexdigest()[:16]


@dataclass(frozen=True)
class PublicKey:
    raw: bytes

    @property
    def keyid(self) -> str:
        return keyid(self.raw)

    def dumps(self) -> bytes:
        return self.raw.hex().encode() + b"\n"


@dataclass(frozen=True)
class PrivateKey:
    seed: bytes

    @property
    def public(self) -> PublicKey:
        return PublicKey(bytes(nacl.signing.SigningKey(self.seed).verify_key))

    def dumps(self) -> bytes:
        return self.seed.hex().encode() + b"\n"

    def sign_line(self, data: bytes) -> str:
        """One signature line over `data`."""
        sig = nacl.signing.SigningKey(self.seed).sign(data).signature
        return f"{ALGORITHM} {self.public.keyid} {sig.hex()}"


def generate() -> PrivateKey:
    return PrivateKey(bytes(nacl.signing.SigningKey.generate()))


def load_public(path: str, limits: Limits = LIMITS) -> PublicKey:
    return PublicKey(_hex(_read_small(path, limits.max_key_bytes), 32, f"public key {path}"))


def load_private(path: str, limits: Limits = LIMITS) -> PrivateKey:
    return PrivateKey(_hex(_read_small(path, limits.max_key_bytes), 32, f"private key {path}"))


def _read_small(path: str, cap: int) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read(cap + 1)
    except OSError as e:
        raise FormatError(f"cannot read key {path}: {e.strerror}") from None
    if len(data) > cap:
        raise FormatError(f"key file {path} is too large")
    return data.decode("ascii", "replace")


def write_private(key: PrivateKey, path: str) -> None:
    """Write a private key readable by its owner only, without a window where it is not."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.dumps())


def sign(data: bytes, keys: list[PrivateKey]) -> bytes:
    """The bytes of a `.sig` file for `data`, one line per key."""
    if not keys:
        raise SignatureError("no signing key given")
    return "".join(k.sign_line(data) + "\n" for k in keys).encode()


def parse_signatures(sig: bytes, limits: Limits = LIMITS) -> list[tuple[str, bytes]]:
    """(keyid, signature) pairs of a `.sig` file; malformed lines are an error."""
    if len(sig) > limits.max_sig_bytes:
        raise SignatureError("signature file too large")
    try:
        text = sig.decode("ascii")
    except UnicodeDecodeError:
        raise SignatureError("signature file is not ASCII") from None
    out = []
    for line in text.splitlines():
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != ALGORITHM:
            raise SignatureError("malformed signature line")
        try:
            kid, raw = parts[1], _hex(parts[2], 64, "signature")
        except FormatError:
            raise SignatureError("malformed signature value") from None
        out.append((kid, raw))
    if not out:
        raise SignatureError("signature file holds no signature")
    if len(out) > limits.max_signatures:
        raise SignatureError("too many signatures")
    return out


def verify(data: bytes, sig: bytes, trusted: list[PublicKey], limits: Limits = LIMITS) -> PublicKey:
    """Return the trusted key that signed `data`; raise `SignatureError` if none did."""
    if not trusted:
        raise SignatureError("no trusted public key configured")
    by_id = {k.keyid: k for k in trusted}
    for kid, raw in parse_signatures(sig, limits):
        key = by_id.get(kid)
        if key is None:
            continue
        try:
            nacl.signing.VerifyKey(key.raw).verify(data, raw)
        except nacl.exceptions.BadSignatureError:
            continue
        return key
    raise SignatureError("no valid signature by a trusted key")
