"""What the two commands, `swupd` and `swupd-server`, do alike on the command line: report an
unknown option with its own subcommand's usage, keep a log the same way, and show sizes the
same way on a terminal."""

from __future__ import annotations

import argparse
import logging

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Like parse_args, but an unknown option is reported with its command's usage."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        sub.choices[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def logger(name: str, level: int, log_file: str | None) -> logging.Logger:
    """The named logger at `level`, its earlier handlers closed (a program may run a command
    twice), with `log_file` appended to with times when given; the caller adds its own
    handler for the terminal."""
    log = logging.getLogger(name)
    log.setLevel(level)
    log.propagate = False
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    if log_file:
        handler = logging.FileHandler(log_file, encoding="utf-8")
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        log.addHandler(handler)
    return log


def size(n: float) -> str:
    """A byte count for people: B, kB, MB, GB (powers of 1000)."""
    for unit in ("B", "kB", "MB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"
