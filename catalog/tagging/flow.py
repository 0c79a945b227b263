"""Pacing shared by every worker of a run: a token-bucket rate limiter that Retry-After pauses
and 429s slow down, with a cap on calls in flight, both adjustable while it runs (a process
that shares the service's limits with others takes its share of them); and a circuit breaker
that stops dispatching to a failing service."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from catalog.errors import CircuitOpen

log = logging.getLogger(__name__)

Clock = Callable[[], float]
RECOVERY_STEPS = 20  # successes to climb back from a slow-down to the configured rate, per halving
# A call is logged when its request has been written to the connection, and arrives a little
# later: keep every window this much longer than a second within rate + burst, so the server
# counts within it too.
WINDOW_SLACK_S = 0.1


class RateLimiter:
    """At most `burst` + `rate`·t calls start in any t seconds, across all workers, and at most
    `slots` calls are in flight (None: as many as the callers make).

    Callers queue on one lock, so they are served in arrival order and a Retry-After pause
    holds every one of them. A rate-limit answer halves the rate (down to an eighth of the
    configured one); each success then raises it by a twentieth of the configured rate.
    The bucket bounds the calls let go in any second by burst + rate; but a call let go can
    still wait (for a connection, for a busy event loop) and leave with others, so the
    service sees a burst. The window therefore logs when each request actually went out
    (`sent`) and counts the calls let go and not yet sent as taking their place in it: no
    more than `window` (default int(rate) + burst) go out within any slightly-longer-than-a-
    second span. Whoever `acquire`s reports `sent` or `withdraw` once for each call.
    `resize` changes all of them while calls run.
    """

    def __init__(
        self,
        rate: float,
        burst: int = 1,
        clock: Clock = time.monotonic,
        slots: int | None = None,
    ) -> None:
        self.configured = self.rate = float(rate)
        self.burst = max(int(burst), 1)
        self._clock = clock
        # Empty until the first call: a burst is earned by idling between calls. Starting full
        # would put a burst on top of the rate while connections are still being opened.
        self._tokens = 0.0
        self._stamp: float | None = None
        self._paused_until = 0.0
        self._lock = asyncio.Lock()
        self._starts: deque[float] = deque(maxlen=int(self.configured) + self.burst)  # sends
        self._unsent = 0  # let go, not yet sent
        self._window_moved = asyncio.Event()  # a call was sent or withdrawn
        self.slots, self.in_flight = slots, 0
        self._slot_freed = asyncio.Event()

    @property
    def window(self) -> int:
        """Calls allowed to start within any second (and its slack)."""
        return self._starts.maxlen or 1

    def resize(self, rate: float, burst: int, window: int, slots: int | None) -> None:
        """Take new limits at once: calls already started stay counted, a slow-down after
        429s keeps its proportion, and calls in flight over a lowered `slots` finish."""
        self._refill(self._clock())
        slowed = self.rate / self.configured
        self.configured = float(rate)
        self.rate = self.configured * slowed
        self.burst = max(int(burst), 1)
        self._tokens = min(self._tokens, self.burst)
        self._starts = deque(self._starts, maxlen=max(int(window), 1))  # keeps the newest
        self.slots = slots
        self._slot_freed.set()
        self._window_moved.set()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the `slots` for the block (one call, its retries included)."""
        while self.slots is not None and self.in_flight >= self.slots:
            self._slot_freed.clear()
            await self._slot_freed.wait()
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            self._slot_freed.set()

    async def acquire(self) -> None:
        """Wait for the right to start one call."""
        async with self._lock:
            while True:
                now = self._clock()
                if now < self._paused_until:
                    await asyncio.sleep(self._paused_until - now)
                    continue
                self._refill(now)
                room_in = self._room_in(now)
                if room_in is None:
                    self._window_moved.clear()
                    await self._window_moved.wait()
                elif room_in > 0:
                    await asyncio.sleep(room_in)
                elif self._tokens >= 1:
                    self._tokens -= 1
                    self._unsent += 1
                    return
                else:
                    await asyncio.sleep((1 - self._tokens) / self.rate)

    def sent(self) -> None:
        """A call let go has gone out: it counts in the window from now."""
        self._unsent = max(self._unsent - 1, 0)
        self._starts.append(self._clock())
        self._window_moved.set()

    def withdraw(self) -> None:
        """A call let go ended without going out (no connection, cancelled): its place is free.
        Its token stays spent, as a failed attempt's would."""
        self._unsent = max(self._unsent - 1, 0)
        self._window_moved.set()

    def _room_in(self, now: float) -> float | None:
        """Seconds until one more call fits in the window (0: it fits now); None while calls
        let go and not yet sent fill it: only their going out (or not) can change that."""
        free = self.window - self._unsent  # sends the window can take, those on their way aside
        if free <= 0:
            return None
        if len(self._starts) < free:
            return 0.0
        return max(self._starts[-free] + 1 + WINDOW_SLACK_S - now, 0.0)

    def pause(self, seconds: float) -> None:
        """Start no call for `seconds` (a Retry-After), whichever worker was told."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    def slow_down(self) -> None:
        self._refill(self._clock())
        self.rate = max(self.rate / 2, self.configured / 8)

    def recover(self) -> None:
        if self.rate < self.configured:
            self._refill(self._clock())
            self.rate = min(self.configured, self.rate + self.configured / RECOVERY_STEPS)

    def _refill(self, now: float) -> None:
        # Time spent paused earns tokens too, but never more than a burst.
        elapsed = 0.0 if self._stamp is None else now - self._stamp
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        self._stamp = now


class LimiterPacing:
    """The rate limiter as the HTTP seam's pacing hook: every attempt (retries too) waits its
    turn, and a rate-limit answer pauses every worker and slows the pace."""

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter

    async def before_attempt(self) -> None:
        await self.limiter.acquire()

    def sent(self) -> None:
        self.limiter.sent()

    def not_sent(self) -> None:
        self.limiter.withdraw()

    def rate_limited(self, retry_after: float | None) -> None:
        # The seam has already refused a Retry-After over its cap, so this one is waited out.
        self.limiter.pause(retry_after or 1.0)
        self.limiter.slow_down()

    def answered(self) -> None:
        self.limiter.recover()


class CircuitBreaker:
    """Counts calls that failed after every retry. `threshold` in a row open the circuit for
    `cooldown_s`, then one trial call decides: success closes it, failure opens it again. Once
    it has opened more than `max_opens` times the service is given up on: `admit` raises
    CircuitOpen and the run stops dispatching."""

    TRIAL_POLL_S = 0.05

    def __init__(
        self,
        threshold: int,
        cooldown_s: float,
        max_opens: int,
        clock: Clock = time.monotonic,
        service: str = "the tagging service",
    ) -> None:
        self.threshold, self.cooldown_s, self.max_opens = threshold, cooldown_s, max_opens
        self.service = service  # as messages name it
        self.opens = 0
        self._clock = clock
        self._failures = 0
        self._open_until: float | None = None
        self._trial_out = False
        self._last_reason = ""

    @property
    def given_up(self) -> bool:
        return self.opens > self.max_opens

    async def admit(self) -> None:
        """Wait until a call may go out."""
        while True:
            if self.given_up:
                raise CircuitOpen(
                    f"{self.service} failed {self.threshold} calls in a row, "
                    f"{self.opens} times; stopped calling it (last: {self._last_reason})"
                )
            if self._open_until is None:
                return
            wait = self._open_until - self._clock()
            if wait > 0:
                await asyncio.sleep(wait)
            elif not self._trial_out:
                self._trial_out = True
                return
            else:
                await asyncio.sleep(self.TRIAL_POLL_S)

    def success(self) -> None:
        self._failures, self._open_until, self._trial_out = 0, None, False

    def failure(self, reason: str = "") -> None:
        self._failures += 1
        self._last_reason = reason or "no detail"
        closed_and_over = self._open_until is None and self._failures >= self.threshold
        if self._trial_out or closed_and_over:
            self._trial_out = False
            self.opens += 1
            self._open_until = self._clock() + self.cooldown_s
            if not self.given_up:
                log.warning(
                    "%s failed %d calls in a row: pausing %.0f s",
                    self.service, self._failures, self.cooldown_s,
                )  # fmt: skip
