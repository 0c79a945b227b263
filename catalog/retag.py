"""`catalog retag`: find the overdue items in one query, tag them through the rate-limited async
client, and write the answers back in batches.

Selection streams keyset batches of ONE statement each: items joined to their `tagging`
process run, with their genres and tags aggregated per row. On PostgreSQL each batch is
claimed in that same statement, so several workers share the overdue items (catalog.workers).
Calls run on `concurrency` callers; answers are written by a single writer task on the
database thread, one transaction per batch (`batch_size` answers or `flush_s` seconds,
whichever comes first).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

from sqlalchemy import Connection, Engine, delete, exists, func, literal, select
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.dialects.postgresql import insert as pg_insert

from catalog.aio import DbThread
from catalog.db.engine import dialect_insert, in_connection, in_transaction
from catalog.db.locks import job_lock
from catalog.db.models import (
    GENRE,
    LIBRARY,
    MEDIA,
    MEDIA_GENRE,
    MEDIA_TAG,
    SERVER,
    TAG,
)
from catalog.db.models import MEDIA_TAGLINE as TAGLINE
from catalog.db.models import PROCESS_RUN as RUN_ROW
from catalog.db.models import RETAG_CLAIM as CLAIM
from catalog.db.refused import refusal, refused_by
from catalog.errors import CircuitOpen, MalformedAnswer, TaggerCallFailed, TaggerError
from catalog.http import HttpStats
from catalog.items import ItemCheck
from catalog.jobs import Items, JobReport, recorded_run
from catalog.progress import Progress, QuietProgress
from catalog.runs import FAILED, OK, PARTIAL, Retention, utcnow
from catalog.tagging import TagAnswer, TagRequest
from catalog.tagging.client import TaggerClient
from catalog.tags.aliases import resolve_tags
from catalog.tags.guard import guard_links
from catalog.workers import Limits, SharedPacing, Worker, alive_runs

log = logging.getLogger(__name__)

PROCESS = "tagging"
TAGGER_ORIGIN = "tagger"
SELECT_BATCH = 1000
TASK = "tagging"  # the progress task


# -- selection ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """Which items a retag takes: overdue ones (never tagged, or last tagged before
    `older_than_s` ago; with `changed`, also those changed since), or all with `force`.
    Items the server no longer lists are never taken."""

    older_than_s: float = 30 * 86400
    libraries: tuple[str, ...] = ()
    changed: bool = False
    force: bool = False
    limit: int | None = None
    server: str | None = None  # only this server's items


def _overdue_where(selection: Selection, now: datetime) -> list[Any]:
    """Overdue: no `tagging` run succeeded since the cutoff (on the item as it is now, with
    `changed`). Written as NOT EXISTS, an anti-join the planner walks in id order and stops
    at the batch's LIMIT; an outer join filtered on its nullable side is estimated so badly
    that PostgreSQL hashes the whole table for every batch instead."""
    where: list[Any] = [MEDIA.c.missing_since.is_(None)]
    if selection.libraries or selection.server:
        chosen = select(LIBRARY.c.id)
        if selection.libraries:
            names = [name.casefold() for name in selection.libraries]
            chosen = chosen.where(func.lower(LIBRARY.c.name).in_(names))
        if selection.server:
            servers = select(SERVER.c.id).where(SERVER.c.name == selection.server)
            chosen = chosen.where(LIBRARY.c.server_id.in_(servers))
        where.append(MEDIA.c.library_id.in_(chosen))
    if not selection.force:
        cutoff = now - timedelta(seconds=selection.older_than_s)
        fresh = [
            RUN_ROW.c.media_id == MEDIA.c.id,
            RUN_ROW.c.process == PROCESS,
            RUN_ROW.c.last_success_at >= cutoff,
        ]
        if selection.changed:
            fresh.append(RUN_ROW.c.input_hash == MEDIA.c.content_hash)
        where.append(~exists().where(*fresh))
    return where


def count_overdue(conn: Connection, selection: Selection, now: datetime) -> int:
    """How many items a retag with `selection` would take, its limit included."""
    query = select(func.count()).select_from(MEDIA).where(*_overdue_where(selection, now))
    total = conn.execute(query).scalar_one()
    return total if selection.limit is None else min(total, selection.limit)


def _names(conn: Connection, link: Any, names: Any, key: Any, order: Any = None) -> Any:
    """The names linked to each media row, as one JSON array per row (correlated, indexed),
    by name; with `order`, in that order (on SQLite, which cannot order inside an aggregate
    before 3.44, as [order, name] pairs that _name_list sorts)."""
    joined = link.join(names, names.c.id == key)
    if conn.dialect.name == "postgresql":
        agg = func.json_agg(
            aggregate_order_by(names.c.name, names.c.name if order is None else order)
        )
    elif order is None:
        agg = func.json_group_array(names.c.name)
    else:
        agg = func.json_group_array(func.json_array(order, names.c.name))
    return select(agg).select_from(joined).where(link.c.media_id == MEDIA.c.id).scalar_subquery()


def select_overdue(
    conn: Connection, selection: Selection, now: datetime, after_id: int, limit: int
) -> list[TagRequest]:
    """The next `limit` overdue items after `after_id`, in id order, with what the tagging
    service is told about them: one statement."""
    query = (
        _requests(conn)
        .where(MEDIA.c.id > after_id, *_overdue_where(selection, now))
        .order_by(MEDIA.c.id)
        .limit(limit)
    )
    return [_request(row) for row in conn.execute(query)]


def _requests(conn: Connection) -> Any:
    """SELECT what a tag request needs of each media row."""
    genres = _names(conn, MEDIA_GENRE, GENRE, MEDIA_GENRE.c.genre_id, MEDIA_GENRE.c.position)
    tags = _names(conn, MEDIA_TAG, TAG, MEDIA_TAG.c.tag_id)
    columns = (
        MEDIA.c.id, MEDIA.c.name, MEDIA.c.content_hash, MEDIA.c.overview,
        MEDIA.c.official_rating, MEDIA.c.critic_rating, MEDIA.c.community_rating,
        MEDIA.c.runtime_s, genres.label("genres"), tags.label("tags"),
    )  # fmt: skip
    return select(*columns)


def _claimable(selection: Selection, now: datetime, worker: Worker) -> list[Any]:
    """Overdue, claimed by no live lease, and not run since `worker` started (answered or
    failed by any worker meanwhile: a later run retries a failure, as a lone run does)."""
    taken = exists().where(CLAIM.c.media_id == MEDIA.c.id, CLAIM.c.lease_until >= func.now())
    ran = exists().where(
        RUN_ROW.c.media_id == MEDIA.c.id,
        RUN_ROW.c.process == PROCESS,
        RUN_ROW.c.last_run_at >= worker.started,
    )
    return [*_overdue_where(selection, now), ~taken, ~ran]


def claim_overdue(
    conn: Connection,
    selection: Selection,
    now: datetime,
    worker: Worker,
    after_id: int,
    limit: int,
) -> list[TagRequest]:
    """Claim the next `limit` claimable items after `after_id` for `worker` and return their
    requests: one statement (PostgreSQL). SKIP LOCKED lets workers claiming at the same moment
    pass each other's rows; the conflict clause is what makes a claim exclusive, since it sees
    a claim committed after this statement's snapshot and takes it only once expired."""
    picked = (
        select(MEDIA.c.id)
        .where(MEDIA.c.id > after_id, *_claimable(selection, now, worker))
        .order_by(MEDIA.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=MEDIA)
        .cte("picked")
    )
    lease = func.now() + timedelta(seconds=worker.lease_s)
    rows = select(picked.c.id, literal(worker.id, CLAIM.c.worker_id.type), lease)
    claim = pg_insert(CLAIM).from_select(["media_id", "worker_id", "lease_until"], rows)
    claimed = (
        claim.on_conflict_do_update(
            index_elements=[CLAIM.c.media_id],
            set_={"worker_id": claim.excluded.worker_id, "lease_until": claim.excluded.lease_until},
            where=CLAIM.c.lease_until < func.now(),
        )
        .returning(CLAIM.c.media_id)
        .cte("claimed")
    )
    query = (
        _requests(conn)
        .join_from(MEDIA, claimed, claimed.c.media_id == MEDIA.c.id)
        .order_by(MEDIA.c.id)
    )
    return [_request(row) for row in conn.execute(query)]


