"""The cyclic garbage collector's settings for a bulk pass.

A sync allocates a handful of objects per item (the raw item, the parsed one, its rows), nearly
all of them acyclic and short-lived. Under the interpreter's defaults the collector runs every
700 net allocations, and every hundredth run walks the whole heap, the start-up objects of
SQLAlchemy and Typer included: in a first sync of 100,000 items, 1,100 collections took 0.8 s
of the process's 7 CPU seconds, 0.45 s of it in nine walks of the whole heap.

For the pass, the heap as it stands is frozen (it lives as long as the process, and no
collection needs to look at it) and the youngest generation is collected every
`BULK_THRESHOLD` allocations. Reference cycles made during the pass are still collected, so
memory stays flat.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# Allocations between collections of the youngest generation during a bulk pass; the older
# generations keep their multipliers. Collections then took 0.2 s of that first sync, against
# 0.8 s. Not higher: at 20,000 or more (0.1 s) the peak RSS of a SQLite sync grew with the
# library (108 MB for 400,000 items at 20,000, 171 MB for a million at 50,000), where at
# 10,000 or under it stays near 89 MB.
BULK_THRESHOLD = 10_000


class _Settings:
    """Whether a bulk pass is on, counted across threads: passes may overlap (in one process,
    several syncs run side by side only in tests), and the first to start sets up what the
    last to end restores."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.passes = 0
        self.saved = gc.get_threshold()

    def enter(self) -> None:
        with self.lock:
            self.passes += 1
            if self.passes == 1:
                self.saved = gc.get_threshold()
                gc.freeze()
                gc.set_threshold(max(BULK_THRESHOLD, self.saved[0]))

    def leave(self) -> None:
        with self.lock:
            self.passes -= 1
            if self.passes == 0:
                gc.set_threshold(*self.saved)
                gc.unfreeze()


_SETTINGS = _Settings()


@contextmanager
def bulk_pass() -> Iterator[None]:
    """For the block, the collector leaves the heap it started with alone and runs less often."""
    _SETTINGS.enter()
    try:
        yield
    finally:
        _SETTINGS.leave()
