"""The transaction journal: the point of no return, and how a crash rolls forward.

Everything a transaction needs is downloaded, verified and staged (fsynced) before the journal
is written. The journal lists the remaining actions, in order; it is written atomically and
fsynced. Each action is idempotent, so after SIGKILL or power loss at any instant the next run
simply performs the whole list again and ends in exactly the new version. Before the journal
exists nothing in the tree has changed, so a crash then leaves exactly the old version.

Actions:
  ["rm", path, keep_hash]   remove a file, link or empty directory (a non-empty directory is
                            moved aside); skipped if the object already hashes to keep_hash
  ["disarm", path, keep_hash]
                            take setuid, setgid and capabilities off the file at path (so a
                            hard link cannot keep a privileged old program alive); skipped if
                            absent or already hashing to keep_hash
  ["aside", path]           move a file, link or special file out of the way of a directory
                            (as `.deleted.<aside>.<name>`); skipped if absent or a directory
  ["mkdir", path, meta]     make a directory with this metadata (replacing a non-directory)
  ["mv", object, path]      rename a stored or staged object into place; done if it is gone
  ["record", {...}]         write the state directory's version records
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from swupd.format.errors import FormatError, TreeIOError
from swupd.format.fullfile import Meta

from .. import faults
from ..state import StateDir, write_atomic
from .tree import Tree

JOURNAL = "journal"


def meta_to_json(meta: Meta) -> dict[str, Any]:
    return {"mode": meta.mode, "uid": meta.uid, "gid": meta.gid, "xattrs": {k: v.hex() for k, v in meta.xattrs.items()}}


def meta_from_json(d: dict[str, Any]) -> Meta:
    return Meta(
        int(d["mode"]), int(d["uid"]), int(d["gid"]), xattrs={k: bytes.fromhex(v) for k, v in d["xattrs"].items()}
    )


@dataclass
class Journal:
    """A transaction's remaining actions and what it installs."""

    version: int
    stage: str
    actions: list[list[Any]] = field(default_factory=list)
    aside: str = ""

    def dumps(self) -> bytes:
        return json.dumps(
            {"version": self.version, "stage": self.stage, "aside": self.aside, "actions": self.actions}
        ).encode()

    @classmethod
    def loads(cls, data: bytes) -> Journal:
        try:
            d = json.loads(data)
            return cls(int(d["version"]), str(d["stage"]), list(d["actions"]), str(d.get("aside", "")))
        except (ValueError, KeyError, TypeError) as e:
            raise FormatError(f"journal unreadable: {e}") from None


def write(state: StateDir, journal: Journal) -> None:
    write_atomic(state.sub(JOURNAL), journal.dumps())
    faults.check("journal-written")


def pending(state: StateDir) -> Journal | None:
    try:
        with open(state.sub(JOURNAL), "rb") as f:
            return Journal.loads(f.read())
    except FileNotFoundError:
        return None


def run(
    state: StateDir,
    tree: Tree,
    journal: Journal,
    record: Callable[[dict[str, Any]], None],
    progress: Callable[[int, int], None] | None = None,
) -> list[str]:
    """Perform every action; return the names user content was moved aside to."""
    kept: list[str] = []
    total = len(journal.actions)
    for i, action in enumerate(journal.actions):
        faults.check("action")
        kind = action[0]
        if kind == "rm":
            _, path, keep_hash = action
            if keep_hash and tree.hash(path) == keep_hash:
                continue
            moved = tree.remove(path, journal.aside or str(journal.version))
            if moved:
                kept.append(os.path.join(os.path.dirname(path), moved))
        elif kind == "disarm":
            tree.disarm(action[1], action[2])
        elif kind == "aside":
            moved = tree.aside(action[1], journal.aside or str(journal.version))
            if moved:
                kept.append(os.path.join(os.path.dirname(action[1]), moved))
        elif kind == "mkdir":
            tree.mkdir(action[1], meta_from_json(action[2]))
        elif kind == "mv":
            _, staged, path = action
            try:
                tree.move_in(staged, path)
            except (TreeIOError, OSError):
                if os.path.lexists(staged):
                    raise  # otherwise moved already, by the run a crash interrupted
        elif kind == "record":
            faults.check("applied")
            record(action[1])
            faults.check("recorded")
        else:
            raise FormatError(f"journal holds an unknown action {kind!r}")
        if progress:
            progress(i + 1, total)
    return kept


def finish(state: StateDir, journal: Journal) -> None:
    """Forget a completed transaction: its staged leftovers, then the journal itself."""
    import shutil

    if journal.stage and os.path.isdir(journal.stage):
        shutil.rmtree(journal.stage, ignore_errors=True)
    try:
        os.unlink(state.sub(JOURNAL))
    except FileNotFoundError:
        pass
