"""Live progress of a build's long stages, for people at a terminal.

A build of a large tree spends minutes in hashing, compressing and delta-making; on a terminal
each of those stages shows a bar (tqdm on stderr) with its count and the bytes it has written,
which disappears when the stage ends, leaving the stage report. Anywhere else (BitBake's logs,
a pipe, CI) nothing extra is printed, and tqdm is not even imported.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

from swupd.format import cmdline

Advance = Callable[..., None]


def _ignore(n: int = 1, nbytes: int = 0) -> None:
    pass


class Progress:
    def __init__(self, live: bool = False) -> None:
        self.live = live

    @classmethod
    def for_terminal(cls) -> Progress:
        return cls(sys.stderr.isatty())

    @contextlib.contextmanager
    def stage(self, name: str, total: int, unit: str = "files") -> Iterator[Advance]:
        """Yields `advance(n=1, nbytes=0)`: `n` more of `total` done, `nbytes` more written."""
        if not self.live or total <= 0:
            yield _ignore
            return
        try:
            from tqdm import tqdm
        except ImportError:
            yield _ignore
            return
        with tqdm(total=total, desc=name, unit=f" {unit}", file=sys.stderr, leave=False, dynamic_ncols=True) as bar:
            written = 0

            def advance(n: int = 1, nbytes: int = 0) -> None:
                nonlocal written
                written += nbytes
                if written:
                    bar.set_postfix_str(f"{cmdline.size(written)} written", refresh=False)
                bar.update(n)

            yield advance
