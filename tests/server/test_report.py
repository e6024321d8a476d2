"""`swupd-server report`: one static HTML page per format naming every version and bundle."""

from __future__ import annotations

import html
import os
import re

import pytest
import reader
from buildutil import cli, copy_www, create


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
    assert sorted(os.listdir(out)) == ["format1.html", "format2.html", "index.html"]
    assert set(r.out.split()) == {os.path.join(out, n) for n in os.listdir(out)}
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
    assert not os.path.exists(os.path.join(stream.www, "report"))


def test_report_reads_only_what_is_published(stream, tmp_path):
    """A copy of www/ (without the build cache beside it) is enough to write the report."""
    www = copy_www(stream.www, str(tmp_path / "www"))
    r = cli("report", "--www", www)
    assert r.rc == 0, r.err
    assert _versions(_page(os.path.join(www, "report", "format1.html"))) == {10, 20}
