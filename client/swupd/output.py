"""What the client prints: messages, progress, and a JSON stream for programs.

On a terminal, downloads and applying show a progress line; in a pipe nothing but the
messages. `--quiet` keeps only the essential results; `--json` prints one JSON object per
line (`start`, `info`, `warning`, `error`, `progress`, `result`, `end`) for other programs to
read; a command whose answer is a record (`info`, `bundle-info`) gives it as the `result`
record's fields, not as text.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TextIO

from swupd.format import cmdline


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
    def __init__(self, quiet: bool = False, as_json: bool = False, stream: TextIO | None = None) -> None:
        self.quiet = quiet
        self.json = as_json
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() and not as_json and not quiet
        self._last = 0.0
        self._progress_shown = False
        self._step, self._began = "", 0.0

    def _emit(self, kind: str, **fields: object) -> None:
        print(json.dumps({"type": kind, **fields}), file=self.stream, flush=True)

    def start(self, command: str) -> None:
        if self.json:
            self._emit("start", section=command)

    def end(self, command: str, status: int) -> None:
        if self.json:
            self._emit("end", section=command, status=status)

    def info(self, msg: str) -> None:
        """A normal message (suppressed by --quiet)."""
        self._clear()
        if self.json:
            self._emit("info", msg=msg)
        elif not self.quiet:
            print(msg, file=self.stream, flush=True)

    def result(self, msg: str) -> None:
        """An essential line, printed even with --quiet."""
        self._clear()
        if self.json:
            self._emit("info", msg=msg)
        else:
            print(msg, file=self.stream, flush=True)

    def record(self, fields: dict) -> None:
        """A command's answer as fields: one `result` object with --json."""
        self._clear()
        self._emit("result", **fields)

    def detail(self, msg: str) -> None:
        """A --verbose line: on standard error, so results on standard output stay clean."""
        self._clear()
        if self.json:
            self._emit("debug", msg=msg)
        else:
            print(msg, file=sys.stderr, flush=True)

    def warning(self, msg: str) -> None:
        self._clear()
        if self.json:
            self._emit("warning", msg=msg)
        else:
            print(f"Warning: {msg}", file=sys.stderr, flush=True)

    def error(self, msg: str) -> None:
        self._clear()
        if self.json:
            self._emit("error", msg=msg)
        print(f"Error: {msg}", file=sys.stderr, flush=True)

    def progress(self, step: str, done: int, total: int | None, nbytes: bool = False) -> None:
        """`done` of `total` (bytes with `nbytes`: then the line also shows the amount, the
        speed since the step began and the time left)."""
        if self.json:
            now = time.monotonic()
            if now - self._last > 0.5 or (total and done >= total):
                self._last = now
                pct = int(100 * done / total) if total else -1
                self._emit("progress", stepDescription=step, completion=pct, done=done, total=total)
            return
        if not self.tty:
            return
        now = time.monotonic()
        if step != self._step:
            self._step, self._began = step, now
        if now - self._last < 0.1 and not (total and done >= total):
            return
        self._last = now
        if total:
            width = 24
            filled = int(width * min(done, total) / total)
            bar = "#" * filled + "." * (width - filled)
            text = f"\r{step:<20} [{bar}] {100 * done // total:3d}%"
        else:
            text = f"\r{step:<20} {cmdline.size(done) if nbytes else done}"
        if nbytes:
            elapsed = now - self._began
            speed = done / elapsed if elapsed > 0.2 else 0.0
            text += f" {cmdline.size(done)}" + (f"/{cmdline.size(total)}" if total else "")
            if speed:
                text += f" {cmdline.size(speed)}/s"
                if total and done < total:
                    text += f" {int((total - done) / speed) + 1}s left"
        self.stream.write(text + "\033[K")
        self.stream.flush()
        self._progress_shown = True

    def _clear(self) -> None:
        if self._progress_shown:
            self.stream.write("\r\033[K")
            self._progress_shown = False