def any_claimable(conn: Connection, selection: Selection, now: datetime, worker: Worker) -> bool:
    """Whether an item is left for `worker` to claim (a worker on standby asks, to know when
    to give up waiting for a share)."""
    query = select(exists().where(*_claimable(selection, now, worker)))
    return bool(conn.execute(query).scalar())


def _request(row: Any) -> TagRequest:
    return TagRequest(
        media_id=row.id,
        title=row.name,
        input_hash=row.content_hash,
        description=row.overview,
        genres=tuple(dict.fromkeys(_name_list(row.genres, sort=False))),
        rating=row.official_rating,
        critical_rating=row.critic_rating,
        audience_rating=row.community_rating,
        duration_minutes=round(row.runtime_s / 60) if row.runtime_s else None,
        current_tags=_name_list(row.tags),
    )


def _name_list(value: Any, sort: bool = True) -> tuple[str, ...]:
    # PostgreSQL hands back a decoded list (or None); SQLite a JSON text.
    names = json.loads(value) if isinstance(value, str) else value or []
    if not sort:  # in their order; SQLite's come as [position, name] pairs
        return (
            tuple(n[1] for n in sorted(names))
            if names and isinstance(names[0], list)
            else tuple(names)
        )
    return tuple(sorted(set(names)))


def iter_overdue(
    engine: Engine, selection: Selection, now: datetime, batch: int = SELECT_BATCH
) -> Iterator[list[TagRequest]]:
    """Every item `selection` takes, in keyset batches (one short transaction each)."""
    after, left = 0, selection.limit
    while left is None or left > 0:
        size = batch if left is None else min(batch, left)
        with engine.connect() as conn:
            requests = select_overdue(conn, selection, now, after, size)
        if not requests:
            return
        yield requests
        after = requests[-1].media_id
        left = None if left is None else left - len(requests)
        if len(requests) < size:
            return


