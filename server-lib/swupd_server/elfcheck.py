"""Build-time check that every ELF file of a bundle can load on a device.

For every ELF object of a bundle, each DT_NEEDED library (and the program interpreter) must be
found, through the same search the dynamic loader does (RPATH/RUNPATH with `$ORIGIN`, the
default directories, `ld.so.conf`), in that bundle, the bundles it includes, or os-core. A
bundle that would install a program whose library lives in a bundle the device may not have
is reported with both paths.
"""

from __future__ import annotations

import os
import posixpath
import stat
from dataclasses import dataclass

from . import bundles as bl
from . import cachefile, workers
from .progress import Progress
from .scan import Item

DEFAULT_DIRS = ("/lib", "/usr/lib", "/lib64", "/usr/lib64", "/lib32", "/usr/lib32")


@dataclass(frozen=True)
class Problem:
    bundle: str
    path: str
    needed: str
    found_in: str
    elsewhere: str = ""  # a file of that name off the search path

    def text(self) -> str:
        if self.found_in:
            where = f"it is at {self.found_in}, outside the bundle and its includes"
        elif self.elsewhere:
            # Such a library still loads when the program that loads this one has loaded it
            # first (systemd's private libraries work so), which the check cannot see.
            where = f"it is only at {self.elsewhere}, off its search path"
        else:
            where = "it is not in the rootfs"
        return f"bundle {self.bundle}: {self.path} needs {self.needed}, but {where}"


def groups(problems: list[Problem]) -> list[list[Problem]]:
    """Problems by bundle, missing library and where that library is, in that order: a tree
    missing one library would otherwise give a line for each of its users."""
    by_key: dict[tuple[str, str, str], list[Problem]] = {}
    for p in problems:
        by_key.setdefault((p.bundle, p.needed, p.found_in or p.elsewhere), []).append(p)
    return [ps for _, ps in sorted(by_key.items())]


def grouped(problems: list[Problem]) -> list[str]:
    """One line per bundle and missing library, with how many files need it and one of them."""
    out = []
    for ps in groups(problems):
        first = ps[0].text()
        out.append(first if len(ps) == 1 else f"{first} (and {len(ps) - 1} more file(s) need it)")
    return out


def _read_elf(source: str) -> tuple[list[str], list[str], str] | None:
    """(needed, search path, interpreter) of an ELF file, or None if it is not one."""
    # Imported here: a rebuild finds nearly every file's facts in the cache.
    from elftools.common.exceptions import ELFError
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile

    try:
        with open(source, "rb") as f:
            if f.read(4) != b"\x7fELF":
                return None
            f.seek(0)
            elf = ELFFile(f)
            needed, paths, interp = [], [], ""
            for seg in elf.iter_segments():
                if seg.header.p_type == "PT_INTERP":
                    interp = seg.get_interp_name()
            for sec in elf.iter_sections():
                if isinstance(sec, DynamicSection):
                    for tag in sec.iter_tags():
                        if tag.entry.d_tag == "DT_NEEDED":
                            needed.append(tag.needed)
                        elif tag.entry.d_tag in ("DT_RPATH", "DT_RUNPATH"):
                            value = tag.rpath if tag.entry.d_tag == "DT_RPATH" else tag.runpath
                            paths += [p for p in value.split(":") if p]
            return needed, paths, interp
    except (ELFError, OSError, ValueError, AssertionError, KeyError):
        return None


def _resolve(path: str, items: dict[str, Item], hops: int = 40) -> list[str]:
    """Every tree path a lookup of `path` passes through (symlinks in any component, then the
    final object), or [] if it leads nowhere inside the tree."""
    chain: list[str] = []
    parts = [p for p in path.split("/") if p]
    current = ""
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            current = posixpath.dirname(current) if current else ""
            continue
        candidate = f"{current}/{part}"
        item = items.get(candidate)
        if item is None:
            return []
        chain.append(candidate)
        if stat.S_ISLNK(item.mode):
            hops -= 1
            if hops < 0:
                return []
            if item.linkname.startswith("/"):
                current = ""
            parts = [p for p in item.linkname.split("/") if p] + parts
            continue
        current = candidate
    return chain if chain and not stat.S_ISLNK(items[chain[-1]].mode) else []


