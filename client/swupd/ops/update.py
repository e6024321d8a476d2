"""`update`, `check-update` and `os-install`."""

from __future__ import annotations

import contextlib
import os
import stat

from swupd.format.errors import RollbackError, SwupdError, UsageError
from swupd.format.latest import Latest

from .. import ownership
from ..store.objects import ObjectStore
from . import space
from .obtain import obtain
from .session import Session
from .transaction import TxReport, execute, prepare, report_kept_config


def require_current(sess: Session) -> int:
    cur = sess.current_version()
    if not cur:
        raise UsageError(f"cannot tell which version {sess.s.root} runs (no VERSION_ID in os-release)")
    return cur


def check_update(sess: Session) -> tuple[int, int]:
    """(current, latest) versions."""
    cur = require_current(sess)
    latest = sess.latest()
    _confirm(sess, latest)
    return cur, latest.version


def _confirm(sess: Session, latest: Latest) -> None:
    """A pointer to the installed version raises the floor once that version's MoM verifies
    (usually from the state directory's copy); a pointer to another version never does here."""
    if latest.version == sess.trusted.current:
        with contextlib.suppress(SwupdError):
            sess.mom(latest.version, allow_older=True)
        sess.trusted.confirm(latest)


def summary(rep: TxReport, downloaded: int) -> str:
    """`downloaded` counts every byte fetched (pointer, manifests, content); the parenthesis
    says how much of it was content and where it came from."""
    o = rep.obtained
    return (
        f"{rep.installed} installed, {rep.removed} removed; {downloaded} bytes downloaded ({o.bytes} in "
        f"{len(o.packs)} pack(s) and {o.fullfiles} fullfile(s), {o.local} copied locally) in {rep.seconds:.1f}s"
    )


def update(sess: Session, version: int | None = None, download_only: bool = False) -> tuple[int, int, TxReport | None]:
    """Update to `version` (default: latest). Returns (from, to, report or None if nothing to do)."""
    cur = require_current(sess)
    latest = sess.latest()
    target = version or latest.version
    _confirm(sess, latest)
    if target == cur:
        return cur, cur, None
    if target < cur:
        raise RollbackError(f"version {target} is older than the installed version {cur}")
    if target > latest.version:
        raise UsageError(f"version {target} is not published (latest is {latest.version})")
    old_mom = sess.mom(cur, allow_older=True)
    new_mom = sess.mom(target)
    old = sess.installed_closure(old_mom)
    new_names = {b for b in old if b in {e.path for e in new_mom.entries if e.present}}
    new = sess.closure(new_mom, new_names)
    tx = prepare(sess, old, new, target, new_mom.timestamp, "update")
    # Only the plan is needed from here on: the manifests' memory goes back before downloading.
    del old, new
    if download_only:
        store = ObjectStore(sess.state.sub("objects"))
        space.check(sess, store, tx.change, tx.local, install=False)
        obtain(sess, store, {e.hash: e for e in tx.change.install}, tx.sources, tx.local)
        return cur, target, None
    rep = execute(sess, tx)
    report_kept_config(sess, rep)
    return cur, target, rep


def _empty_except_state(root: str, statedir: str) -> bool:
    """True if `root` holds nothing but the state directory and the directories leading to it
    (what an interrupted os-install leaves), none of them a symlink. Only names are read."""
    chain = set()
    p = statedir
    while p.startswith(root + os.sep):
        chain.add(p)
        p = os.path.dirname(p)
    todo = [root]
    while todo:
        d = todo.pop()
        if d == statedir:
            continue
        with os.scandir(d) as entries:
            for e in entries:
                if e.path not in chain or not e.is_dir(follow_symlinks=False):
                    return False
                todo.append(e.path)
    return True


def _interrupted(statedir: str) -> bool:
    """True if a checked state directory holds the journal of a transaction that was cut off
    after its commit point: a target it left half-installed is the client's own work."""
    try:
        st = os.lstat(os.path.join(ownership.resolve(statedir, "state directory", False), "journal"))
    except FileNotFoundError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_uid in (0, os.geteuid())


def prepare_target(target: str, statedir: str | None) -> str:
    """The os-install target resolved and checked (see ownership.py), and empty: made afresh
    (mode 0755) if it does not exist, otherwise refused unless `_empty_except_state` or its
    state directory holds an interrupted transaction (which the command then finishes). This
    comes before anything inside it is read (settings, state, hooks): a directory that holds
    something else is not the client's to trust."""
    root = ownership.resolve(target, "ROOT")
    if root == "/":
        raise UsageError("os-install needs a target directory other than /")
    try:
        st = os.lstat(root)
    except FileNotFoundError:
        ownership.make_dirs(root, 0o755, what="ROOT")
        return root
    if not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{root} is not a directory; os-install needs an empty directory")
    state = os.path.abspath(statedir) if statedir else os.path.join(root, "var/lib/swupd")
    if not _empty_except_state(root, state) and not _interrupted(state):
        raise UsageError(f"{root} is not empty; os-install needs an empty directory")
    return root


def os_install(
    sess: Session, version: int | None, bundles: set[str], finished: int | None = None
) -> tuple[int, TxReport | None]:
    """Install a whole OS into an empty directory. `finished` is the version of an interrupted
    transaction this command has just completed: the installation that was cut off, done now
    (no report of its own)."""
    if not _empty_except_state(sess.s.root, sess.state.path):
        if finished is not None:
            return finished, None
        raise UsageError(f"{sess.s.root} is not empty; os-install needs an empty directory")
    latest = sess.latest(allow_older=True)
    target = version or latest.version
    mom = sess.mom(target, allow_older=True)
    for b in bundles:
        sess.bundle_entry(mom, b)
    manifests = sess.closure(mom, bundles)
    tx = prepare(sess, {}, manifests, target, mom.timestamp, "bundles")
    del manifests
    return target, execute(sess, tx)