def iter_claimed(
    engine: Engine,
    selection: Selection,
    now: datetime,
    worker: Worker,
    size: Callable[[], int],
) -> Iterator[list[TagRequest]]:
    """Batches claimed for `worker` (one transaction each, `size()` items at most): forward in
    id order, then from the start again for what was released, expired or passed over
    meanwhile; a pass from the start that claims nothing ends it."""
    after, left = 0, selection.limit
    while left is None or left > 0:
        count = size() if left is None else min(size(), left)
        batch = in_transaction(engine, claim_overdue, selection, now, worker, after, count)
        if not batch:
            if after == 0:
                return
            after = 0
            continue
        yield batch
        after = batch[-1].media_id
        left = None if left is None else left - len(batch)


def most_used_tags(conn: Connection, limit: int) -> list[str]:
    """The catalog's `limit` most used tag names: the vocabulary the service should reuse."""
    if limit <= 0:
        return []
    query = (
        select(TAG.c.name)
        .join(MEDIA_TAG, MEDIA_TAG.c.tag_id == TAG.c.id)
        .group_by(TAG.c.id, TAG.c.name)
        .order_by(func.count().desc(), TAG.c.name)
        .limit(limit)
    )
    return list(conn.execute(query).scalars())


# -- write-back ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """One item's result: an answer, or the reason it failed."""

    request: TagRequest
    answer: TagAnswer | None = None
    error: str | None = None


@dataclass
class WriteCounts:
    tagged: int = 0
    failed: int = 0
    gone: int = 0  # deleted from the catalog while its call was out
    failures: list[Outcome] = field(default_factory=list)  # the failed outcomes written

    def plus(self, other: WriteCounts) -> WriteCounts:
        return WriteCounts(
            self.tagged + other.tagged, self.failed + other.failed, self.gone + other.gone,
            self.failures + other.failures,
        )  # fmt: skip


