"""`swupd-server report`: a static HTML page per stream (format) of a `www/` tree.

Reads only what is published, so it can run anywhere a copy of `www/` is: versions with their
dates, every bundle's size and file count, what changed from one version to the next, and the
size of each zero and delta pack.
"""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass, field

import jinja2
from swupd.format import layout

from .history import History

_PACK = re.compile(r"pack-(?P<bundle>.+)-from-(?P<frm>\d+)\.tar\Z")


@dataclass
class BundleRow:
    name: str
    version: int
    files: int
    size: int
    changed: bool


@dataclass
class VersionRow:
    version: int
    previous: int
    date: str
    bundles: list[BundleRow] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    packs: list[tuple[str, int, int]] = field(default_factory=list)
    fullfiles: int = 0
    fullfile_bytes: int = 0


def collect(www: str) -> dict[int, list[VersionRow]]:
    """Rows for every version, grouped by format, newest first."""
    history = History(www)
    streams: dict[int, list[VersionRow]] = {}
    for v in history.versions:
        mom = history.mom(v)
        when = datetime.datetime.fromtimestamp(mom.timestamp, datetime.UTC).strftime("%Y-%m-%d %H:%M")
        row = VersionRow(v, mom.previous, when)
        for e in sorted(mom.entries, key=lambda e: e.path):
            if not e.present:
                continue
            m = history.manifest(e.version, e.path)
            present = [x for x in m.entries if x.present]
            row.bundles.append(BundleRow(e.path, e.version, len(present), m.contentsize, e.version == v))
            if e.version == v:
                old = history.manifest(m.previous, e.path).by_path() if m.previous else {}
                for x in m.entries:
                    if x.version != v:
                        continue
                    before = old.get(x.path)
                    if not x.present:
                        row.deleted.append(x.path)
                    elif before is None or not before.present:
                        row.added.append(x.path)
                    else:
                        row.changed.append(x.path)
        vdir = history.path(layout.version_dir(v))
        for name in sorted(os.listdir(vdir)):
            match = _PACK.match(name)
            if match:
                size = os.path.getsize(os.path.join(vdir, name))
                row.packs.append((match["bundle"], int(match["frm"]), size))
        fdir = history.path(layout.files_dir(v))
        if os.path.isdir(fdir):
            names = os.listdir(fdir)
            row.fullfiles = len(names)
            row.fullfile_bytes = sum(os.path.getsize(os.path.join(fdir, n)) for n in names)
        for paths in (row.added, row.changed, row.deleted):
            paths.sort()
        streams.setdefault(mom.format, []).append(row)
    for rows in streams.values():
        rows.reverse()
    return streams


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("swupd_server", "templates"), autoescape=True, keep_trailing_newline=True
    )
    env.filters["size"] = human_size
    return env


def human_size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def write_report(www: str, output: str | None = None) -> list[str]:
    """Write `format<F>.html` per stream and an index; return the paths written."""
    out = output or os.path.join(www, layout.report_dir())
    os.makedirs(out, exist_ok=True)
    streams = collect(www)
    env = _env()
    pages = []
    for fmt, rows in sorted(streams.items()):
        path = os.path.join(out, f"format{fmt}.html")
        with open(path, "w", encoding="utf-8") as f:
            f.write(env.get_template("stream.html").render(format=fmt, rows=rows))
        pages.append(path)
    index = os.path.join(out, "index.html")
    with open(index, "w", encoding="utf-8") as f:
        f.write(env.get_template("index.html").render(streams=streams))
    pages.append(index)
    return pages