def _ld_conf_dirs(items: dict[str, Item]) -> list[str]:
    dirs: list[str] = []
    confs = ["/etc/ld.so.conf", *sorted(p for p in items if p.startswith("/etc/ld.so.conf.d/") and p.endswith(".conf"))]
    for conf in confs:
        chain = _resolve(conf, items)
        if not chain:
            continue
        item = items[chain[-1]]
        try:
            text = item.data.decode() if item.data is not None else open(item.source, errors="replace").read()
        except OSError:
            continue
        dirs += [ln.strip() for ln in text.splitlines() if ln.strip().startswith("/")]
    return dirs


def read_all(
    items: dict[str, Item], jobs: int = 1, cache_path: str | None = None, progress: Progress | None = None
) -> dict[str, tuple]:
    """(needed, search path, interpreter) of every ELF file, by path.

    Results are cached by content hash, so a rebuild parses only files it has not seen."""
    cache = cachefile.load(cache_path)
    candidates = [p for p, i in items.items() if stat.S_ISREG(i.mode) and i.size > 64 and i.data is None]
    todo = [p for p in candidates if items[p].hash not in cache]
    sources = [items[p].source for p in todo]
    with (progress or Progress()).stage("elf-check", len(sources)) as advance:
        par = jobs if len(sources) > 256 else 1
        parsed = workers.map(_read_elf, sources, par, chunksize=64, done=lambda rs: advance(len(rs)))
    for p, r in zip(todo, parsed, strict=True):
        cache[items[p].hash] = list(r) if r is not None else None
    if todo:
        live = {items[p].hash for p in candidates}
        cachefile.save(cache_path, {h: v for h, v in cache.items() if h in live})
    return {p: tuple(cache[items[p].hash]) for p in candidates if cache.get(items[p].hash) is not None}


def check(
    items: dict[str, Item],
    specs: dict[str, bl.Bundle],
    claimed: dict[str, set[str]],
    jobs: int = 1,
    cache_path: str | None = None,
    progress: Progress | None = None,
) -> list[Problem]:
    """Every unresolvable dependency of every bundle's ELF files."""
    elves = read_all(items, jobs, cache_path, progress)
    extra_dirs = _ld_conf_dirs(items)
    owners: dict[str, list[str]] = {}
    for name, paths in claimed.items():
        for p in paths:
            owners.setdefault(p, []).append(name)
    by_name: dict[str, str] = {}  # filled when the first problem needs it
    # Most ELF files look up the same few libraries in the same directories: each place is
    # resolved once per check.
    resolved: dict[str, list[str]] = {}

    def chain_of(place: str) -> list[str]:
        chain = resolved.get(place)
        if chain is None:
            chain = resolved[place] = _resolve(posixpath.normpath(place), items)
        return chain

    problems: list[Problem] = []
    for name in sorted(specs):
        available = set(claimed[name]) | claimed[bl.OS_CORE]
        for inc in bl.closure(specs, name):
            available |= claimed[inc]
        for path in sorted(claimed[name]):
            info = elves.get(path)
            if info is None or (name != bl.OS_CORE and path in claimed[bl.OS_CORE]):
                continue
            needed, rpaths, interp = info
            origin = posixpath.dirname(path)
            dirs = [r.replace("$ORIGIN", origin).replace("${ORIGIN}", origin) for r in rpaths]
            dirs += list(DEFAULT_DIRS) + extra_dirs
            wanted = [(interp, [interp])] if interp else []
            wanted += [(lib, [posixpath.join(d, lib) for d in dirs] if "/" not in lib else [lib]) for lib in needed]
            for lib, places in wanted:
                if any((c := chain_of(p)) and all(link in available for link in c) for p in places):
                    continue
                chains = [c for c in map(chain_of, places) if c]
                found = chains[0][-1] if chains else ""
                if not by_name:
                    for p in sorted(items):
                        by_name.setdefault(posixpath.basename(p), p)
                elsewhere = "" if found else by_name.get(os.path.basename(lib), "")
                problem = Problem(name, path, os.path.basename(lib), found, elsewhere)
                if problem not in problems:
                    problems.append(problem)
    return problems