def write_outcomes(
    conn: Connection, outcomes: Sequence[Outcome], now: datetime, claimed_by: str | None = None
) -> WriteCounts:
    """Write one batch of outcomes in the caller's transaction, in a fixed number of
    statements: an answered item's tagger tags and taglines are replaced (its server tags
    untouched) and its run recorded as a success on the hash it was sent with; a failed item's
    run records the error and keeps its last success, so it stays overdue. `claimed_by`: the
    worker whose claims on these items end with this transaction."""
    guard_links(conn)
    ids = [o.request.media_id for o in outcomes]
    if claimed_by is not None:
        conn.execute(
            delete(CLAIM).where(CLAIM.c.media_id.in_(ids), CLAIM.c.worker_id == claimed_by)
        )
    present = _present_ids(conn, ids)
    kept = [safe_outcome(o) for o in outcomes if o.request.media_id in present]
    answered = [o for o in kept if o.answer is not None]
    failed = [o for o in kept if o.answer is None]
    _replace_tagger_links(conn, answered)
    _record_runs(conn, answered, failed, now)
    return WriteCounts(len(answered), len(failed), len(outcomes) - len(kept))


def safe_outcome(outcome: Outcome) -> Outcome:
    """The answer with the schema's rules applied to its tags and taglines (the same step a
    sync's items go through): NUL stripped, names over the tag column truncated."""
    if outcome.answer is None:
        return outcome
    check = ItemCheck(str(outcome.request.media_id), outcome.request.title)
    tags = check.names("tags", outcome.answer.tags)
    taglines = check.names("taglines", outcome.answer.taglines, None)
    if (tags, taglines) == (outcome.answer.tags, outcome.answer.taglines):
        return outcome
    return Outcome(outcome.request, TagAnswer(tags, taglines))


def _present_ids(conn: Connection, ids: list[int]) -> set[int]:
    """Which items still exist, locked against a concurrent prune until this commits."""
    query = select(MEDIA.c.id).where(MEDIA.c.id.in_(ids))
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(read=True)
    return set(conn.execute(query).scalars())


def _replace_tagger_links(conn: Connection, answered: list[Outcome]) -> None:
    if not answered:
        return
    ids = [o.request.media_id for o in answered]
    for table in (MEDIA_TAG, TAGLINE):
        conn.execute(
            delete(table).where(table.c.media_id.in_(ids), table.c.origin == TAGGER_ORIGIN)
        )
    names = {t for o in answered for t in o.answer.tags}  # type: ignore[union-attr]
    tag_ids = resolve_tags(conn, names)
    links = {
        (o.request.media_id, tag_ids[t])
        for o in answered
        for t in o.answer.tags
        if tag_ids[t]  # type: ignore[union-attr]
    }
    if links:
        rows = [{"media_id": m, "tag_id": t, "origin": TAGGER_ORIGIN} for m, t in sorted(links)]
        conn.execute(dialect_insert(conn, MEDIA_TAG).on_conflict_do_nothing(), rows)
    taglines = [
        {"media_id": o.request.media_id, "origin": TAGGER_ORIGIN, "position": n, "text": line}
        for o in answered
        for n, line in enumerate(o.answer.taglines)  # type: ignore[union-attr]
    ]
    if taglines:
        conn.execute(TAGLINE.insert(), taglines)


def _record_runs(
    conn: Connection, answered: list[Outcome], failed: list[Outcome], now: datetime
) -> None:
    ok_rows = [
        {"media_id": o.request.media_id, "process": PROCESS, "last_run_at": now,
         "last_success_at": now, "input_hash": o.request.input_hash, "status": OK, "error": None}
        for o in answered
    ]  # fmt: skip
    failed_rows = [
        {"media_id": o.request.media_id, "process": PROCESS, "last_run_at": now,
         "last_success_at": None, "input_hash": None, "status": FAILED, "error": o.error}
        for o in failed
    ]  # fmt: skip
    for rows, updated in ((ok_rows, _SUCCESS_COLUMNS), (failed_rows, _FAILURE_COLUMNS)):
        if rows:
            stmt = dialect_insert(conn, RUN_ROW)
            changes = {name: stmt.excluded[name] for name in updated}
            conn.execute(stmt.on_conflict_do_update(index_elements=_RUN_KEY, set_=changes), rows)


