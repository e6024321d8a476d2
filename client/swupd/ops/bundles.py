"""`bundle-add`, `bundle-remove`, `bundle-list`, `bundle-info` and `search`."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

from swupd.format.errors import BundleError, NetworkError
from swupd.format.paths import OS_CORE

from .session import Session
from .transaction import TxReport, execute, prepare, report_kept_config
from .update import require_current


def _present(mom) -> set[str]:
    return {e.path for e in mom.entries if e.present}


def bundle_add(sess: Session, names: list[str]) -> tuple[list[str], TxReport | None]:
    """Install bundles (and what they include). Returns the bundles newly installed."""
    cur = require_current(sess)
    mom = sess.mom(cur, allow_older=True)
    unknown = [n for n in names if n not in _present(mom)]
    if unknown:
        raise BundleError(f"no such bundle in version {cur}: {', '.join(unknown)}")
    installed = sess.installed_bundles() & _present(mom)
    old = sess.closure(mom, installed)
    new = sess.closure(mom, installed | set(names))
    added = sorted(set(new) - set(old))
    if not added:
        return [], None
    tx = prepare(sess, old, new, cur, mom.timestamp, "bundles")
    del old, new
    rep = execute(sess, tx)
    report_kept_config(sess, rep)
    return added, rep


def dependents(sess: Session, mom, installed: set[str], name: str) -> list[str]:
    """Installed bundles that include `name`, directly or not."""
    out = []
    for b in sorted(installed - {name}):
        if name in sess.closure(mom, {b}) and b != OS_CORE:
            out.append(b)
    return out


def bundle_remove(sess: Session, names: list[str]) -> TxReport:
    cur = require_current(sess)
    mom = sess.mom(cur, allow_older=True)
    installed = sess.installed_bundles() & _present(mom)
    if OS_CORE in names:
        raise BundleError(f"{OS_CORE} cannot be removed")
    missing = [n for n in names if n not in installed]
    if missing:
        raise BundleError(f"not installed: {', '.join(missing)}")
    remaining = installed - set(names)
    for n in names:
        needed_by = [b for b in dependents(sess, mom, remaining | {n}, n) if b in remaining]
        if needed_by:
            raise BundleError(f"{n} is required by {', '.join(needed_by)}; remove those first")
    old = sess.closure(mom, installed)
    new = sess.closure(mom, remaining)
    tx = prepare(sess, old, new, cur, mom.timestamp, "bundles")
    del old, new
    rep = execute(sess, tx)
    report_kept_config(sess, rep)
    return rep


@dataclass
class BundleRow:
    name: str
    installed: bool
    version: int


def bundle_list(sess: Session, all_bundles: bool) -> list[BundleRow]:
    installed = sess.installed_bundles()
    if not all_bundles:
        return [BundleRow(b, True, 0) for b in sorted(installed)]
    mom = sess.mom(require_current(sess), allow_older=True)
    return [
        BundleRow(e.path, e.path in installed, e.version)
        for e in sorted(mom.entries, key=lambda e: e.path)
        if e.present
    ]


def bundle_info(sess: Session, name: str) -> dict:
    cur = require_current(sess)
    mom = sess.mom(cur, allow_older=True)
    entry = sess.bundle_entry(mom, name)
    m = sess.manifest(entry)
    closure = sess.closure(mom, {name})
    present = [e for e in m.entries if e.present]
    return {
        "name": name,
        "installed": name in sess.installed_bundles(),
        "version": entry.version,
        "includes": m.includes,
        "all_includes": sorted(set(closure) - {name}),
        "files": len(present),
        "size": m.contentsize,
        "size_with_includes": sum(x.contentsize for x in closure.values()),
    }


def _matcher(term: str) -> Callable[[str], bool]:
    """A term with `*?[` is a glob: of the whole path when it holds a `/`, else of the file's
    name. Otherwise a term with a `/` matches paths that contain it, and a plain word matches
    file names that contain it (`greeting` finds `/usr/share/greeting.txt`)."""
    if any(c in term for c in "*?["):
        if "/" in term:
            return lambda path: fnmatch.fnmatchcase(path, term)
        return lambda path: fnmatch.fnmatchcase(path.rpartition("/")[2], term)
    if "/" in term:
        return lambda path: term in path
    return lambda path: term in path.rpartition("/")[2]


def search(sess: Session, term: str) -> list[tuple[str, str]]:
    """(bundle, path) for every present path the term matches (see `_matcher`). Installed
    bundles are searched first, from the manifests the device keeps (no network); the others
    need their manifests from the server, and when it cannot be reached their part is left
    out with a warning."""
    cur = require_current(sess)
    mom = sess.mom(cur, allow_older=True)
    match = _matcher(term)
    installed = sess.installed_bundles()
    entries = sorted((e for e in mom.entries if e.present), key=lambda e: (e.path not in installed, e.path))
    hits = []
    for e in entries:
        try:
            m = sess.manifest(e)
        except NetworkError as err:
            sess.out.warning(f"bundles not installed were not searched: {err}")
            break
        hits += [(e.path, x.path) for x in m.entries if x.present and match(x.path)]
    return sorted(hits)
