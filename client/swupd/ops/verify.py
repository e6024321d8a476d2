"""`verify` and `repair`: compare the tree with its manifests, and restore it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from swupd.format.filehash import ZERO_HASH
from swupd.format.paths import BOOT_PREFIXES, MARKER_DIR

from ..apply.plan import is_state
from .session import Session
from .transaction import TxReport, execute, prepare
from .update import require_current

PICKY_TREE = "/usr"
# What --picky leaves alone below /usr: local and source trees, boot content (kept on purpose as
# the way back), the bundle markers.
_BOOT_IN_TREE = tuple(p.rstrip("/") for p in BOOT_PREFIXES if p.startswith(PICKY_TREE + "/"))
PICKY_SKIP = ("/usr/local", "/usr/src", *_BOOT_IN_TREE, MARKER_DIR)


@dataclass
class VerifyReport:
    version: int
    checked: int = 0
    missing: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    config: list[str] = field(default_factory=list)  # changed by the administrator: kept
    fixed: TxReport | None = None

    @property
    def clean(self) -> bool:
        """Nothing to repair; configuration changed locally is the administrator's, not damage."""
        return not (self.missing or self.modified or self.extra)


def _picky_extras(sess: Session, known: set[str]) -> list[str]:
    """Objects under /usr that no installed manifest lists (deepest first)."""
    extras = []
    top = sess.tree.host_path(PICKY_TREE)
    for dirpath, dirs, files in os.walk(top):
        rel_dir = "/" + os.path.relpath(dirpath, sess.s.root)
        keep_dirs = []
        for d in dirs:
            path = f"{rel_dir}/{d}"
            if path.startswith(PICKY_SKIP):
                continue
            if os.path.islink(os.path.join(dirpath, d)):
                if path not in known:
                    extras.append(path)
                continue
            keep_dirs.append(d)
            if path not in known:
                extras.append(path)
        dirs[:] = keep_dirs
        for f in files:
            path = f"{rel_dir}/{f}"
            if path not in known and not path.startswith(PICKY_SKIP):
                extras.append(path)
    return sorted(extras, key=lambda p: p.count("/"), reverse=True)


def verify(sess: Session, fix: bool, picky: bool, bundles: set[str] | None = None) -> VerifyReport:
    cur = require_current(sess)
    mom = sess.mom(cur, allow_older=True)
    manifests = sess.closure(mom, bundles) if bundles else sess.installed_closure(mom)
    tx = prepare(sess, {}, manifests, cur, mom.timestamp, "repair")
    change = tx.change
    # A path any bundle lists as present is one the tree should hold.
    known = {e.path for m in manifests.values() for e in m.entries if e.present}
    rep = VerifyReport(cur, checked=len(known))
    for e in change.install:
        (rep.missing if sess.tree.hash(e.path) == ZERO_HASH else rep.modified).append(e.path)
    rep.extra = list(change.remove) + [p for p, keep in change.pre_remove if not keep]
    rep.config = sorted(change.kept_config)
    if picky:
        extras = [p for p in _picky_extras(sess, known) if not is_state(p)]
        rep.extra += extras
        change.remove += [p for p in extras if p not in change.remove]
    if fix and not change.empty:
        rep.fixed = execute(sess, tx)
    return rep
