"""What the client prints: messages, progress, and a JSON stream for programs.

On a terminal each step (a download, applying) shows a progress bar drawn by tqdm: for downloads
the bytes, the rate and the time left; warnings and messages (a retry, a fallback to fullfiles)
print on their own line above it and the bar goes on. In a pipe, and with `--quiet` or `--json`,
no bar is drawn (tqdm is not even imported). `--quiet` keeps only the essential results;
`--json` prints one JSON object per line (`start`, `info`, `warning`, `error`, `progress`,
`result`, `end`) for other programs to read; a command whose answer is a record (`info`,
`bundle-info`) gives it as the `result` record's fields, not as text.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from typing import TYPE_CHECKING, TextIO

from swupd.format import cmdline

if TYPE_CHECKING:
    from tqdm import tqdm

_BYTES = "{l_bar}{bar}| {n_fmt}B/{total_fmt}B [{elapsed}<{remaining}, {rate_fmt}]"


def setup_logging(out: Output, verbose: bool, log_file: str | None) -> None:
    """The `swupd` logger's records (requests, retries, fallbacks, decisions): warnings always
    reach the user, through `out` (so a progress line is cleared first, and --json gets a
    record); with `verbose` everything does; `log_file` gets everything, with times."""
    log = cmdline.logger("swupd", logging.DEBUG if verbose or log_file else logging.WARNING, log_file)
    log.addHandler(_ToOutput(out, logging.DEBUG if verbose else logging.WARNING))


class _ToOutput(logging.Handler):
    def __init__(self, out: Output, level: int) -> None:
        super().__init__(level)
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if record.levelno >= logging.WARNING:
            self.out.warning(msg)
        else:
            self.out.detail(msg)


class Output:
    """Every line the client prints goes through here, so that a bar on the terminal is cleared
    before a message and drawn again after it, from whichever thread the message comes."""

    def __init__(self, quiet: bool = False, as_json: bool = False, stream: TextIO | None = None) -> None:
        self.quiet = quiet
        self.json = as_json
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() and not as_json and not quiet
        self._last = 0.0
        self._lock = threading.RLock()  # downloads report from worker threads
        self._bar: tqdm | None = None
        self._step = ""
        self._finished: tuple[str, int | None] | None = None

    def _emit(self, kind: str, **fields: object) -> None:
        print(json.dumps({"type": kind, **fields}), file=self.stream, flush=True)

    def _say(self, msg: str, file: TextIO) -> None:
        """One line for people, above the bar if one is shown."""
        with self._lock:
            bar = self._bar
            if bar is not None:
                bar.clear()
                self.stream.flush()  # the bar's line is clear before a line on another stream
            print(msg, file=file, flush=True)
            if bar is not None:
                bar.refresh()

    def start(self, command: str) -> None:
        if self.json:
            self._emit("start", section=command)

    def end(self, command: str, status: int) -> None:
        self._close_bar()
        if self.json:
            self._emit("end", section=command, status=status)

    def info(self, msg: str) -> None:
        """A normal message (suppressed by --quiet)."""
        if self.json:
            self._emit("info", msg=msg)
        elif not self.quiet:
            self._say(msg, self.stream)

    def result(self, msg: str) -> None:
        """An essential line, printed even with --quiet."""
        if self.json:
            self._emit("info", msg=msg)
        else:
            self._say(msg, self.stream)

    def record(self, fields: dict) -> None:
        """A command's answer as fields: one `result` object with --json."""
        self._emit("result", **fields)

    def detail(self, msg: str) -> None:
        """A --verbose line: on standard error, so results on standard output stay clean."""
        if self.json:
            self._emit("debug", msg=msg)
        else:
            self._say(msg, sys.stderr)

    def warning(self, msg: str) -> None:
        if self.json:
            self._emit("warning", msg=msg)
        else:
            self._say(f"Warning: {msg}", sys.stderr)

    def error(self, msg: str) -> None:
        self._close_bar()  # the step it showed has failed
        if self.json:
            self._emit("error", msg=msg)
        print(f"Error: {msg}", file=sys.stderr, flush=True)

    def progress(self, step: str, done: int, total: int | None, nbytes: bool = False) -> None:
        """`done` of `total` (bytes with `nbytes`: then the bar also shows the amount, the rate
        and the time left)."""
        if self.json:
            now = time.monotonic()
            if now - self._last > 0.5 or (total and done >= total):
                self._last = now
                pct = int(100 * done / total) if total else -1
                self._emit("progress", stepDescription=step, completion=pct, done=done, total=total)
            return
        if not self.tty:
            return
        total = total or None
        with self._lock:
            bar = self._bar
            if bar is None and self._finished == (step, total) and total is not None and done >= total:
                return  # the last report of a step whose bar has already ended
            # Another step, another transfer under the same step (a pack after a pack), or one
            # started over from its first byte: a bar of its own, so that rate and time left
            # are measured from its start.
            if bar is None or step != self._step or total != bar.total or done < bar.n:
                self._close_bar()
                bar = self._bar = self._new_bar(step, total, nbytes)
                if bar is None:
                    self.tty = False
                    return
                self._step = step
            bar.update(done - bar.n)
            if total is not None and done >= total:
                self._close_bar()
                self._finished = (step, total)

    def step_ended(self) -> None:
        """The step shown ended short of its total (a transfer given up on): its bar goes."""
        self._close_bar()

    def _new_bar(self, step: str, total: int | None, nbytes: bool) -> tqdm | None:
        try:
            from tqdm import tqdm
        except ImportError:  # a device built without it: the work goes on, without bars
            return None

        tqdm.monitor_interval = 0  # no monitor thread: the client forks for its hooks and imports
        try:
            known = os.get_terminal_size(self.stream.fileno()).columns > 0
        except (OSError, ValueError):
            known = False
        # The bar fits the terminal as it is now (a wrapped bar cannot be redrawn in place); a
        # terminal that does not know its size, as a serial console often does not, gets 80
        # columns rather than no bar at all.
        size: dict = {"dynamic_ncols": True} if known else {"ncols": 79, "nrows": 24}
        return tqdm(
            desc=step,
            total=total,
            file=self.stream,
            leave=False,  # a finished step leaves the messages it printed, not its bar
            **size,
            unit="B" if nbytes else " changes",
            unit_scale=nbytes,
            unit_divisor=1000,  # kB, MB: as the client's other sizes (cmdline.size)
            # tqdm's own layout, with the unit on the amounts too ("540kB/1.20MB", not "540k/1.20M").
            bar_format=_BYTES if nbytes and total else None,
        )

    def _close_bar(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            self._finished = None
