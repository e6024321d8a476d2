"""Progress for people: the bar `swupd` draws on a terminal, run through the real command on a
pseudo-terminal against a real HTTP server that sends slowly, cuts a transfer short, or both."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import clientkit as ck
import pytest
from clientkit import Device
from support import terminal
from support.httpserver import FaultServer

PACK = "/20/pack-os-core-from-10.tar"
# tqdm's bar for a download: the step, the share done, the bar, bytes of bytes, and in brackets
# the time taken, the time left and the rate.
BAR = re.compile(
    r"Downloading pack: +(\d+)%\|[^|\r\n]*\| ([0-9.]+[kM]?B)/([0-9.]+[kM]?B) "
    r"\[(\d\d:\d\d)<(\d\d:\d\d), ([0-9.]+[kM]?B/s)\]"
)


def amount(shown: str) -> float:
    """Bytes from tqdm's "150kB", "1.20MB", "980B"."""
    m = re.fullmatch(r"([0-9.]+)([kM]?)B", shown)
    assert m, shown
    return float(m[1]) * {"": 1, "k": 1e3, "M": 1e6}[m[2]]


def on_terminal(
    args: list[str], cols: int = 120, rows: int = 30, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """`swupd ARGS` with standard output and error on one pseudo-terminal, `cols` wide (0: a
    terminal that does not know its size); what it wrote there, and its exit status."""
    rc, _, shown = terminal.run([ck.SWUPD, *args], cols, rows, env)
    return rc, shown


def screen(raw: str, cols: int) -> list[str]:
    """The lines a terminal `cols` wide shows after `raw`: carriage return, line feed, erase to
    the end of the line and cursor up are obeyed, other escape sequences ignored, and a line
    longer than the width wraps onto the next, as terminals do."""
    lines: list[list[str]] = [[]]
    row = col = 0
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\x1b":
            m = re.match(r"\x1b\[([0-9;]*)([A-Za-z])", raw[i:])
            assert m, repr(raw[i : i + 10])
            if m[2] == "A":
                row = max(0, row - int(m[1] or 1))
            elif m[2] == "K":
                del lines[row][col:]
            i += len(m[0])
            continue
        if ch == "\r":
            col = 0
        elif ch == "\n":
            row += 1
        else:
            if col >= cols:
                row, col = row + 1, 0
            while len(lines) <= row:
                lines.append([])
            line = lines[row]
            line.extend(" " * (col + 1 - len(line)))
            line[col] = ch
            col += 1
        while len(lines) <= row:
            lines.append([])
        i += 1
    return ["".join(line).rstrip() for line in lines]


def no_bar(text: str) -> bool:
    return "\r" not in text and "%|" not in text and "B/s" not in text and "Downloading" not in text


@pytest.mark.parametrize(
    ("cols", "rows"),
    [(120, 30), (0, 0)],  # 0 x 0: a terminal that does not know its size, as serial consoles
    ids=["sized", "unsized"],
)
def test_on_a_terminal_a_download_shows_bytes_rate_and_time_left(
    device: Device, content: FaultServer, cols: int, rows: int
) -> None:
    content.drip(150_000, path=PACK)
    rc, raw = on_terminal(["update", *device.opts()], cols, rows)
    assert rc == 0, raw[-3000:]
    bars = list(BAR.finditer(raw))
    assert bars, raw[-3000:]
    # The bar moves (its share and its bytes grow), with a time left, at a rate of the order of the
    # drip (150 kB/s), whatever the load of the machine that runs the test.
    assert int(bars[-1][1]) > int(bars[0][1]) and amount(bars[-1][2]) > amount(bars[0][2]), [m[0] for m in bars]
    assert amount(bars[-1][3]) > 100_000, bars[-1][0]
    assert 20_000 < amount(bars[-1][6][:-2]) < 1_500_000, [m[0] for m in bars]
    # The bar is gone when the update ends: the screen holds the messages only.
    shown = screen(raw, cols or 80)
    assert not [line for line in shown if "%|" in line or "Downloading" in line], shown
    assert any(line.startswith("Update successful") for line in shown), shown


def test_a_narrow_terminal_keeps_the_bar_on_one_line(device: Device, content: FaultServer) -> None:
    """A drawing wider than the terminal wraps, and the carriage return that redraws it then
    goes back to the start of the second line only: the first is left standing, once per
    redraw."""
    content.drip(150_000, path=PACK)
    rc, raw = on_terminal(["update", *device.opts()], cols=50)
    assert rc == 0, raw[-3000:]
    drawings = [d for d in re.split(r"[\r\n]", raw) if "Downloading pack" in d]
    assert drawings, raw[-3000:]
    assert max(len(d) for d in drawings) < 50, max(drawings, key=len)
    assert re.search(r"Downloading pack: +\d+%", raw), raw[-3000:]
    shown = screen(raw, 50)
    assert not [line for line in shown if "Downloading" in line or "%" in line], shown


def test_a_retry_is_its_own_line_and_the_bar_goes_on(device: Device, content: FaultServer) -> None:
    """The pack is cut short after 100 kB: the warning of the retry prints on a clean line of
    its own, and the same bar carries on from where the transfer was, up to the end."""
    content.truncate(100_000, times=1, path=PACK)
    content.drip(150_000, path=PACK)
    cols = 200
    rc, raw = on_terminal(["update", *device.opts()], cols)
    assert rc == 0, raw[-3000:]
    assert [e.range for e in content.requests(PACK, "GET")] == [None, "bytes=100000-"]
    warning = re.compile(rf"Warning: http://\S+{re.escape(PACK)}: .+; retrying in [0-9.]+ s \(attempt 2\)")
    shown = screen(raw, cols)
    assert [line for line in shown if warning.fullmatch(line)], shown
    assert not [line for line in shown if "Warning" in line and not warning.fullmatch(line)], shown
    at = warning.search(raw)
    assert at, raw[-3000:]
    before = list(BAR.finditer(raw, 0, at.start()))
    after = list(BAR.finditer(raw, at.end()))
    assert before and after, raw[-3000:]
    # Drawn again right after the warning, where the cut left it (not from zero), and on to the
    # whole pack.
    assert raw[at.end() :].lstrip("\r\n").startswith("Downloading pack:"), raw[at.end() : at.end() + 200]
    assert after[0][2] == "100kB" and int(after[0][1]) >= int(before[-1][1]) > 0, (before[-1][0], after[0][0])
    assert amount(after[-1][2]) > 0.9 * amount(after[-1][3]), after[-1][0]  # drawn at most 10 times a second


def test_the_bar_is_only_for_a_person_at_a_terminal(
    device: Device, content: FaultServer, v10_all: Device, clone_device: Callable[..., Device]
) -> None:
    """The same slow update draws a bar on a terminal; with --json or --quiet on that terminal,
    or with its output going to a pipe, nothing of it appears."""
    content.drip(300_000, path=PACK)
    others = [clone_device(v10_all, content.url()) for _ in range(3)]
    rc, raw = on_terminal(["update", *device.opts()])
    assert rc == 0 and BAR.search(raw), raw[-3000:]

    rc, raw = on_terminal(["update", "--json", *others[0].opts()])
    assert rc == 0, raw[-3000:]
    assert "\r" not in raw.replace("\r\n", "\n") and "%|" not in raw, raw[-3000:]
    records = [json.loads(line) for line in raw.splitlines()]
    progress = [r for r in records if r["type"] == "progress" and r["stepDescription"] == "Downloading pack"]
    assert progress and all(set(r) == {"type", "stepDescription", "completion", "done", "total"} for r in progress)

    rc, raw = on_terminal(["update", "--quiet", *others[1].opts()])
    assert rc == 0, raw[-3000:]
    assert raw.replace("\r\n", "\n").splitlines() == [
        "Update successful: system updated from version 10 to version 20"
    ], raw[-3000:]

    r = ck.run_process("update", *others[2].opts())
    assert r.rc == 0, r.err
    assert no_bar(r.out) and no_bar(r.err), (r.out[-2000:], r.err[-2000:])
    assert "Update successful" in r.out


def test_a_fallback_to_fullfiles_is_its_own_line_and_ends_the_pack_bar(device: Device, content: FaultServer) -> None:
    """A pack that never ends is given up on: the warning prints on a clean line, the pack's bar
    is not drawn again below it, and the fullfiles that replace the pack get a bar of their own."""
    content.endless(path=PACK)
    content.fail(404, times=None, path="/20/pack-os-core-from-0.tar")  # no zero pack to fall back on
    cols = 250
    rc, raw = on_terminal(["update", *device.opts()], cols)
    assert rc == 0, raw[-3000:]
    warning = re.compile(rf"Warning: pack {re.escape(PACK[1:])} unusable \(.+ bytes allowed\); using fullfiles")
    shown = screen(raw, cols)
    assert [line for line in shown if warning.fullmatch(line)], shown
    at = warning.search(raw)
    assert at, raw[-3000:]
    assert re.search(r"Downloading pack: [0-9.]+[kM]?B \[", raw[: at.start()]), raw[: at.start()]
    rest = raw[at.end() :]
    assert "Downloading pack" not in rest, rest
    assert re.search(r"Downloading files: +\d+%\|[^|]*\| [0-9.]+[kM]?B/[0-9.]+[kM]?B \[", rest), rest
    assert not [line for line in shown if "%|" in line or "Downloading" in line], shown


def test_without_tqdm_an_update_on_a_terminal_goes_on_without_bars(
    device: Device, content: FaultServer, tmp_path: Path
) -> None:
    """A device whose image lacks tqdm updates all the same: no bar, no traceback."""
    missing = tmp_path / "no-tqdm" / "tqdm"
    missing.mkdir(parents=True)
    (missing / "__init__.py").write_text('raise ImportError("No module named \'tqdm\'")\n')
    env = dict(os.environ, PYTHONPATH=str(missing.parent))
    content.drip(300_000, path=PACK)
    rc, raw = on_terminal(["update", *device.opts()], env=env)
    assert rc == 0, raw[-3000:]
    assert "Traceback" not in raw and "%|" not in raw, raw[-3000:]
    assert "Update successful" in raw and device.version() == 20
