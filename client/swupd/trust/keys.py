"""The keys a device trusts: those it is configured with, and those introduced to it.

A stream moves to a new signing key by publishing an introduction (docs/format.md, Key
rotation): the new public key file at `keys/<keyid>.pub`, with signatures (`.sig`) by the key it
replaces. When none of the keys a device trusts verifies `latest` or a MoM, the device fetches
the introduction of each key that signed it, follows introductions back from key to key (at most
`Limits.max_key_chain` of them) until one is signed by a key it trusts, and, once the file
has passed every check with the keys they introduce, keeps those in its state directory
(`keys/`). A key is trusted only while a chain of signatures leads to it from a configured key:
kept introductions are checked again every time they are loaded, so removing a key from the
configuration also removes what it introduced, and a key no trusted key signed is never learned.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from swupd.format import signing
from swupd.format.errors import FormatError, NotFoundError, SignatureError, SwupdError
from swupd.format.limits import Limits
from swupd.format.signing import PublicKey

from ..state import write_atomic

# Fetches the introduction of a key id: (public key file, its signatures).
Fetch = Callable[[str], tuple[bytes, bytes]]


def _introduced(data: bytes, limits: Limits) -> PublicKey | None:
    """The key an introduction's bytes name: a typed public key file and nothing else, so that
    no other signed file (a MoM, a `latest`) can pass for one."""
    if len(data) > limits.max_key_bytes:
        return None
    try:
        tag, raw = signing.parse_key(data.decode("ascii", "replace"), "introduced key")
    except FormatError:
        return None
    return PublicKey(raw) if tag == signing.PUBLIC_TAG else None


def chain(roots: list[PublicKey], introductions: list[tuple[bytes, bytes]], limits: Limits) -> dict[str, PublicKey]:
    """Every key reachable from `roots` through `introductions`, by key id."""
    trusted = {k.keyid: k for k in roots}
    pending = []
    for data, sig in introductions:
        key = _introduced(data, limits)
        if key is not None:
            pending.append((key, data, sig))
    grew = True
    while grew:
        grew = False
        for key, data, sig in list(pending):
            if key.keyid not in trusted:
                try:
                    signing.verify(data, sig, list(trusted.values()), limits)
                except SignatureError:
                    continue
                trusted[key.keyid] = key
                grew = True
            pending.remove((key, data, sig))
    return trusted


class KeyRing:
    """The configured keys (`roots`) and the keys learned from introductions kept in `directory`."""

    def __init__(self, roots: list[PublicKey], directory: str, limits: Limits) -> None:
        self.roots = roots
        self.directory = directory
        self.limits = limits
        self.fetch: Fetch | None = None
        self._trusted: dict[str, PublicKey] | None = None
        self._pending: tuple[dict[str, PublicKey], dict[str, tuple[bytes, bytes]]] | None = None

    def trusted(self) -> list[PublicKey]:
        if self._trusted is None:
            self._trusted = chain(self.roots, self._kept(), self.limits)
        return list(self._trusted.values())

    def verify(self, data: bytes, sig: bytes) -> PublicKey:
        """The trusted key that signed `data`, learning the signers' keys if need be (trusted
        and kept only when `accept` follows)."""
        self._pending = None
        try:
            return signing.verify(data, sig, self.trusted(), self.limits)
        except SignatureError:
            if self.fetch is None or not self.roots:
                raise
            grown, found = self._learn(sig)
            if not found:
                raise
        signer = signing.verify(data, sig, list(grown.values()), self.limits)
        self._pending = (grown, found)
        return signer

    def accept(self) -> None:
        """Take the keys the last `verify` learned, once what it verified has passed every
        other check too: an introduction teaches nothing for a file the device refuses (for its
        signature, or for its stream when another stream's key signed it), so no key is ever
        trusted through something refused."""
        pending, self._pending = self._pending, None
        if pending is not None:
            self._trusted, found = pending
            self._keep(found)

    def _kept(self) -> list[tuple[bytes, bytes]]:
        try:
            names = sorted(n for n in os.listdir(self.directory) if n.endswith(".pub"))
        except OSError:
            return []
        out = []
        for name in names[: self.limits.max_learned_keys]:
            path = os.path.join(self.directory, name)
            try:
                with open(path, "rb") as f, open(path + ".sig", "rb") as g:
                    out.append((f.read(self.limits.max_key_bytes + 1), g.read(self.limits.max_sig_bytes + 1)))
            except OSError:
                continue
        return out

    def _learn(self, sig: bytes) -> tuple[dict[str, PublicKey], dict[str, tuple[bytes, bytes]]]:
        """Fetch the introductions of the keys that made `sig`, and of the keys that signed
        those, until a trusted key is reached: the trusted keys with those a trusted key
        vouches for, and the introductions of the new ones (none when there are none)."""
        assert self.fetch is not None and self._trusted is not None
        known = dict(self._trusted)
        todo = [kid for kid, _ in signing.parse_signatures(sig, self.limits) if kid not in known]
        found: dict[str, tuple[bytes, bytes]] = {}
        tried: set[str] = set()
        while todo and len(tried) < self.limits.max_key_chain:
            kid = todo.pop(0)
            if kid in tried or kid in known:
                continue
            tried.add(kid)
            try:
                data, isig = self.fetch(kid)
                key = _introduced(data, self.limits)
                signers = signing.parse_signatures(isig, self.limits)
            except NotFoundError:
                continue  # no introduction: the key is simply unknown
            except (FormatError, SignatureError):
                continue  # a malformed one is no better
            if key is None or key.keyid != kid:
                continue
            found[kid] = (data, isig)
            todo += [k for k, _ in signers if k not in known and k not in tried]
        grown = chain(list(known.values()), list(found.values()), self.limits)
        return grown, {kid: found[kid] for kid in grown if kid not in known}

    def _keep(self, introductions: dict[str, tuple[bytes, bytes]]) -> None:
        """Kept for the next commands; a state directory that cannot take them only means the
        next command fetches them again."""
        with contextlib.suppress(OSError, SwupdError):
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            for kid, (data, isig) in introductions.items():
                path = os.path.join(self.directory, f"{kid}.pub")
                write_atomic(path + ".sig", isig)
                write_atomic(path, data)