_RUN_KEY = ["media_id", "process"]
_SUCCESS_COLUMNS = ("last_run_at", "last_success_at", "input_hash", "status", "error")
_FAILURE_COLUMNS = ("last_run_at", "status", "error")  # the last success stays on record


# -- a run --------------------------------------------------------------------------------------


@dataclass
class RetagReport(JobReport):
    """The outcome of one `catalog retag`, filled in as it goes."""

    selected: int = 0
    tagged: int = 0
    failed: int = 0
    skipped: int = 0
    retries: int = 0
    rate_limited: int = 0
    worker: str | None = None  # on PostgreSQL, the worker id this run shared the items as
    failures: dict[str, int] = field(default_factory=dict)  # reason → items, for the log

    INTERNAL: ClassVar[tuple[str, ...]] = ("started", "failures")
    RULES: ClassVar[dict[str, str]] = {
        OK: "every selected item tagged (or none selected)",
        PARTIAL: "some items tagged, and some failed, were left over, or the breaker stopped it",
        FAILED: "nothing answered (every call failed, or the breaker gave up before any "
        "success), or the service refused the token or URL",
    }

    def settle(self) -> str:
        """Failed when the service answered nothing; partial when some items were tagged and
        an item failed, the breaker gave up, or an item was left over (deleted while its call
        was out, or not reached); what was tagged stays either way."""
        if not self.tagged and (self.failed or self.error):
            self.error = self.error or f"the tagging service answered nothing: {self._reason()}"
            return FAILED
        left_over = self.selected > self.tagged + self.failed
        return PARTIAL if self.error or self.failed or left_over else OK

    def _reason(self) -> str:
        return max(self.failures.items(), key=lambda kv: kv[1])[0] if self.failures else "?"

    def items(self) -> Items:
        return Items(self.selected, self.tagged, self.failed)

    def job_counts(self) -> dict[str, Any]:
        keys = ("selected", "tagged", "failed", "skipped", "retries", "rate_limited")
        return {k: getattr(self, k) for k in keys}


@dataclass(frozen=True)
class WriteBatching:
    """When answers are written: every `size` answers or `every_s` seconds."""

    size: int = 100
    every_s: float = 2.0


async def run_retag(
    engine: Engine,
    client: TaggerClient,
    selection: Selection,
    report: RetagReport,
    progress: Progress | None = None,
    batching: WriteBatching | None = None,
    retention: Retention | int = Retention(),
) -> RetagReport:
    """Retag what `selection` takes as one recorded run. Whatever stops it (the breaker, a
    refused token, a signal), answers already received are written. On SQLite under the retag
    lock (a second run exits 75); on PostgreSQL as one of the workers that share the overdue
    items and the service's limits (catalog.workers), however many run."""
    progress = progress or QuietProgress()
    shared = engine.dialect.name == "postgresql"
    worker = Worker.new(client.config) if shared else None
    lock = nullcontext() if shared else job_lock(engine, "retag", None)
    alive = alive_runs(client.config.lease_s) if shared else None
    with recorded_run(engine, "retag", None, report, lock, retention, alive), DbThread() as db:
        try:
            now = utcnow()
            overdue = await db.run(in_connection, engine, count_overdue, selection, now)
            report.selected = 0 if shared else overdue  # a worker counts what it claims
            progress.started(TASK, overdue)
            existing_count = client.config.existing_tags
            existing = await db.run(in_connection, engine, most_used_tags, existing_count)
            run = _Run(engine, db, client, report, progress, batching or WriteBatching())
            if worker is None:
                await run.go(selection, now, existing)
            else:
                await _as_worker(run, worker, selection, now, existing)
        finally:
            _finish_report(report, client.stats)
    return report


