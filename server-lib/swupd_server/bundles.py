"""The bundles file: which paths of the root file system belong to which bundle.

TOML, one table per bundle: `[bundle.<name>]` with optional `includes = [...]` and
`paths = [...]` (absolute paths or globs; `*` and `?` stay within one path component, `**`
spans any number), and an optional top-level `exclude = [...]` of paths that stay in images
but are never part of update content (a machine id, a host key). A pattern that matches a
directory claims everything below it. `os-core` always exists and holds every path no other
bundle claims; a path may belong to several bundles; the parents of every path belong to its
bundle.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field

from swupd.format.errors import UsageError
from swupd.format.paths import OS_CORE, is_bundle_name


@dataclass
class Bundle:
    name: str
    includes: list[str] = field(default_factory=list)
    patterns: list[str] = field(default_factory=list)


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Regex for an absolute glob; also matches everything below a matched directory."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("/**", i):
            out.append("(?:/[^/]+)*")
            i += 3
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                raise UsageError(f"unclosed '[' in bundle path {pattern!r}")
            body = pattern[i + 1 : end].replace("\\", "\\\\")
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append(f"(?!/)[{body}]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + "(?:/.*)?", re.DOTALL)


def load(path: str) -> BundleSet:
    """Read and check a bundles file; `os-core` is added when absent."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise UsageError(f"cannot read bundles file {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"bundles file {path} is not valid TOML: {e}") from None
    return parse(data, path)


class BundleSet(dict[str, Bundle]):
    """Bundles by name, and the paths left out of update content altogether."""

    exclude: list[str]

    def __init__(self, *args: object, exclude: list[str] | None = None) -> None:
        super().__init__(*args)
        self.exclude = exclude or []

    def excluded(self, paths: Iterable[str]) -> set[str]:
        """Paths matched by `exclude` (a matched directory takes everything below it)."""
        regexes = [_glob_regex(p.rstrip("/") or "/") for p in self.exclude]
        return {p for p in paths if any(rx.fullmatch(p) for rx in regexes)}


def parse(data: dict, source: str = "bundles file") -> BundleSet:
    unknown = set(data) - {"bundle", "exclude"}
    if unknown:
        raise UsageError(f"{source}: unknown top-level key(s): {', '.join(sorted(unknown))}")
    tables = data.get("bundle", {})
    if not isinstance(tables, dict):
        raise UsageError(f"{source}: 'bundle' must be a table of bundles")
    exclude = data.get("exclude", [])
    if not isinstance(exclude, list) or not all(isinstance(p, str) and p.startswith("/") for p in exclude):
        raise UsageError(f"{source}: 'exclude' must be a list of absolute paths")
    bundles = BundleSet({OS_CORE: Bundle(OS_CORE)}, exclude=exclude)
    for name, spec in tables.items():
        if not is_bundle_name(name):
            raise UsageError(f"{source}: invalid bundle name {name!r}")
        if not isinstance(spec, dict):
            raise UsageError(f"{source}: bundle {name!r} must be a table")
        extra = set(spec) - {"includes", "paths"}
        if extra:
            raise UsageError(f"{source}: bundle {name!r} has unknown key(s): {', '.join(sorted(extra))}")
        includes, patterns = spec.get("includes", []), spec.get("paths", [])
        for key, value in (("includes", includes), ("paths", patterns)):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise UsageError(f"{source}: {name}.{key} must be a list of strings")
        for p in patterns:
            if not p.startswith("/"):
                raise UsageError(f"{source}: {name}: path {p!r} is not absolute")
        if name == OS_CORE and includes:
            raise UsageError(f"{source}: os-core cannot include other bundles")
        bundles[name] = Bundle(name, list(dict.fromkeys(includes)), patterns)
    for b in bundles.values():
        for inc in b.includes:
            if inc not in bundles:
                raise UsageError(f"{source}: bundle {b.name!r} includes unknown bundle {inc!r}")
    for name in bundles:
        closure(bundles, name)
    return bundles


def closure(bundles: dict[str, Bundle], name: str) -> list[str]:
    """Every bundle `name` includes, directly or not, in first-seen order; refuses cycles."""
    seen: list[str] = []

    def walk(n: str, stack: tuple[str, ...]) -> None:
        for inc in bundles[n].includes:
            if inc in stack:
                raise UsageError(f"bundle include cycle: {' -> '.join((*stack, inc))}")
            if inc not in seen:
                seen.append(inc)
                walk(inc, (*stack, inc))

    walk(name, (name,))
    return seen


def assign(bundles: dict[str, Bundle], paths: Iterable[str]) -> dict[str, set[str]]:
    """The set of paths each bundle claims (with parents); unclaimed paths go to os-core."""
    # Literal paths (the common case for lists made from package contents) are set lookups;
    # a bundle's globs are one alternation, matched once per path.
    literal: dict[str, set[str]] = {}
    globs: dict[str, list[str]] = {}
    for n, b in bundles.items():
        for p, is_glob in map(_pattern, b.patterns):
            if is_glob:
                globs.setdefault(n, []).append(_glob_regex(p).pattern)
            else:
                literal.setdefault(p, set()).add(n)
    regexes = [(n, re.compile("|".join(f"(?:{rx})" for rx in rxs))) for n, rxs in globs.items()]
    claimed: dict[str, set[str]] = {n: set() for n in bundles}
    for path in paths:
        owners: set[str] = set()
        if literal:
            candidate = path
            while candidate:
                owners |= literal.get(candidate, _NONE)
                candidate = candidate.rpartition("/")[0]
        for n, rx in regexes:
            if rx.fullmatch(path):
                owners.add(n)
        for owner in owners or (OS_CORE,):
            claimed[owner].add(path)
    for members in claimed.values():
        for path in list(members):
            parent = path.rpartition("/")[0]
            # Stops at the first parent already claimed: its own parents were added with it.
            while parent and parent not in members:
                members.add(parent)
                parent = parent.rpartition("/")[0]
    return claimed


_NONE: frozenset[str] = frozenset()


def unmatched(bundles: dict[str, Bundle], paths: Iterable[str]) -> list[tuple[str, str]]:
    """(bundle, path pattern) for every pattern that matches nothing in the tree: most often a
    typo, which would otherwise make an empty bundle without a word."""
    have = set(paths)
    out = []
    for n, b in sorted(bundles.items()):
        for p, is_glob in map(_pattern, b.patterns):
            rx = _glob_regex(p) if is_glob else None
            if not (any(rx.fullmatch(path) for path in have) if rx else p in have):
                out.append((n, p))
    return out


def _pattern(p: str) -> tuple[str, bool]:
    """A bundle path as matched (no trailing slash), and whether it is a glob."""
    p = p.rstrip("/") or "/"
    return p, any(c in p for c in "*?[")
