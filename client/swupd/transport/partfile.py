"""Where a download lands: `dest.part`, beside its destination in the state directory.

A `.part` outlives failed attempts and runs, so the next attempt resumes with `Range`, and
becomes `dest` by one rename only when it is whole. Both are fsynced unless the caller says the
content is verified whenever it is used, which a power cut can at worst make a later run
download again. This module only writes files; the fetcher does the HTTP.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator

from swupd.format import durable
from swupd.format.errors import SwupdError, TreeIOError

Progress = Callable[[int, int | None], None]


class PartFile:
    """The `.part` of one download; `shown` names the URL in messages."""

    def __init__(self, dest: str, shown: str, sync: bool) -> None:
        self.dest, self.path, self.shown, self.sync = dest, dest + ".part", shown, sync

    def offset(self, max_bytes: int) -> int:
        """How much an earlier attempt or run left to resume from; a part over the cap goes."""
        try:
            size = os.path.getsize(self.path)
        except FileNotFoundError:
            return 0
        if size > max_bytes:
            self.drop()
            return 0
        return size

    def drop(self) -> None:
        """Remove the part: the server disowned or overran it, or will not resume it."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise TreeIOError(f"cannot remove {self.path}: {e.strerror}") from None

    @contextlib.contextmanager
    def writer(self, offset: int) -> Iterator[Callable[[bytes], object]]:
        """A function writing at `offset` (0 starts over), the part fsynced when the block ends."""
        with open(self.path, "ab" if offset else "wb") as f:
            yield f.write
            if self.sync:
                f.flush()
                os.fsync(f.fileno())

    def finish(self) -> None:
        """The whole part becomes `dest`."""
        durable.replace(self.path, self.dest, sync=self.sync)

    def error(self, e: OSError) -> SwupdError:
        """The client's error for a failed write; the part goes first (its end is unknown)."""
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        where = f"{self.path} (fetching {self.shown})"
        return durable.os_error(e, f"no space left writing {where}", f"cannot write {where}: {e.strerror or e}")

    def copy(self, chunks: Iterable[bytes], total: int | None, progress: Progress | None) -> int:
        """Write `chunks` to `dest` through the part, all at once (a local mirror needs no
        resume): on any failure the part goes and `dest` stays as it was. Returns the size."""
        done = 0
        try:
            with durable.atomic_file(self.dest, sync=self.sync, tmp=self.path) as out:
                for chunk in chunks:
                    out.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
        except OSError as e:
            raise self.error(e) from None
        return done
