"""A stream's identity and compat id, kept from one version to the next.

Every MoM and `latest` carries the stream's identity, and the MoM its compat id; devices hold
to both (see the client's trust/trusted.py), so two streams signed with one key are not
interchangeable. The build side keeps them: a new version takes them from the version before
it and refuses a change part-way through (devices would refuse the new version) unless told
to move the stream (`--change-stream`).

Without `--stream`, a stream keeps the identity it has; its first version is named by the
first 16 hex digits of SHA-256 over that version's MoM entries (its content, which differs
between images), so a rebuild with the same input and SOURCE_DATE_EPOCH names it alike.

A format whose last version has no identity was published before streams had one; its devices
read no pointer that carries one, so the stream continues in a new format instead.
"""

from __future__ import annotations

import hashlib

from swupd.format.errors import UsageError
from swupd.format.latest import check_stream
from swupd.format.manifest import Entry, Manifest

from .config import BuildConfig
from .history import History


def prior(history: History, fmt: int) -> Manifest | None:
    """The MoM a new version of format `fmt` follows: the latest of that format, else the
    newest published version of any format (the stream moving to a new format)."""
    version = history.latest(fmt) or history.highest()
    return history.mom(version) if version else None


def check(history: History, cfg: BuildConfig) -> str:
    """The stream identity of the new version ("" until its content names it, see `derive`),
    or a refusal naming what would change and how to proceed."""
    if cfg.stream:
        check_stream(cfg.stream)
    before = prior(history, cfg.format)
    if before is None:
        return cfg.stream
    if not before.stream and before.format == cfg.format:
        raise UsageError(
            f"version {before.version} of format {cfg.format} has no stream identity and its devices cannot "
            f"read one: publish into a new format (--format {cfg.format + 1}), see docs/format.md"
        )
    if cfg.change_stream:
        return cfg.stream or before.stream
    if before.compat != cfg.compat:
        raise UsageError(
            f"version {before.version} is for compat {before.compat or '(none)'!r}, version {cfg.version} would be "
            f"for {cfg.compat or '(none)'!r}: its devices would refuse it; pass --change-stream to move the stream"
        )
    if before.stream and cfg.stream and before.stream != cfg.stream:
        raise UsageError(
            f"version {before.version} belongs to stream {before.stream!r}, version {cfg.version} would belong to "
            f"{cfg.stream!r}: its devices would refuse it; pass --change-stream to move the stream"
        )
    return cfg.stream or before.stream


def derive(version: int, entries: list[Entry]) -> str:
    """The identity of a stream whose first version has these MoM entries."""
    h = hashlib.sha256(f"{version}\n".encode())
    for e in sorted(entries, key=lambda e: e.path):
        h.update(f"{e.line()}\n".encode())
    return h.hexdigest()[:16]
