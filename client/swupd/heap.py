"""How the client's memory is managed: the C heap and the garbage collector.

Keep the C heap from growing with the largest file handled, and from shrinking after every
file. glibc serves a large allocation with its own mapping and returns it on free, but after the
first such free it raises that threshold to the freed size, so every later buffer of a similar
size comes from the main heap, which rarely shrinks. An update handles old and new files of
many megabytes one after another; with the adaptive threshold the process keeps the high-water
mark of all of them. Fixing the threshold at 2 MiB keeps file-sized buffers in mappings that go
back to the system when freed, while the 1 MiB read buffers of hashing and copying are reused
from the heap (a lower threshold would map and fault in fresh memory for each read).

The heap's top is given back to the system only when more than 4 MiB of it is free. With
glibc's 128 KiB, freeing one 1 MiB buffer at the top shrank the heap and the next file's buffer
grew it again, page fault by page fault; a higher threshold raises the peak. What each choice
measured is in docs/benchmarks.md ("What made the client fast").
"""

from __future__ import annotations

import ctypes
import gc

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 2 * 1024 * 1024
_TRIM_THRESHOLD = 4 * 1024 * 1024


def tune_malloc() -> bool:
    """Pin glibc's mmap and trim thresholds; True when done. Other C libraries are left alone."""
    try:
        libc = ctypes.CDLL(None)  # the interpreter's own symbols, which include its C library's
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))


# One collection per this many container allocations, instead of CPython's 700.
_GC_GENERATION0 = 100_000


def relax_garbage_collection() -> None:
    """Collect cycles less often. An update allocates some hundred thousand small containers
    (manifest entries, tar headers, plan records) that almost never form cycles, and the default
    threshold ran a collection every 700 of them: about a hundred passes over the young objects,
    some over everything alive (docs/benchmarks.md). The objects made
    while starting (modules, classes) are moved out of reach of collections for good."""
    gc.freeze()
    gc.set_threshold(_GC_GENERATION0, 50, 50)
