"""`swupd-server report`: one static HTML page per format naming every version and bundle, the
stream's signing keys, expiry, compat id and identity, each build's ELF warnings, and charts of
what each update costs a device, of content size and of changed files, checked in Chromium."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import time

import pytest
import reader
from buildutil import EXAMPLE_BUNDLES, cli, copy_www, create, make_stream_tree
from support import oracle
from support.browser import Chromium, chromium_binary
from support.environment import unavailable
from support.httpserver import FaultServer
from support.trees import write_file
from swupd.cli import main as swupd_main

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCREENSHOT = os.path.join(TOP, "docs", "report.png")
COMPAT, STREAM = "qemux86-64", "example-os-qemux86-64"
VERSIONS = (10, 20, 30, 40)


@pytest.fixture(scope="module")
def two_formats(stream, tmp_path_factory):
    """The stream (format 1: 10, 20) plus version 30 starting format 2."""
    www = copy_www(stream.www, str(tmp_path_factory.mktemp("report") / "www"))
    create(www, stream.rootfs[20], 30, stream.keys.private, stream.bundles, "--format", "2")
    return www


def _page(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return html.unescape(f.read())


def _versions(page: str) -> set[int]:
    return {int(v) for v in re.findall(r"<h2 id=\"v(\d+)\">", page)}


def test_a_page_per_format(stream, two_formats):
    r = cli("report", "--www", two_formats)
    assert r.rc == 0, r.err
    out = os.path.join(two_formats, "report")
    pages = ["format1.html", "format2.html", "index.html"]
    # Beside the pages, the build record each build wrote (see test_build_records_*).
    assert sorted(os.listdir(out)) == ["build-10.json", "build-20.json", "build-30.json", *pages]
    assert set(r.out.split()) == {os.path.join(out, n) for n in pages}
    one, two = _page(os.path.join(out, "format1.html")), _page(os.path.join(out, "format2.html"))
    assert _versions(one) == {10, 20}
    assert _versions(two) == {30}
    for page in (one, two):
        for bundle in ("os-core", "app", "app-docs"):
            assert f"<td>{bundle}</td>" in page
    index = _page(os.path.join(out, "index.html"))
    assert 'href="format1.html"' in index and 'href="format2.html"' in index
    # The new format's first version is a stream of its own, with its own latest.
    assert reader.Www(two_formats, stream.keys.raw).latest(2).version == 30
    assert reader.Www(two_formats, stream.keys.raw).latest(1).version == 20


def test_report_into_another_directory(stream, tmp_path):
    out = str(tmp_path / "pages")
    r = cli("report", "--www", stream.www, "--output", out)
    assert r.rc == 0, r.err
    page = _page(os.path.join(out, "format1.html"))
    assert _versions(page) == {10, 20}
    assert "/usr/share/doc/NEWS" in page  # added in 20
    # The build records are all the tree's report directory holds: no page was written there.
    assert sorted(os.listdir(os.path.join(stream.www, "report"))) == ["build-10.json", "build-20.json"]


def test_report_reads_only_what_is_published(stream, tmp_path):
    """A copy of www/ (without the build cache beside it) is enough to write the report."""
    www = copy_www(stream.www, str(tmp_path / "www"))
    r = cli("report", "--www", www)
    assert r.rc == 0, r.err
    assert _versions(_page(os.path.join(www, "report", "format1.html"))) == {10, 20}


def _tree(root: str, version: int) -> str:
    """The example OS as it moves from 10 to 40: 20 is the "security update" of the example,
    30 grows the app and its documentation, 40 patches a core and an app program, adds a data
    file, two more programs like find, and loses libm, which find needs (an ELF warning for
    three files)."""
    make_stream_tree(root, 1 if version == 10 else 2)
    if version >= 30:
        with open(os.path.join(root, "usr/share/doc/README"), "a") as f:
            f.writelines(f"section {i} of the version 30 manual\n" for i in range(300))
        for n in range(3):
            shutil.copy2(os.path.join(root, "usr/bin/ls"), os.path.join(root, f"opt/app/bin/tool{n}"))
        write_file(root, "etc/motd", b"Welcome to Example OS 30.\n")
        write_file(root, "opt/app/config.txt", b"color=green\nsize=large\n")
    if version >= 40:
        with open(os.path.join(root, "usr/bin/cat"), "ab") as f:
            f.write(b"\0patched build 40\0")
        write_file(root, "opt/app/share/data.bin", bytes(range(256)) * 1024 + os.urandom(192 * 1024))
        for n in (2, 3):
            shutil.copy2(os.path.join(root, "opt/app/bin/find"), os.path.join(root, f"opt/app/bin/find{n}"))
        os.remove(os.path.join(root, "usr/lib/libm.so.6"))
        with open(os.path.join(root, "opt/app/bin/grep"), "ab") as f:
            f.write(b"\0patched build 40\0")
        write_file(root, "opt/app/share/NOTES", b"".join(b"note %d\n" % i for i in range(200)))
    return root


@pytest.fixture(scope="module")
def history(keys, tmp_path_factory):
    """Four versions of three bundles with delta packs from the two versions before each, and
    the report of them."""
    d = tmp_path_factory.mktemp("history")
    www = str(d / "www")
    for v in VERSIONS:
        root = _tree(str(d / f"rootfs-{v}"), v)
        create(www, root, v, keys.private, EXAMPLE_BUNDLES, "--compat", COMPAT, "--stream", STREAM)
    r = cli("report", "--www", www)
    assert r.rc == 0, r.err
    return www


def _facts(page: str) -> dict[str, str]:
    table = page[page.index('<table class="facts"') : page.index("</table>")]
    return {k: re.sub(r"<[^>]+>", "", v) for k, v in re.findall(r"<tr><th>([^<]+)</th><td[^>]*>(.*?)</td></tr>", table)}


def test_stream_facts(history, keys):
    """The key that signed `latest` and the MoM, the expiry as a UTC date, compat id, stream
    identity and the OS the stream carries."""
    page = _page(os.path.join(history, "report", "format1.html"))
    facts = _facts(page)
    www = reader.Www(history, keys.raw)
    latest = www.latest(1)
    kid = oracle.keyid(keys.raw)
    assert facts["Stream identity"] == STREAM and facts["Compat id"] == COMPAT
    assert facts["Signing key"].startswith(kid)
    assert facts["Expires"] == time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(latest.fields["expires"]))
    assert facts["Latest"].startswith("version 40, timestamp ")
    assert facts["OS"] == "Example OS (ID example, VERSION_ID 40)"
    for v in VERSIONS:
        section = page[page.index(f'<h2 id="v{v}">') :]
        assert section.split("</p>")[0].count(f"<code>{kid}</code>") == 1


def test_build_records_hold_the_elf_warnings(history):
    """Each build leaves its grouped ELF warnings in www/report/build-V.json, and the report
    shows them grouped by missing library, with a count."""
    records = {v: json.load(open(os.path.join(history, "report", f"build-{v}.json"))) for v in VERSIONS}
    assert all(r["version"] == v for v, r in records.items())
    assert [r["elf"] for v, r in records.items() if v < 40] == [[], [], []]
    assert records[40]["elf"] == [
        {"bundle": "app", "library": "libm.so.6", "files": 3, "example": "/opt/app/bin/find", "found_in": "",
         "elsewhere": ""},
    ]  # fmt: skip
    page = _page(os.path.join(history, "report", "format1.html"))
    table = page[page.index('<table class="elf" id="elf40">') :].split("</table>")[0]
    rows = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td>", table)
    assert rows == [("libm.so.6", "3", "app", "/opt/app/bin/find")]
    assert "1 missing library, needed by 3 file(s)" in _facts(page)["ELF warnings"]
    assert page.count('class="elf"') == 1  # 10, 20 and 30 had none


def test_an_unpublished_build_record_is_removed(stream, tmp_path):
    """A build stopped after writing its record but before `latest` leaves a record of a version
    that no device can see; the next build removes it."""
    www = copy_www(stream.www, str(tmp_path / "www"))
    stale = os.path.join(www, "report", "build-40.json")
    with open(stale, "w") as f:
        f.write('{"record": 1, "version": 40, "elf": [], "warnings": []}\n')
    create(www, stream.rootfs[20], 30, stream.keys.private)
    assert sorted(os.listdir(os.path.join(www, "report"))) == ["build-10.json", "build-20.json", "build-30.json"]


def test_build_records_hold_other_warnings(stream, tmp_path):
    """A bundle path that matches nothing is recorded and shown with its version."""
    www = copy_www(stream.www, str(tmp_path / "www"))
    typo = tmp_path / "bundles.toml"
    with open(stream.bundles) as f:
        typo.write_text(f.read() + '\n[bundle.extra]\npaths = ["/opt/ap"]\n')
    create(www, stream.rootfs[20], 30, stream.keys.private, str(typo))
    warning = "bundle extra: path '/opt/ap' matches nothing in the rootfs"
    with open(os.path.join(www, "report", "build-30.json")) as f:
        assert json.load(f)["warnings"] == [warning]
    assert cli("report", "--www", www).rc == 0
    page = _page(os.path.join(www, "report", "format1.html"))
    assert page.count(f"Warning: {warning}") == 1
    assert page.index(f"Warning: {warning}") > page.index('<h2 id="v30">')


def test_a_malformed_build_record_is_one_line_error(stream, tmp_path):
    www = copy_www(stream.www, str(tmp_path / "www"))
    with open(os.path.join(www, "report", "build-20.json"), "w") as f:
        f.write('{"record": 1, "version": 20, "elf": [{"bundle": 3}]}\n')
    r = cli("report", "--www", www)
    assert r.rc == 3
    assert "report/build-20.json" in r.one_line_error()


def _cost_table(page: str) -> dict[tuple[int, int], int]:
    """(to, from) -> total bytes, from the update paths table's cell titles."""
    section = page[page.index('<h2 id="updates">') :].split("</table>")[0]
    out = {}
    for row in re.findall(r"<tr><td>(\d+)</td><td>(\d+)[^<]*</td>(.*?)</tr>", section):
        out[(int(row[0]), int(row[1]))] = sum(int(n) for n in re.findall(r'title="[^:"]+: (\d+) bytes', row[2]))
    return out