async def _as_worker(
    run: _Run, worker: Worker, selection: Selection, now: datetime, existing: list[str]
) -> None:
    """The run as one registered worker: its share taken before the first call, its claims
    released (and its share given back) however it ends."""
    limits = Limits.of(run.client.config)
    pacing = SharedPacing(run.engine, run.db, run.client.limiter, limits, worker)
    run.report.worker = worker.id
    await pacing.join(run.report.run_id)
    try:
        await run.go(selection, now, existing, pacing)
    finally:
        await pacing.leave()


def _finish_report(report: RetagReport, stats: HttpStats) -> None:
    report.retries, report.rate_limited = stats.retries, stats.rate_limited
    report.skipped = max(report.selected - report.tagged - report.failed, 0)
    for reason, count in sorted(report.failures.items(), key=lambda kv: -kv[1])[:5]:
        log.warning("%d item(s) failed: %s", count, reason)


class _Run:
    """One run's moving parts: a feeder, `concurrency` callers and one writer."""

    def __init__(
        self,
        engine: Engine,
        db: DbThread,
        client: TaggerClient,
        report: RetagReport,
        progress: Progress,
        batching: WriteBatching,
    ) -> None:
        self.engine, self.db, self.client = engine, db, client
        self.report, self.progress, self.batching = report, progress, batching
        workers = client.config.concurrency
        self.todo: asyncio.Queue[TagRequest | None] = asyncio.Queue(maxsize=2 * workers)
        self.done: asyncio.Queue[Outcome | None] = asyncio.Queue()
        self.stop: BaseException | None = None
        self.pacing: SharedPacing | None = None  # a worker's: its claims and its share
        self.lost = 0  # claimed items not called: the claim was no longer held
        self.taken = asyncio.Event()  # a caller took the last request waiting in `todo`

    async def go(
        self,
        selection: Selection,
        now: datetime,
        existing: list[str],
        pacing: SharedPacing | None = None,
    ) -> None:
        """Feed, call and write until the selection is done; with `pacing`, the items come
        from claims and a heartbeat keeps the claims and the share up to date."""
        self.pacing = pacing
        writer = asyncio.create_task(self._write_loop())
        if pacing is not None:
            pacing.start_beats(self._beat_failed)
        callers = [
            asyncio.create_task(self._call_loop(existing))
            for _ in range(self.client.config.concurrency)
        ]
        try:
            await self._feed(self._batches(selection, now, pacing), len(callers))
            await asyncio.gather(*callers)
        finally:
            # Cancelled or not, what was answered is written before the run ends.
            for task in callers:
                task.cancel()
            await asyncio.gather(*callers, return_exceptions=True)
            if pacing is not None:
                await pacing.stop_beats()
            self.done.put_nowait(None)
            await asyncio.shield(writer)
        if self.lost:
            log.warning("%d claimed item(s) left to the other workers: claims lost", self.lost)
        if isinstance(self.stop, CircuitOpen):
            self.report.error = str(self.stop)
        elif self.stop is not None:
            raise self.stop

    async def _feed(self, batches: AsyncIterator[list[TagRequest]], callers: int) -> None:
        async for batch in batches:
            for request in batch:
                if self.stop is not None:
                    break
                await self.todo.put(request)
        for _ in range(callers):
            await self.todo.put(None)

    async def _batches(
        self, selection: Selection, now: datetime, pacing: SharedPacing | None
    ) -> AsyncIterator[list[TagRequest]]:
        if pacing is None:
            batches = iter_overdue(self.engine, selection, now)
        else:
            size = lambda: pacing.share.claim_size()  # noqa: E731 (the share of the moment)
            batches = iter_claimed(self.engine, selection, now, pacing.worker, size)
        while self.stop is None:
            if pacing is not None and not await self._has_share(pacing, selection, now):
                return
            while pacing is not None and not self.todo.empty():  # claim no more than it calls
                self.taken.clear()
                await self.taken.wait()
            if self.stop is not None:
                return
            batch = await self.db.run(next, batches, None)
            if batch is None:
                return
            if pacing is not None:
                pacing.claimed(request.media_id for request in batch)
                self.report.selected += len(batch)
            yield batch

    async def _has_share(self, pacing: SharedPacing, selection: Selection, now: datetime) -> bool:
        """Wait for a share of the service's limits before claiming; False once, on standby,
        nothing is left to claim (the others have it all in hand)."""
        while not pacing.share.active and self.stop is None:
            await pacing.wait_active()
            if pacing.share.active:
                break
            left = await self.db.run(
                in_connection, self.engine, any_claimable, selection, now, pacing.worker
            )
            if not left:
                return False
        return self.stop is None

    def _beat_failed(self, exc: BaseException) -> None:
        self.stop = self.stop or exc  # a catalog that stops answering stops the run

    async def _call_loop(self, existing: list[str]) -> None:
        while (request := await self.todo.get()) is not None:
            if self.todo.empty():
                self.taken.set()
            if self.stop is not None:
                continue  # drain, so the feeder is never stuck on a full queue
            if self.pacing is not None and not await self.pacing.may_call(request.media_id):
                self.lost += 1  # its claim lapsed or was taken over: the other workers have it
                continue
            try:
                answer = await self.client.tag(request, existing)
            except (MalformedAnswer, TaggerCallFailed) as exc:
                self.done.put_nowait(Outcome(request, error=str(exc)))
            except TaggerError as exc:  # the breaker gave up, or the service refused us
                self.stop = self.stop or exc
                continue
            else:
                self.done.put_nowait(Outcome(request, answer))
            self.progress.advanced(TASK)  # per answer, not per written batch

    async def _write_loop(self) -> None:
        """Write answers in batches: once `size` are waiting or `every_s` after the first of
        them arrived, whichever comes first, and what is left when the callers are done."""
        batch: list[Outcome] = []
        deadline = 0.0
        while True:
            wait = max(deadline - time.monotonic(), 0) if batch else None
            try:
                outcome = await asyncio.wait_for(self.done.get(), wait)
            except TimeoutError:  # the oldest answer has waited long enough
                await self._write(batch)
                batch = []
                continue
            if outcome is None:
                break
            if not batch:
                deadline = time.monotonic() + self.batching.every_s
            batch.append(outcome)
            if len(batch) >= self.batching.size:
                await self._write(batch)
                batch = []
        if batch:
            await self._write(batch)

    @property
    def _claimed_by(self) -> str | None:
        """The worker whose claims end with the answers it writes (None: not shared)."""
        return self.pacing.worker.id if self.pacing is not None else None

    async def _write(self, batch: list[Outcome]) -> None:
        counts = await self.db.run(write_batch, self.engine, batch, utcnow(), self._claimed_by)
        self.report.tagged += counts.tagged
        self.report.failed += counts.failed
        for outcome in counts.failures:
            if outcome.error:
                self.report.failures[outcome.error] = self.report.failures.get(outcome.error, 0) + 1


def write_batch(
    engine: Engine, batch: list[Outcome], now: datetime, claimed_by: str | None = None
) -> WriteCounts:
    """The batch in one transaction; one the database refuses is halved until each refused
    answer is alone, and that one is recorded as failed with the database's reason, so one
    bad answer fails only its own item. Statements grow with the number of bad answers."""
    try:
        counts = in_transaction(engine, write_outcomes, batch, now, claimed_by)
    except refused_by(engine.dialect.name) as exc:
        if len(batch) == 1 and batch[0].answer is not None:
            reason = f"refused by the database: {refusal(exc)}"
            return write_batch(engine, [Outcome(batch[0].request, error=reason)], now, claimed_by)
        if len(batch) == 1:
            raise
        middle = len(batch) // 2
        first = write_batch(engine, batch[:middle], now, claimed_by)
        return first.plus(write_batch(engine, batch[middle:], now, claimed_by))
    counts.failures = [o for o in batch if o.error]
    return counts
