"""Retag workers sharing one PostgreSQL catalog: each registers in `retag_worker` and beats
every `heartbeat_s`. A beat renews the worker's claims and re-divides the tagging service's
limits (rate, burst, concurrency) among the live workers, so that they hold for all of them
together, as the service sees them.

Why a lease table and not advisory locks alone: an advisory lock dies with its connection,
but a worker holds none open between statements (every batch is a short transaction on a
pooled connection), and a lock cannot say which items it covers without one lock per item.
A claim row with `lease_until` is set-based (one INSERT ... SELECT per batch) and visible to
every worker, and it ends with its worker all the same: a worker killed with -9 stops
renewing it, and once `lease_s` has passed another worker takes the item. A live worker must
not lose a claim that way: beats run on their own thread and connection, never behind the
run's claims and writes, and a worker calls only items its last beat still found its own.

Shares never add up to more than the limits, even while workers come and go. Each worker
records what it holds (`slots`: calls in flight; `starts`: call starts in any second) and
takes at most what the others leave free, all under one transaction-level advisory lock:

- a worker that joins holds nothing until the others have lowered theirs: it starts on
  standby and takes its share at its first beat after theirs (two or three beats on);
- a worker that lowers its share keeps holding the old one for HOLD_S (1.5 s) and at least
  until its next beat, so the starts it made under the old share are well over a second old
  before anyone else takes them; its calls in flight over the new share count as held until
  they end;
- a worker that leaves gives its share back at once; one that dies gives it back when its
  heartbeat is `lease_s` old.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, delete, func, insert, or_, select, text
from sqlalchemy import update as sql_update

from catalog.aio import DbThread
from catalog.config import TaggerConfig
from catalog.db.engine import in_transaction
from catalog.db.locks import lock_key
from catalog.db.models import RETAG_CLAIM as CLAIM
from catalog.db.models import RETAG_WORKER as WORKER
from catalog.db.models import RUN
from catalog.runs import utcnow
from catalog.tagging.flow import WINDOW_SLACK_S, RateLimiter

log = logging.getLogger(__name__)

WORKERS_LOCK = lock_key("retag", "workers")
CLAIM_AHEAD_S = 2.0  # a worker claims about this many seconds of calls at its share
MAX_CLAIM = 1000  # items per claim statement at most (the selection's batch)
# A lowered share is still held this long: every start made under the old one must have left
# the limiter's window (and the service's second) before another worker may use what it frees.
HOLD_S = 1 + WINDOW_SLACK_S + 0.4


@dataclass(frozen=True)
class Limits:
    """What the tagging service allows all workers together."""

    rate: float
    burst: int
    concurrency: int

    @classmethod
    def of(cls, config: TaggerConfig) -> Limits:
        return cls(config.rate, config.effective_burst, config.concurrency)

    @property
    def window(self) -> int:
        """Call starts allowed in any second (the limiter's own bound: int(rate) + burst)."""
        return int(self.rate) + self.burst


@dataclass(frozen=True)
class Share:
    """One worker's part of the limits: its bucket's rate and burst, the starts it may make in
    any second, and its calls in flight. No slots: it waits (on standby)."""

    rate: float = 0.0
    burst: int = 0
    starts: int = 0
    slots: int = 0

    @property
    def active(self) -> bool:
        return self.slots > 0 and self.starts > 0

    def claim_size(self) -> int:
        """Items to claim at once: about CLAIM_AHEAD_S seconds of calls at its rate, but no more
        than four per slot (where the calls in flight bind, not the rate) and at least one per
        slot, so that every slot has work and the other workers find work left to share."""
        ahead = min(math.ceil(CLAIM_AHEAD_S * self.rate), 4 * self.slots)
        return max(1, min(MAX_CLAIM, max(self.slots, ahead)))


STANDBY = Share()


def part(total: int, parts: int, index: int) -> int:
    """Worker `index`'s part of `total` split `parts` ways: the parts add up to `total`."""
    return total // parts + (1 if index < total % parts else 0)


def target_share(limits: Limits, rank: int, live: int) -> Share:
    """The share of the worker at `rank` (by age) among `live` workers: rate / N, and burst,
    starts and concurrency split so they add up exactly. With more workers than calls in
    flight or starts per second allowed, the youngest stand by."""
    active = min(live, limits.concurrency, limits.window)
    if rank >= active:
        return STANDBY
    starts = part(limits.window, active, rank)
    burst = max(1, min(part(limits.burst, active, rank), starts))
    return Share(limits.rate / active, burst, starts, part(limits.concurrency, active, rank))


def granted(target: Share, limits: Limits, others_slots: int, others_starts: int) -> Share:
    """The target, cut to what the other workers leave free."""
    slots = min(target.slots, max(limits.concurrency - others_slots, 0))
    starts = min(target.starts, max(limits.window - others_starts, 0))
    if not slots or not starts:
        return STANDBY
    return Share(min(target.rate, starts), min(target.burst, starts), starts, slots)


def held(new: Share, current: Share, in_flight: int) -> tuple[int, int]:
    """(slots, starts) this worker tells the others it holds: the larger of its new share and
    the one it used until now (lowered, it frees the difference only at its next beat), and
    never fewer slots than its calls in flight."""
    return max(new.slots, current.slots, in_flight), max(new.starts, current.starts)


# -- the registry -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Worker:
    """One retag process: its id, when it started (items run since then are done for it), and
    how long its claims and registration hold without a beat."""

    id: str
    started: datetime
    lease_s: float
    heartbeat_s: float

    @classmethod
    def new(cls, config: TaggerConfig) -> Worker:
        name = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        return cls(name[-120:], utcnow(), config.lease_s, config.heartbeat_s)


def _alive_since(lease_s: float) -> ColumnElement[datetime]:
    return func.now() - timedelta(seconds=lease_s)


def register(conn: Connection, worker: Worker, run_id: int | None) -> None:
    """Add `worker` to the registry holding nothing, and forget workers gone for a lease."""
    _hold_registry(conn)
    conn.execute(delete(WORKER).where(WORKER.c.heartbeat_at < _alive_since(worker.lease_s)))
    conn.execute(delete(CLAIM).where(CLAIM.c.lease_until < func.now()))
    row = {"id": worker.id, "run_id": run_id, "started_at": func.now(),
           "heartbeat_at": func.now(), "slots": 0, "starts": 0}  # fmt: skip
    conn.execute(insert(WORKER).values(row))


@dataclass(frozen=True)
class Beat:
    """What one beat found: this worker's share now, and how many workers are alive."""

    share: Share
    live: int
    claims: frozenset[int] = frozenset()  # the media ids this worker's renewed claims hold


def beat(conn: Connection, worker: Worker, limits: Limits, current: Share, in_flight: int) -> Beat:
    """Renew the worker's registration and claims and take its share: four statements under
    the registry lock, so two workers never divide the limits at once."""
    _hold_registry(conn)
    rows = conn.execute(
        select(WORKER.c.id, WORKER.c.slots, WORKER.c.starts)
        .where(or_(WORKER.c.heartbeat_at >= _alive_since(worker.lease_s), WORKER.c.id == worker.id))
        .order_by(WORKER.c.started_at, WORKER.c.id)
    ).all()
    ids = [r.id for r in rows]
    if worker.id not in ids:  # forgotten after a silence longer than a lease: join again
        register(conn, worker, None)
        ids.append(worker.id)
    others = [r for r in rows if r.id != worker.id]
    target = target_share(limits, ids.index(worker.id), len(ids))
    share = granted(target, limits, sum(r.slots for r in others), sum(r.starts for r in others))
    slots, starts = held(share, current, in_flight)
    conn.execute(
        sql_update(WORKER)
        .where(WORKER.c.id == worker.id)
        .values(heartbeat_at=func.now(), slots=slots, starts=starts)
    )
    lease = func.now() + timedelta(seconds=worker.lease_s)
    renewed = conn.execute(
        sql_update(CLAIM)
        .where(CLAIM.c.worker_id == worker.id)
        .values(lease_until=lease)
        .returning(CLAIM.c.media_id)
    )
    return Beat(share, len(ids), frozenset(renewed.scalars()))


def leave(conn: Connection, worker: Worker) -> None:
    """Release the worker's claims (what it did not write stays overdue) and its share."""
    _hold_registry(conn)
    conn.execute(delete(CLAIM).where(CLAIM.c.worker_id == worker.id))
    conn.execute(delete(WORKER).where(WORKER.c.id == worker.id))


def alive_runs(lease_s: float) -> ColumnElement[bool]:
    """The running retag runs another worker must not mark abandoned: those of live workers,
    and those too young to have registered yet."""
    live = select(WORKER.c.run_id).where(
        WORKER.c.heartbeat_at >= _alive_since(lease_s), WORKER.c.run_id.is_not(None)
    )
    return or_(RUN.c.id.in_(live), RUN.c.started_at >= _alive_since(lease_s))


def _hold_registry(conn: Connection) -> None:
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": WORKERS_LOCK})


# -- this worker's side -------------------------------------------------------------------------


class SharedPacing:
    """This worker's share applied to its limiter, and its claims kept alive: a beat every
    `heartbeat_s` renews both.

    Beats run on a thread and a connection of their own. On the run's database thread they
    would queue behind claims and writes, and on its event loop behind a hundred calls' worth
    of parsing: a worker that is merely busy would let its lease lapse and another worker
    would call its items a second time. A worker also fences itself: it starts a call only on
    an item its last beat renewed, and only while the lease that beat set has a margin left
    to run (`may_call`)."""

    def __init__(
        self, engine: Engine, db: DbThread, limiter: RateLimiter, limits: Limits, worker: Worker
    ) -> None:
        self.engine, self.db, self.limiter = engine, db, limiter
        self.limits, self.worker = limits, worker
        self.share = STANDBY
        self.live = 1
        self._active = asyncio.Event()
        self._before = STANDBY  # the share it had until it was lowered...
        self._lowered_at = -HOLD_S  # ...then (time.monotonic)
        self._guard = threading.Lock()  # the share and claims, read by the beat thread
        self._claims: set[int] = set()
        self._renewed_at = -math.inf  # time.monotonic() just before the last beat began
        self._beats: _Beats | None = None
        self._renewed = asyncio.Event()  # set at each beat applied

    async def join(self, run_id: int | None) -> None:
        await self.db.run(in_transaction, self.engine, register, self.worker, run_id)
        self.apply(await self.db.run(self.renew))
        log.info(
            "retag worker %s: %d worker(s) share the tagging service", self.worker.id, self.live
        )

    def claimed(self, media_ids: Iterable[int]) -> None:
        """Items just claimed: held until a beat finds them gone (written or taken over)."""
        with self._guard:
            self._claims.update(media_ids)

    async def may_call(self, media_id: int) -> bool:
        """Whether a call on `media_id` may start: the last beat renewed its claim, and the
        lease that beat set has more than a margin left to run (the database's clock started
        it no sooner than ours, so it ends no sooner than this reckons). With too little left,
        it waits for the next beat; with the beats stopped, it says no."""
        margin = min(self.worker.heartbeat_s, self.worker.lease_s / 4)
        while self._renewed_at + self.worker.lease_s - time.monotonic() <= margin:
            if self._beats is None or not self._beats.is_alive():
                return False
            self._renewed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._renewed.wait(), self.worker.heartbeat_s)
        return media_id in self._claims

    def start_beats(self, on_error: Callable[[BaseException], None]) -> None:
        """Beat every `heartbeat_s` from now on; `on_error` (on the loop) if a beat fails."""
        self._beats = _Beats(self, asyncio.get_running_loop(), on_error)
        self._beats.start()

    async def stop_beats(self) -> None:
        if self._beats is not None:
            beats, self._beats = self._beats, None
            beats.stopping.set()
            await asyncio.to_thread(beats.join)

    def renew(self) -> Beat:
        """(On any thread.) One beat, its findings applied to the claims held."""
        with self._guard:
            known, current = set(self._claims), self._holding()
        started = time.monotonic()
        found = in_transaction(
            self.engine, beat, self.worker, self.limits, current, self.limiter.in_flight
        )
        with self._guard:
            # A claim made while the beat ran is not in `known`: only what it knew can be lost.
            self._claims -= known - found.claims
            self._renewed_at = started
        return found

    def _holding(self) -> Share:
        """The share it still holds: the one before it was lowered, for HOLD_S after."""
        if time.monotonic() - self._lowered_at >= HOLD_S:
            return self.share
        before, now = self._before, self.share
        return Share(slots=max(before.slots, now.slots), starts=max(before.starts, now.starts))

    async def wait_active(self) -> None:
        """Wait for a share (at most one heartbeat: then the caller looks again)."""
        if not self._active.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._active.wait(), self.worker.heartbeat_s)

    async def leave(self) -> None:
        await self.db.run(in_transaction, self.engine, leave, self.worker)

    def apply(self, found: Beat) -> None:
        """(On the loop.) The share a beat found, applied to the limiter."""
        share, limiter = found.share, self.limiter
        if found.live != self.live or share != self.share:
            log.debug("retag worker %s: %d live, share %s", self.worker.id, found.live, share)
        with self._guard:
            if share.slots < self.share.slots or share.starts < self.share.starts:
                self._before, self._lowered_at = self._holding(), time.monotonic()
            self.share, self.live = share, found.live
        self._renewed.set()
        if share.active:
            limiter.resize(share.rate, share.burst, share.starts, share.slots)
            self._active.set()
        else:  # standby: no call starts; the bucket keeps its pace for when a share comes
            limiter.resize(limiter.configured, limiter.burst, limiter.window, 0)
            self._active.clear()


class _Beats(threading.Thread):
    """The heartbeat: beats on its own thread (and so its own pooled connection), each one's
    share handed to the event loop. A failed beat stops the beats and tells the run."""

    def __init__(
        self,
        pacing: SharedPacing,
        loop: asyncio.AbstractEventLoop,
        on_error: Callable[[BaseException], None],
    ) -> None:
        super().__init__(name="catalog-heartbeat", daemon=True)
        self.pacing, self.loop, self.on_error = pacing, loop, on_error
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.pacing.worker.heartbeat_s):
            try:
                found = self.pacing.renew()
            except Exception as exc:  # a catalog that stops answering stops the run
                self._post(self.on_error, exc)
                return
            self._post(self.pacing.apply, found)

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: the run is over
            self.loop.call_soon_threadsafe(fn, *args)