def _served(srv: FaultServer, www: str, start: int = 0) -> int:
    """Bytes of manifests, packs and fullfiles the server sent from its `start`th request on
    (every GET is answered whole)."""
    total = 0
    for e in srv.log[start:]:
        name = e.path.rsplit("/", 1)[-1]
        if e.method == "GET" and e.status == 200 and not (name.endswith(".sig") or name in ("latest", "Manifest.MoM")):
            total += os.path.getsize(os.path.join(www, e.path.lstrip("/")))
    return total


def test_update_costs_are_what_a_device_downloads(history, keys, tmp_path):
    """The chart's numbers are what a real device with every bundle fetches: a fresh install of
    20, then the update from 20 to 40 (a delta pack source), counted at a real HTTP server."""
    page = _page(os.path.join(history, "report", "format1.html"))
    costs = _cost_table(page)
    # From 0 (a fresh install) to every version, and from each delta pack source.
    assert {(v, 0) for v in VERSIONS} | {(20, 10), (30, 10), (30, 20), (40, 20), (40, 30)} <= set(costs)
    assert costs[(40, 30)] < costs[(40, 20)] < costs[(40, 0)]
    device = str(tmp_path / "device")
    with FaultServer(history) as srv:
        common = ["--url", srv.url(), "--key", keys.public, "--format", "1", "--quiet"]
        assert swupd_main(["os-install", *common, "--version", "20", "--bundles", "app,app-docs", device]) == 0
        installed, start = _served(srv, history), len(srv.log)
        assert swupd_main(["update", "--path", device, *common]) == 0
        updated = _served(srv, history, start)
    assert installed == costs[(20, 0)]
    assert updated == costs[(40, 20)]


