"""What a fake server records about a client's pacing: when each request arrived, the most
requests in flight at once, and the busiest window. Shared by the fakes, so the tagger and the
media servers' write endpoints are measured the same way."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from catalog.fakes.loopback import received_at


@dataclass
class ArrivalLog:
    """Times are time.monotonic(), taken from the kernel's receive time of each request (see
    `loopback.received_at`), so a busy server does not smear them; `tracked` counts one
    request from arrival to answer (thread-safe)."""

    arrivals: list[float] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def arrived(self) -> int:
        """Count one request in; its number, from 1."""
        with self._lock:
            self.arrivals.append(received_at())
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return len(self.arrivals)

    def left(self) -> None:
        with self._lock:
            self.in_flight -= 1

    @contextmanager
    def tracked(self) -> Iterator[int]:
        number = self.arrived()
        try:
            yield number
        finally:
            self.left()

    def max_in_window(self, seconds: float = 1.0) -> int:
        """The most requests that arrived within any `seconds`-long window."""
        times = sorted(self.arrivals)
        return max(
            (bisect.bisect_right(times, t + seconds) - i for i, t in enumerate(times)), default=0
        )
