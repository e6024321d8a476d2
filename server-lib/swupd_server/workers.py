"""Worker processes of a build, which never outlive it.

Every parallel stage runs its jobs through `map` here. A worker ignores SIGINT (a terminal's Ctrl-C
reaches the whole process group, and the main process decides what happens), is killed by the
kernel when the main process dies (PR_SET_PDEATHSIG), and closes its inherited copy of the
`www/` lock, so only the main process holds it. When a stage ends early (an error, SIGINT or
SIGTERM to the main process), the main process kills the pool's workers and reaps them before
it goes on to remove the stage directory and release the lock.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

PR_SET_PDEATHSIG = 1

# Descriptors that workers close at once: the stream's lock (see publish.locked).
_private_fds: set[int] = set()


def keep_from_workers(fd: int) -> None:
    _private_fds.add(fd)


def release(fd: int) -> None:
    _private_fds.discard(fd)


def _start(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for fd in list(_private_fds):
        with contextlib.suppress(OSError):
            os.close(fd)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the main process died before the line above took effect
        os._exit(1)


def _chunk(fn: Callable[[T], R], items: list[T]) -> list[R]:
    return [fn(x) for x in items]


def map(
    fn: Callable[[T], R],
    items: Sequence[T],
    jobs: int,
    chunksize: int = 1,
    done: Callable[[list[R]], None] | None = None,
) -> list[R]:
    """`fn` over `items` in `jobs` worker processes (in this one when `jobs` is 1), results in
    order; `done` is called in this process with each chunk's results as it completes (for
    progress).

    If a job fails or the main process is stopped, the workers are killed at once: waiting for
    the jobs still queued (what leaving a process pool does) could take as long as the stage.
    The futures are never cancelled, so the pool's own thread can mark them failed when its
    workers die."""
    if jobs <= 1:
        out = []
        for x in items:
            out.append(fn(x))
            if done is not None:
                done(out[-1:])
        return out
    before = {p.pid for p in multiprocessing.active_children()}
    ex = ProcessPoolExecutor(
        jobs, mp_context=multiprocessing.get_context("fork"), initializer=_start, initargs=(os.getpid(),)
    )
    try:
        futures = [ex.submit(_chunk, fn, list(items[i : i + chunksize])) for i in range(0, len(items), chunksize)]
        if done is not None:
            for f in as_completed(futures):
                done(f.result())
        return [r for f in futures for r in f.result()]
    except BaseException:
        workers = [p for p in multiprocessing.active_children() if p.pid not in before]
        for p in workers:
            with contextlib.suppress(OSError):
                p.kill()
        for p in workers:
            p.join()
        raise
    finally:
        ex.shutdown(wait=True)