def _bars(page: str, chart: str) -> list[tuple[str, float]]:
    svg = page[page.index(f'<figure class="plot" id="{chart}"') :].split("</svg>")[0]
    return [(t, float(h)) for h, t in re.findall(r'<rect [^>]*height="([\d.]+)"[^>]*><title>([^<]*)</title>', svg)]


def test_charts_are_drawn_to_scale(history):
    """Every segment of every chart is as high as its value on the chart's scale."""
    page = _page(os.path.join(history, "report", "format1.html"))
    for chart in ("update-cost", "content-size", "files-changed"):
        bars = _bars(page, chart)
        assert bars, chart
        values = [int(re.search(r" ([\d,]+) of ", t).group(1).replace(",", "")) for t, _ in bars]
        (_, tallest), most = max(zip(bars, values, strict=True), key=lambda bv: bv[1])
        for (title, h), v in zip(bars, values, strict=True):
            assert abs(h - v * tallest / most) <= 0.01, (chart, title, h)  # heights have 2 decimals
    # One bar per update path, stacked by bundle: three bundles changed from 0 into 40.
    assert len([t for t, _ in _bars(page, "update-cost") if t.startswith("to 40 0:")]) == 3


def test_report_renders_in_chromium(history):
    """Chromium loads every page without a console error; the three charts are there, drawn
    with every bar; the screenshot in docs/ is made from this page."""
    binary = chromium_binary()
    if binary is None:
        unavailable("Chromium is not installed and could not be (scripts/setup-env installs it as root)")
    page_path = os.path.join(history, "report", "format1.html")
    expected = {c: len(_bars(_page(page_path), c)) for c in ("update-cost", "content-size", "files-changed")}
    with Chromium(binary) as browser:
        index = browser.open("file://" + os.path.join(history, "report", "index.html"))
        assert index.evaluate("document.querySelectorAll('a[href=\"format1.html\"]').length") == 1
        page = browser.open("file://" + page_path)
        drawn = page.evaluate(
            """JSON.stringify(Array.from(document.querySelectorAll('figure.plot')).map(f => {
                const svg = f.querySelector('svg'), box = svg.getBoundingClientRect();
                const rects = Array.from(svg.querySelectorAll('rect')).map(r => r.getBBox());
                return [f.id, box.width, box.height, rects.length,
                        rects.filter(b => b.width > 0 && b.height >= 0 && isFinite(b.y)).length,
                        svg.querySelectorAll('text').length];
            }))"""
        )
        assert page.evaluate("document.title") == "Format 1 update stream"
        assert page.evaluate("document.querySelectorAll('h2[id^=v]').length") == len(VERSIONS)
        errors = index.errors + page.errors
        # docs/report.png is made anew when it is missing or SWUPD_UPDATE_SCREENSHOT is set.
        if os.environ.get("SWUPD_UPDATE_SCREENSHOT") or not os.path.exists(SCREENSHOT):
            page.screenshot(SCREENSHOT, 1280, 900)
            assert os.path.getsize(SCREENSHOT) < 200_000
    assert not errors, errors
    charts = {c[0]: c[1:] for c in json.loads(drawn)}
    assert sorted(charts) == sorted(expected)
    for chart, (width, height, rects, sound, texts) in charts.items():
        assert width > 200 and height > 200, (chart, width, height)
        assert rects == sound == expected[chart], (chart, rects, sound)
        assert texts > 5, chart
