"""Planning a change (`prepare`) and carrying it out (`execute`): obtain, stage, journal,
apply, record, run hooks.

Until the journal is written the live tree is untouched: objects are verified into the
store (when one object serves several paths, copies are staged beside it), and one file system
sync makes them durable. Writing the journal is the commit point; from
there the actions are replayed until they complete, by this run or, after a crash, by the next
one (see apply/journal.py), and a second sync precedes dropping the journal. A run killed
before its journal leaves staged objects that the next run returns to the store.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from swupd.format.durable import os_error, sync_filesystem
from swupd.format.errors import HashMismatchError, TreeIOError
from swupd.format.filehash import hash_path
from swupd.format.manifest import Entry, Manifest, Type

from .. import faults, ownership
from ..apply import journal as jn
from ..apply import preflight
from ..apply.disk import TreeDisk
from ..apply.plan import Change, plan_repair, plan_update, union
from ..state import write_atomic
from ..store.objects import ObjectStore
from . import space
from .obtain import ObtainReport, PackSource, obtain, pack_source
from .session import Session

HOOK_DIRS = ("usr/lib/swupd/post-update.d", "etc/swupd/post-update.d")
HOOKS_PENDING = "hooks-pending"


@dataclass
class TxReport:
    installed: int = 0
    removed: int = 0
    kept_config: list[str] = field(default_factory=list)
    moved_aside: list[str] = field(default_factory=list)
    obtained: ObtainReport = field(default_factory=ObtainReport)
    seconds: float = 0.0


@dataclass
class Transaction:
    """A planned change with all that `execute` needs to carry it out: the version and
    timestamp the tree records afterwards, the packs the objects may come from, and `local`,
    objects the tree already holds (hash: path). It keeps no manifest, so the manifests'
    memory can go back before anything is downloaded."""

    change: Change
    version: int
    timestamp: int
    sources: list[PackSource]
    local: dict[str, str]


def prepare(
    sess: Session,
    old: dict[str, Manifest],
    new: dict[str, Manifest],
    version: int,
    timestamp: int,
    kind: Literal["update", "bundles", "repair"],
) -> Transaction:
    """Plan the move of the tree from the bundles `old` to the bundles `new` (name: manifest,
    each a closure), which the tree then records as `version`.

    `kind` picks the planner: "update" (to another version) and "bundles" (bundle-add,
    bundle-remove, os-install from an empty `old`) trust the tree to hold `old` and take its
    objects as local sources; "repair" (`old` empty) compares `new` with the disk and takes
    nothing from a tree that may be damaged. Packs come for each bundle that `new` adds or
    changes, from the version `old` holds it at (0: a zero pack)."""
    disk = TreeDisk(sess.tree, sess.state.sub("version"))
    new_u = union([m.entries for m in new.values()])
    if kind == "repair":
        change = plan_repair(new_u, disk)
        local: dict[str, str] = {}
    else:
        old_u = union([m.entries for m in old.values()])
        change = plan_update(old_u, new_u, disk, new_version=kind == "update")
        local = {e.hash: p for p, e in old_u.items() if e.present}
    wanted = {e.hash for e in change.install}
    sources = [
        pack_source(b, m, old[b].version if b in old else 0, wanted)
        for b, m in sorted(new.items())
        if b not in old or old[b].version != m.version
    ]
    return Transaction(change, version, timestamp, sources, local)


def _stage(sess: Session, store: ObjectStore, change: Change, stage_dir: str) -> list[list[Any]]:
    """Make sure of every object and return the journal's install actions: the last use of an
    object is moved into place straight from the store, each earlier use from a copy staged
    beside it (the store and the stage share the state directory's file system)."""
    mkdirs, moves = [], []
    uses = Counter(e.hash for e in change.install if e.type != Type.DIRECTORY)
    for e in sorted(change.install, key=lambda e: (e.path.count("/"), e.path)):
        faults.check("stage")
        if e.type == Type.DIRECTORY:
            mkdirs.append(["mkdir", e.path, jn.meta_to_json(store.meta(e.hash))])
            continue
        uses[e.hash] -= 1
        if uses[e.hash]:
            dest = os.path.join(stage_dir, f"{e.hash}.{uses[e.hash]}")
            staged = store.copy_out(e.hash, dest)
        else:
            dest = store.path(e.hash)
            staged = store.sound(e.hash)
        if not staged:
            raise HashMismatchError(f"cached object for {e.path} is corrupt; run the command again")
        moves.append(["mv", dest, e.path])
    faults.check("staged")
    return mkdirs + moves


def recover_stage(sess: Session, store: ObjectStore) -> int:
    """Return objects a transaction staged but never journaled to the store (re-verified)."""
    stage_root = sess.state.sub("stage")
    recovered = 0
    for name in os.listdir(stage_root) if os.path.isdir(stage_root) else []:
        directory = os.path.join(stage_root, name)
        for f in os.listdir(directory) if os.path.isdir(directory) else []:
            digest = f.split(".")[0]
            path = os.path.join(directory, f)
            if len(digest) == 64 and not store.has(digest) and hash_path(path) == digest:
                os.makedirs(os.path.dirname(store.path(digest)), mode=0o700, exist_ok=True)
                os.rename(path, store.path(digest))
                recovered += 1
        shutil.rmtree(directory, ignore_errors=True)
    return recovered


def _sync_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        sync_filesystem(path)


def execute(sess: Session, tx: Transaction) -> TxReport:
    """Make the tree match the plan, crash-safely; the tree then runs `tx.version`."""
    started = time.monotonic()
    change, version, local = tx.change, tx.version, tx.local
    if sess.run_scripts:
        hooks(sess.s.root)  # hooks that could not run refuse the transaction before it starts
    rep = TxReport(kept_config=list(change.kept_config))
    store = ObjectStore(sess.state.sub("objects"))
    wanted: dict[str, Entry] = {e.hash: e for e in change.install}
    try:
        recover_stage(sess, store)
        space.check(sess, store, change, local)
        rep.obtained = obtain(sess, store, wanted, tx.sources, local)
        stage_dir = os.path.join(sess.state.sub("stage"), str(version))
        os.makedirs(stage_dir, mode=0o700)
        # Writing back the imported objects starts beside the checks of staging...
        early = threading.Thread(target=_sync_quietly, args=(stage_dir,), daemon=True)
        early.start()
        try:
            installs = _stage(sess, store, change, stage_dir)
        finally:
            early.join()
        # ...and one barrier after them makes every staged object durable before the
        # journal can refer to it.
        sync_filesystem(stage_dir)
    except OSError as e:
        raise os_error(
            e,
            "no space left while preparing the update; nothing was changed",
            f"preparing the update failed: {e.strerror}; nothing was changed",
        ) from None
    actions: list[list[Any]] = [["rm", p, keep] for p, keep in change.pre_remove]
    actions += installs
    actions += [["rm", p, ""] for p in change.remove]
    # The floor rises with the commit: every manifest this version needs has passed by now.
    actions.append(["record", {**sess.trusted.commit_info(version, tx.timestamp), "hooks": True}])
    # Every target as it is now, before the commit point: what stands in the way is cleared by
    # actions of the journal, what cannot be changed stops the transaction here.
    try:
        actions = preflight.check(sess.tree, actions, {e.path: e.hash for e in change.install})
    except TreeIOError:
        recover_stage(sess, store)
        raise
    journal = jn.Journal(version, stage_dir, actions, aside=str(int(time.time())))
    jn.write(sess.state, journal)
    rep.moved_aside = replay(sess, journal)
    rep.installed = len(change.install)
    rep.removed = len(change.remove) + sum(1 for _, keep in change.pre_remove if not keep)
    rep.seconds = time.monotonic() - started
    return rep


def report_kept_config(sess: Session, rep: TxReport) -> None:
    """Configuration the administrator changed stays as it is, and the commands that change the
    tree say so (`verify` lists it as `Config:` instead)."""
    for path in rep.kept_config:
        sess.out.warning(f"{path} was changed locally and is left as it is")


def replay(sess: Session, journal: jn.Journal) -> list[str]:
    """Perform (or finish) a journal, then run the post-update hooks."""

    def record(info: dict[str, Any]) -> None:
        # Not synced one by one: the sync below makes them durable before the journal goes,
        # and until then a crash replays the journal, this action included.
        write_atomic(sess.state.sub("version"), f"{int(info['version'])}\n".encode(), durable=False)
        if info.get("hooks"):
            write_atomic(sess.state.sub(HOOKS_PENDING), b"1\n", durable=False)
        sess.trusted.commit(info, durable=False)

    kept = jn.run(sess.state, sess.tree, journal, record, lambda d, t: sess.out.progress("Applying", d, t))
    for path in kept:
        sess.out.warning(f"content no manifest lists was moved out of the way, to {path}")
    # The tree's renames and removals become durable together, before the journal is dropped.
    sync_filesystem(sess.s.root)
    if os.stat(sess.s.root).st_dev != os.stat(sess.state.path).st_dev:
        sync_filesystem(sess.state.path)
    jn.finish(sess.state, journal)
    run_hooks(sess)
    return kept


def hooks(root: str) -> list[tuple[str, str]]:
    """The post-update hooks of the tree at `root`, in the order they run, each resolved with
    its directory and every one above checked first (see ownership.py): root runs them, so
    only root may be able to change them. One that another user could change refuses the
    command; `--no-scripts` skips them, and this check with them. Each comes as the path
    found in the directory (the program's name) and the path it resolved to (what runs)."""
    found = []
    for d in HOOK_DIRS:
        hook_dir = ownership.resolve(os.path.join(root, d), "hook directory")
        if not os.path.isdir(hook_dir):
            continue
        for name in sorted(os.listdir(hook_dir)):
            listed = os.path.join(hook_dir, name)
            hook = ownership.resolve(listed, "post-update hook")
            try:
                st = os.lstat(hook)
            except FileNotFoundError:
                continue  # a link to nothing runs nothing
            if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111:
                found.append((listed, hook))
    return found


def run_hooks(sess: Session) -> None:
    """ldconfig and systemd (on the running system), then the target's hook directories (with
    SWUPD_ROOT set, so a hook can act on a tree given with --path), after a completed transaction.
    `--no-scripts` skips them.

    A marker in the state directory keeps them pending across a crash until they have run."""
    marker = sess.state.sub(HOOKS_PENDING)
    if not os.path.exists(marker):
        return
    root = sess.s.root
    env = dict(os.environ, SWUPD_ROOT=root)
    if root == "/":
        if shutil.which("ldconfig"):
            subprocess.run(["ldconfig"], check=False, capture_output=True)
        if os.path.isdir("/run/systemd/system") and shutil.which("systemctl"):
            subprocess.run(["systemctl", "daemon-reload"], check=False, capture_output=True)
    if not sess.run_scripts:
        os.unlink(marker)
        return
    for listed, hook in hooks(root):
        r = subprocess.run([listed], executable=hook, check=False, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            sess.out.warning(f"post-update hook {os.path.basename(listed)} failed with status {r.returncode}")
    os.unlink(marker)
