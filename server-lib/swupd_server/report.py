"""`swupd-server report`: a static HTML page per stream (format) of a `www/` tree.

Reads only what is published, so it can run anywhere a copy of `www/` is: the stream's signing
keys, the expiry of its `latest`, its compat id, identity and os-release; versions with their
dates, every bundle's size and file count, what changed from one version to the next, the size
of each zero and delta pack, and the warnings of each build (its build record). Three charts,
inline SVG without script: what each update costs a device, content size and changed files.
"""

from __future__ import annotations

import os
import re
import shlex
import time
from dataclasses import dataclass, field

import jinja2
from swupd.format import layout, signing
from swupd.format.errors import FormatError, SwupdError
from swupd.format.latest import Latest
from swupd.format.latest import loads as load_latest
from swupd.format.osrelease import OS_RELEASE
from swupd.format.paths import OS_CORE

from . import buildrecord, plots
from .costs import BundleCost, Costs
from .history import History
from .sign import utc

_PACK = re.compile(r"pack-(?P<bundle>.+)-from-(?P<frm>\d+)\.tar\Z")
# How much of a long stream the charts show: the newest versions, so each stays readable.
UPDATE_TARGETS = 6
SERIES_VERSIONS = 40


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
    keys: list[str] = field(default_factory=list)
    bundles: list[BundleRow] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    packs: list[tuple[str, int, int]] = field(default_factory=list)
    fullfiles: int = 0
    fullfile_bytes: int = 0
    record: buildrecord.BuildRecord | None = None


@dataclass
class StreamInfo:
    """What a device of the stream is told to trust and check, as published."""

    latest: Latest
    latest_keys: list[str]
    compat: str
    stream: str
    os_release: dict[str, str]

    @property
    def expires(self) -> str:
        return utc(self.latest.expires)

    @property
    def timestamp(self) -> str:
        return utc(self.latest.timestamp)

    @property
    def expired(self) -> bool:
        return self.latest.expires < time.time()


@dataclass
class Stream:
    format: int
    rows: list[VersionRow]  # newest first
    info: StreamInfo
    charts: list[plots.Chart] = field(default_factory=list)
    # (target, source, cost by bundle), newest target first
    updates: list[tuple[int, int, dict[str, BundleCost]]] = field(default_factory=list)

    @property
    def update_bundles(self) -> list[str]:
        return sorted({b for _, _, costs in self.updates for b in costs}, key=lambda n: (n != OS_CORE, n))


def _signers(history: History, rel: str) -> list[str]:
    """The key ids of a signature file's lines, in its order."""
    try:
        with open(history.path(rel), "rb") as f:
            return list(dict.fromkeys(kid for kid, _ in signing.parse_signatures(f.read())))
    except FileNotFoundError:
        return []
    except OSError as e:
        raise FormatError(f"cannot read {rel} in {history.www}: {e.strerror}") from None
    except SwupdError as e:
        raise FormatError(f"{rel} in {history.www} is malformed: {e}") from None


def _latest(history: History, fmt: int) -> Latest:
    rel = layout.latest(fmt)
    try:
        with open(history.path(rel), "rb") as f:
            return load_latest(f.read())
    except OSError as e:
        raise FormatError(f"cannot read {rel} in {history.www}: {e.strerror}") from None
    except FormatError as e:
        raise FormatError(f"{rel} in {history.www} is malformed: {e}") from None


def _os_release(history: History, version: int) -> dict[str, str]:
    """The fields of the version's /usr/lib/os-release, as the device gets it."""
    core = history.bundle_manifests(version).get(OS_CORE)
    entry = core.by_path().get(OS_RELEASE) if core else None
    if entry is None or not entry.present:
        return {}
    _, data = history.read_fullfile(entry.version, entry.hash, entry.size)
    out = {}
    for line in data.decode("utf-8", "replace").splitlines():
        key, eq, value = line.partition("=")
        if eq and key.strip() and not key.startswith("#"):
            try:
                words = shlex.split(value)
            except ValueError:
                words = [value]
            out[key.strip()] = " ".join(words)
    return out


def _row(history: History, v: int) -> VersionRow:
    mom = history.mom(v)
    row = VersionRow(v, mom.previous, utc(mom.timestamp), _signers(history, layout.sig(layout.mom(v))))
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
    row.record = buildrecord.load(history.www, v)
    return row


def _charts(stream: Stream, costs: Costs) -> None:
    rows = list(reversed(stream.rows))  # oldest first
    bundles = sorted({b.name for r in rows for b in r.bundles}, key=lambda n: (n != OS_CORE, n))
    groups = []
    for row in rows[-UPDATE_TARGETS:]:
        bars = []
        for source in costs.sources(row.version):
            per = costs.update(source, row.version)
            stream.updates.insert(0, (row.version, source, {c.bundle: c for c in per}))
            note = "fresh install" if source == 0 else f"update from {source}"
            bars.append(plots.Bar(str(source), {c.bundle: c.total for c in per}, note))
        groups.append((f"to {row.version}", bars))
    stream.charts.append(
        plots.stacked("update-cost", "Bytes per update path", groups, bundles, True, totals=True, bar_width=34)
    )
    recent = rows[-SERIES_VERSIONS:]
    sizes = [(str(r.version), [plots.Bar("", {b.name: b.size for b in r.bundles})]) for r in recent]
    stream.charts.append(plots.stacked("content-size", "Content size per version", sizes, bundles, True))
    kinds = ["added", "changed", "deleted"]
    files = [
        (str(r.version), [plots.Bar("", {"added": len(r.added), "changed": len(r.changed), "deleted": len(r.deleted)})])
        for r in recent
    ]
    stream.charts.append(plots.stacked("files-changed", "Files changed per version", files, kinds, False))


def collect(www: str) -> dict[int, Stream]:
    """Every stream (format) of a tree, its versions newest first, with its charts."""
    history = History(www)
    rows: dict[int, list[VersionRow]] = {}
    for v in history.versions:
        rows.setdefault(history.mom(v).format, []).append(_row(history, v))
    costs = Costs(history)
    streams = {}
    for fmt, versions in rows.items():
        versions.reverse()
        newest = history.mom(versions[0].version)
        info = StreamInfo(
            _latest(history, fmt),
            _signers(history, layout.sig(layout.latest(fmt))),
            newest.compat,
            newest.stream,
            _os_release(history, versions[0].version),
        )
        streams[fmt] = Stream(fmt, versions, info)
        _charts(streams[fmt], costs)
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
    streams = collect(www)
    os.makedirs(out, exist_ok=True)
    env = _env()
    pages = []
    for fmt, stream in sorted(streams.items()):
        path = os.path.join(out, f"format{fmt}.html")
        with open(path, "w", encoding="utf-8") as f:
            page = env.get_template("stream.html").render(
                s=stream, rows=stream.rows, format=fmt, update_targets=UPDATE_TARGETS, series_versions=SERIES_VERSIONS
            )
            f.write(page)
        pages.append(path)
    index = os.path.join(out, "index.html")
    with open(index, "w", encoding="utf-8") as f:
        f.write(env.get_template("index.html").render(streams=streams))
    pages.append(index)
    return pages
