"""Ed25519 keys and detached signature files.

Key files are one line of text, a tag naming the kind of key and 64 hex digits:
`ed25519-private <seed>` or `ed25519-public <public key>`. Both kinds are 32 bytes, so without
the tag nothing tells them apart; files of the untyped form (64 hex digits alone) that earlier
releases wrote still load as public keys, and as private keys only where the build side can
prove what they are (see swupd_server/keys.py). A private key file must be readable by its
owner alone.
A signature file `X.sig` holds one line per signature, `ed25519 <keyid> <128 hex digits>`, where
keyid is the first 16 hex digits of SHA-256 of the public key. Several lines let a stream be
signed by an old and a new key during a rotation. Verification works on the exact bytes as
downloaded, before anything parses them.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field

import nacl.exceptions
import nacl.signing

from .errors import FormatError, SignatureError
from .limits import LIMITS, Limits

ALGORITHM = "ed25519"
PRIVATE_TAG = "ed25519-private"
PUBLIC_TAG = "ed25519-public"


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
        return f"{PUBLIC_TAG} {self.raw.hex()}\n".encode()


@dataclass(frozen=True)
class PrivateKey:
    seed: bytes
    # Read from an untyped file: a public key file looks the same, so the build side must
    # prove it is a private key before signing with it.
    untyped: bool = field(default=False, compare=False)
    path: str = field(default="", compare=False)

    @property
    def public(self) -> PublicKey:
        return PublicKey(bytes(nacl.signing.SigningKey(self.seed).verify_key))

    def dumps(self) -> bytes:
        return f"{PRIVATE_TAG} {self.seed.hex()}\n".encode()

    def sign_line(self, data: bytes) -> str:
        """One signature line over `data`."""
        sig = nacl.signing.SigningKey(self.seed).sign(data).signature
        return f"{ALGORITHM} {self.public.keyid} {sig.hex()}"


def generate() -> PrivateKey:
    return PrivateKey(bytes(nacl.signing.SigningKey.generate()))


def parse_key(text: str, what: str) -> tuple[str, bytes]:
    """(tag, 32 bytes) of a key file's text; the tag is "" for the untyped form."""
    parts = text.split()
    if len(parts) == 2 and parts[0] in (PRIVATE_TAG, PUBLIC_TAG):
        return parts[0], _hex(parts[1], 32, what)
    if len(parts) == 1:
        return "", _hex(parts[0], 32, what)
    raise FormatError(f"{what} is not a key file ({PRIVATE_TAG} or {PUBLIC_TAG} and 64 hex digits)")


def loads_public(data: bytes, what: str) -> PublicKey:
    """A public key from a key file's bytes; a private key is refused by its tag."""
    tag, raw = parse_key(data.decode("ascii", "replace"), what)
    if tag == PRIVATE_TAG:
        raise FormatError(f"{what} is a private key, not a public key (swupd-server public-key makes one)")
    return PublicKey(raw)


def load_public(path: str, limits: Limits = LIMITS) -> PublicKey:
    return loads_public(_read_small(path, limits.max_key_bytes)[0], f"public key {path}")


def load_private(path: str, limits: Limits = LIMITS) -> PrivateKey:
    """A private key file, refused when it holds a public key or others may read it."""
    data, mode = _read_small(path, limits.max_key_bytes)
    tag, raw = parse_key(data.decode("ascii", "replace"), f"private key {path}")
    if tag == PUBLIC_TAG:
        raise FormatError(f"{path} is a public key; signing needs the private key (swupd-server keygen --private)")
    if mode & 0o077:
        raise FormatError(
            f"private key {path} has mode {mode:04o}: others may read it; make it its owner's alone (chmod 600)"
        )
    return PrivateKey(raw, untyped=not tag, path=path)


def _read_small(path: str, cap: int) -> tuple[bytes, int]:
    """The bytes of a small file and its permission bits (of the file read, links followed)."""
    try:
        with open(path, "rb") as f:
            mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
            data = f.read(cap + 1)
    except OSError as e:
        raise FormatError(f"cannot read key {path}: {e.strerror}") from None
    if len(data) > cap:
        raise FormatError(f"key file {path} is too large")
    return data, mode


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
