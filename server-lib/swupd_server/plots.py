"""The geometry of the report's bar charts, drawn as inline SVG by templates/plots.html.

Every chart is groups of stacked bars: the update paths into a version (one bar per source
version, a segment per bundle), or one bar per version (content size per bundle, files added,
changed and deleted). Everything is computed here, in pixels, so the page needs no script and
looks the same in every browser.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# Tableau's ten colours: distinct for most readers, also in print.
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")
PLOT_HEIGHT = 220
TOP, BOTTOM, LEFT, RIGHT = 20, 46, 64, 12


@dataclass
class Bar:
    label: str
    values: dict[str, int]  # series -> value
    note: str = ""  # added to the bar's tooltip


@dataclass
class Rect:
    x: float
    y: float
    width: float
    height: float
    color: str
    title: str


@dataclass
class Text:
    x: float
    y: float
    text: str
    anchor: str = "middle"
    cls: str = ""


@dataclass
class Chart:
    id: str
    title: str
    width: int
    height: int
    rects: list[Rect] = field(default_factory=list)
    texts: list[Text] = field(default_factory=list)
    grid: list[tuple[float, float, float, float]] = field(default_factory=list)
    axes: list[tuple[float, float, float, float]] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)  # (colour, series)


def short_size(n: float) -> str:
    """A byte count in at most five characters or so: `512`, `12K`, `1.5M`."""
    for unit in ("", "K", "M", "G", "T"):
        if n < 1024 or unit == "T":
            if not unit:
                return f"{n:.0f}"
            return f"{n:.1f}{unit}" if n < 10 else f"{n:.0f}{unit}"
        n /= 1024
    return str(n)


def short_count(n: float) -> str:
    if n >= 10000:
        return f"{n / 1000:.0f}k"
    return f"{n:.0f}" if n == int(n) else f"{n:.1f}"


def ticks(top: int, binary: bool) -> list[float]:
    """About four evenly spaced round values from 0 to at least `top`: steps of 1, 2, 2.5 or 5
    times a power of ten (times a power of 1024 for byte counts), and whole numbers below 1024."""
    top = max(top, 1)
    unit = 1.0
    if binary:
        while unit * 1024 <= top:
            unit *= 1024
    raw = top / unit / 4
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    whole = unit == 1  # counts and bytes have no fractions
    if whole and mag < 1:
        mag = 1
    step = next(m * mag for m in ((1, 2, 5, 10) if whole and mag < 10 else (1, 2, 2.5, 5, 10)) if m * mag >= raw)
    step *= unit
    count = math.ceil(top / step)
    return [i * step for i in range(count + 1)]


def stacked(
    chart_id: str,
    title: str,
    groups: list[tuple[str, list[Bar]]],
    series: list[str],
    binary: bool,
    totals: bool = False,
    bar_width: int = 22,
) -> Chart:
    """Groups of stacked bars, a colour per series (in the order given), labelled below each
    bar and each group; `binary` marks byte counts; `totals` writes each bar's sum above it."""
    colours = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(series)}
    fmt = short_size if binary else short_count
    top = max((sum(b.values.values()) for _, bars in groups for b in bars), default=0)
    marks = ticks(top, binary)
    scale = PLOT_HEIGHT / marks[-1]
    gap, group_gap = max(4, bar_width // 4), max(14, bar_width // 2)
    x = LEFT + group_gap / 2
    base = TOP + PLOT_HEIGHT
    chart = Chart(chart_id, title, 0, TOP + PLOT_HEIGHT + BOTTOM)
    for label, bars in groups:
        start = x
        for bar in bars:
            y = base
            total = sum(bar.values.values())
            name = f"{label} {bar.label}".strip()
            for s in series:
                value = bar.values.get(s, 0)
                if value <= 0:
                    continue
                h = value * scale
                y -= h
                tip = f"{name}: {s} {value:,} of {total:,}" + (f"; {bar.note}" if bar.note else "")
                chart.rects.append(Rect(x, y, bar_width, h, colours[s], tip))
            if totals:
                chart.texts.append(Text(x + bar_width / 2, y - 3, fmt(total), cls="total"))
            if bar.label:
                chart.texts.append(Text(x + bar_width / 2, base + 13, bar.label, cls="bar"))
            x += bar_width + gap
        x -= gap
        chart.texts.append(Text((start + x) / 2, base + (30 if any(b.label for b in bars) else 14), label, cls="group"))
        x += group_gap
    chart.width = int(x - group_gap / 2 + RIGHT)
    for mark in marks:
        y = base - mark * scale
        chart.grid.append((LEFT, y, chart.width - RIGHT, y))
        chart.texts.append(Text(LEFT - 5, y + 4, fmt(mark), anchor="end", cls="tick"))
    chart.axes = [(LEFT, TOP, LEFT, base), (LEFT, base, chart.width - RIGHT, base)]
    chart.legend = [(colours[s], s) for s in series]
    return chart
