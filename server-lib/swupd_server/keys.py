"""Which keys may sign the next version of a stream, and the introductions of new ones.

Devices trust the keys their image ships and the keys introduced to them through the stream
(docs/format.md, Key rotation). So every key that signs a version must have signed the version
before it, or be introduced in this version by a key that did; otherwise a stream signed by
mistake with another key, or with a public key taken for a private one, would be published
for no device to install. The stream's own signatures are the record: a key "signed version
N" when a line of N's `Manifest.MoM.sig` verifies with it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import nacl.exceptions
import nacl.signing
from swupd.format import layout, signing
from swupd.format.errors import BuildError, FormatError, SignatureError, UsageError
from swupd.format.signing import PrivateKey, PublicKey

from .history import History


@dataclass
class KeyPlan:
    """The keys that sign a version and the introductions it publishes (name → bytes)."""

    signers: list[PrivateKey]
    introductions: dict[str, bytes] = field(default_factory=dict)

    def summary(self) -> str:
        new = [n for n in self.introductions if not n.endswith(layout.SIG_SUFFIX)]
        return f"introduces {', '.join(os.path.basename(n)[:-4] for n in new)}" if new else ""


@dataclass
class _Signed:
    """A published version's MoM with its signature lines."""

    version: int
    data: bytes
    lines: list[tuple[str, bytes]]

    @property
    def keyids(self) -> str:
        return ", ".join(sorted({kid for kid, _ in self.lines}))

    def by(self, public: PublicKey) -> bool:
        for kid, raw in self.lines:
            if kid == public.keyid:
                try:
                    nacl.signing.VerifyKey(public.raw).verify(self.data, raw)
                    return True
                except nacl.exceptions.BadSignatureError:
                    continue
        return False


def _signed(history: History, version: int) -> _Signed | None:
    if not version:
        return None
    rel = layout.mom(version)
    try:
        with open(history.path(rel), "rb") as f:
            data = f.read()
        with open(history.path(layout.sig(rel)), "rb") as f:
            lines = signing.parse_signatures(f.read())
    except OSError as e:
        raise BuildError(f"cannot read {e.filename}: {e.strerror}") from None
    except SignatureError as e:
        raise BuildError(f"{layout.sig(rel)} in {history.www} is corrupt: {e}") from None
    return _Signed(version, data, lines)


def _check_untyped(key: PrivateKey, prev: _Signed | None) -> None:
    """An untyped key file is a private key only if its public key signed the stream; if the
    file's digits are themselves a key that signed it, it is the public key."""
    if not key.untyped:
        return
    if prev is not None and prev.by(PublicKey(key.seed)):
        raise FormatError(
            f"{key.path} is the stream's public key (it signed version {prev.version}), not a private key"
        )
    if prev is not None and prev.by(key.public):
        return
    raise FormatError(
        f"{key.path} holds an untyped key, which may as well be a public key; if it is the private key, "
        f"mark it so: sed -i 's/^/{signing.PRIVATE_TAG} /' {key.path}"
    )


def _unique(keys: list[PrivateKey]) -> list[PrivateKey]:
    out: dict[str, PrivateKey] = {}
    for k in keys:
        out.setdefault(k.public.keyid, k)
    return list(out.values())


def plan(history: History, version: int, keys: list[PrivateKey], rotate: list[PrivateKey]) -> KeyPlan:
    """Check `keys` (and the old keys of a rotation, `rotate`) against the keys that signed
    `version`, the stream's newest (0: none), and plan the introductions of new keys."""
    prev = _signed(history, version)
    for k in [*keys, *rotate]:
        _check_untyped(k, prev)
    if prev is None:
        if rotate:
            raise UsageError(f"--rotate-key: {history.www} has no published version whose key could be rotated")
        return KeyPlan(_unique(keys))
    for k in rotate:
        if not prev.by(k.public):
            raise UsageError(
                f"--rotate-key {k.path}: key {k.public.keyid} did not sign version {prev.version} "
                f"(signed by {prev.keyids})"
            )
    new = [k for k in _unique(keys) if not prev.by(k.public)]
    if new and not rotate:
        raise UsageError(
            f"the stream is signed by key {prev.keyids} (version {prev.version}), {new[0].path} is key "
            f"{new[0].public.keyid}; to rotate, pass --rotate-key OLD_PRIVATE_KEY as well"
        )
    out = KeyPlan(_unique([*keys, *rotate]))
    for k in new:
        name = layout.key_introduction(k.public.keyid)
        text = k.public.dumps()
        out.introductions[name] = text
        out.introductions[layout.sig(name)] = signing.sign(text, rotate)
    return out


def check_signers(history: History, version: int, keys: list[PrivateKey]) -> None:
    """Keys that re-sign what `version` published (refresh-latest): each must have signed it."""
    prev = _signed(history, version)
    for k in keys:
        _check_untyped(k, prev)
        if prev is not None and not prev.by(k.public):
            raise UsageError(
                f"{k.path} is key {k.public.keyid}, but version {prev.version} is signed by {prev.keyids}; "
                "a new key enters a stream with create-update --rotate-key"
            )
