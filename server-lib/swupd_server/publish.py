"""Build stage 6: making a staged version visible, atomically.

Everything of a build is written into a staging directory inside `www/` and moved into place
with renames; the `latest` pointer is replaced last. Readers therefore see either the old
stream or the whole new version, never a half-published one, and a failed build leaves only
a staging directory that the next build removes. A lock file keeps two builds apart.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from swupd.format import durable, layout, signing
from swupd.format import latest as latest_fmt
from swupd.format.errors import BuildError, FormatError, LockedError, SignatureError

from . import workers
from .config import BuildConfig

if TYPE_CHECKING:
    from .history import History

LOCK = ".lock"


@contextmanager
def locked(www: str) -> Iterator[None]:
    """Hold the stream's lock for the duration of a build."""
    os.makedirs(www, exist_ok=True)
    fd = os.open(os.path.join(www, LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockedError(f"another build holds the lock on {www}") from None
        workers.keep_from_workers(fd)
        yield
    finally:
        workers.release(fd)
        os.close(fd)


def remove_leftovers(www: str) -> list[str]:
    """Remove what killed builds left: staging directories, version directories that no
    `latest` pointer reached (a build stopped between moving its version into place and
    publishing `latest`), which no device can have seen, and their build records, and the
    introductions of keys that signed no published version (a rotation stopped before its
    version was published, or abandoned): devices must not go on learning a key the stream
    never used."""
    from .history import History

    removed = []
    history = History(www)
    published = history.published_max()
    for name in os.listdir(www):
        path = os.path.join(www, name)
        orphan = name.isdigit() and int(name) > published and os.path.isdir(path)
        if name.startswith(".stage-") or orphan:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(name)
    return removed + _remove_unpublished_records(www, published) + _remove_unused_introductions(history)


_RECORD = re.compile(r"build-([0-9]+)\.json\Z")


def _remove_unpublished_records(www: str, published: int) -> list[str]:
    """Build records (buildrecord.py) of versions no `latest` pointer reached."""
    removed = []
    reports = os.path.join(www, layout.report_dir())
    for name in os.listdir(reports) if os.path.isdir(reports) else []:
        m = _RECORD.match(name)
        rel = f"{layout.report_dir()}/{name}"
        if m and int(m.group(1)) > published and rel == layout.build_record(int(m.group(1))):
            os.remove(os.path.join(www, rel))
            removed.append(rel)
    return removed


_INTRODUCTION = re.compile(r"([0-9a-f]{16})\.pub(\.sig)?\Z")


def _remove_unused_introductions(history: History) -> list[str]:
    keys = history.path(layout.KEYS_DIR)
    if not os.path.isdir(keys):
        return []
    # A rotation's version is signed by the key it introduces, so a key that signed none of the
    # published versions, nor introduced another key (a link of a chain whose versions are gone
    # from www/), was introduced by a build that never published.
    names = os.listdir(keys)
    records = [layout.sig(layout.mom(v)) for v in history.versions]
    records += [f"{layout.KEYS_DIR}/{n}" for n in names if _INTRODUCTION.match(n) and n.endswith(layout.SIG_SUFFIX)]
    signers: set[str] = set()
    for rel in records:
        try:
            with open(history.path(rel), "rb") as f:
                signers.update(kid for kid, _ in signing.parse_signatures(f.read()))
        except (OSError, SignatureError):
            return []  # the record is unreadable: every introduction stays
    removed = []
    # Each key before its signature, the reverse of publishing: no key stands without it.
    for name in sorted(names, key=lambda n: (n.endswith(layout.SIG_SUFFIX), n)):
        m = _INTRODUCTION.match(name)
        if m and m.group(1) not in signers:
            os.remove(os.path.join(keys, name))
            removed.append(f"{layout.KEYS_DIR}/{name}")
    return removed


def stage_dir(www: str, version: int) -> str:
    path = os.path.join(www, f".stage-{version}")
    if os.path.exists(path):
        shutil.rmtree(path)
    os.makedirs(path)
    return path


def write_atomic(path: str, data: bytes) -> None:
    """Replace a published file, durably: what `latest` names must survive a power cut."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    durable.write_atomic(path, data)


def published(www: str, fmt: int) -> latest_fmt.Latest | None:
    """The `latest` pointer of a format as published, None if there is none."""
    try:
        with open(os.path.join(www, layout.latest(fmt)), "rb") as f:
            return latest_fmt.loads(f.read())
    except FileNotFoundError:
        return None
    except FormatError as e:
        raise FormatError(f"{layout.latest(fmt)} in {www} is corrupt: {e}") from None


def check_order(www: str, fmt: int, order: tuple[int, int]) -> None:
    """Refuse a pointer that orders below the published one (format/latest.py): devices that
    trust the published one would refuse it, as a rollback, until a later one passed both."""
    old = published(www, fmt)
    if old is not None and order < old.order:
        raise BuildError(
            f"the new latest of format {fmt}, {latest_fmt.describe(order)}, orders below the published one, "
            f"{latest_fmt.describe(old.order)}: devices would refuse it"
        )


def write_latest(www: str, record: latest_fmt.Latest, keys: list[signing.PrivateKey]) -> None:
    """Replace `latest` and its signature so that every pair a reader can see verifies.

    The signature file first holds signatures over both the old and the new pointer (over the
    new alone for a format's first pointer), then the pointer is replaced, then the old
    signatures are dropped. A pointer that orders below the published one is refused.
    """
    check_order(www, record.format, record.order)
    path = os.path.join(www, layout.latest(record.format))
    sig_path = os.path.join(www, layout.sig(layout.latest(record.format)))
    new = record.dumps()
    new_sig = signing.sign(new, keys)
    try:
        with open(path, "rb") as f:
            old_sig = signing.sign(f.read(), keys)
    except FileNotFoundError:
        old_sig = b""
    write_atomic(sig_path, new_sig + old_sig)
    write_atomic(path, new)
    if old_sig:
        write_atomic(sig_path, new_sig)


@dataclass
class PublishReport:
    version: int
    www: str
    files: int

    def summary(self) -> str:
        return f"published version {self.version} into {self.www} ({self.files} files)"


def publish(stage: str, cfg: BuildConfig, record: latest_fmt.Latest) -> PublishReport:
    own = layout.version_dir(cfg.version)
    count = 0
    # Every file of the version reaches the disk before a rename makes any of it visible: after
    # a power cut, `latest` never names a file cut short (nor do later builds link one).
    durable.sync_filesystem(stage)
    for name in sorted(os.listdir(stage)):
        if name == own or not name.isdigit():
            continue
        # Packs for an older bundle version: immutable files added beside that version.
        for root, _, files in os.walk(os.path.join(stage, name)):
            rel = os.path.relpath(root, stage)
            os.makedirs(os.path.join(cfg.www, rel), exist_ok=True)
            for f in files:
                os.replace(os.path.join(root, f), os.path.join(cfg.www, rel, f))
                count += 1
    # Key introductions, before any `latest` can point at a version that needs them; each
    # signature before its key, so a key a device can fetch always has its signature.
    keys = os.path.join(stage, layout.KEYS_DIR)
    names = os.listdir(keys) if os.path.isdir(keys) else []
    for name in sorted(names, key=lambda n: (not n.endswith(layout.SIG_SUFFIX), n)):
        os.makedirs(os.path.join(cfg.www, layout.KEYS_DIR), exist_ok=True)
        os.replace(os.path.join(keys, name), os.path.join(cfg.www, layout.KEYS_DIR, name))
        count += 1
    for _, _, files in os.walk(os.path.join(stage, own)):
        count += len(files)
    target = os.path.join(cfg.www, own)
    if os.path.exists(target):
        raise BuildError(f"version {cfg.version} appeared in {cfg.www} during the build")
    os.rename(os.path.join(stage, own), target)
    durable.fsync_dir(cfg.www)
    write_latest(cfg.www, record, cfg.signing_keys)
    shutil.rmtree(stage)
    return PublishReport(cfg.version, cfg.www, count + 2)
