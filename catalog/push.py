"""`catalog push`: the catalog's tags written back to a media server, through its writer.

The goal per item: the tags the server has that push did not add, plus the item's catalog tags
of origin `tagger` and `manual`. `pushed_tag` records, per item, which catalog tags push wrote
and whether the server lacked them (`added`): those, and only those, push removes once the
catalog drops them, and an undo takes back. Selection streams keyset batches of ONE statement
each, taking only items whose catalog tags differ from that record; each is read from the
server, and written only when its goal differs from what the server holds. Records are written
in batches, one transaction each, as writes come back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import Connection, Engine, delete, exists, func, select

from catalog.aio import DbThread
from catalog.db.engine import in_connection, in_transaction
from catalog.db.locks import job_lock
from catalog.db.models import LIBRARY, MEDIA, MEDIA_TAG, SERVER, TAG
from catalog.db.models import PUSHED_TAG as PUSHED
from catalog.errors import BadFilter, CircuitOpen, PushRefused, SourceAuthError, SourceError
from catalog.http import HttpStats
from catalog.jobs import Items, JobReport, recorded_run
from catalog.progress import Progress, QuietProgress
from catalog.runs import DRY_RUN, FAILED, OK, PARTIAL, Retention, utcnow
from catalog.sources import PushItem, ServerTags, TagWriter
from catalog.tagging.flow import CircuitBreaker
from catalog.tags import clean_tag

log = logging.getLogger(__name__)

PUSHED_ORIGINS = ("tagger", "manual")  # server tags came from the server: never pushed back
SELECT_BATCH = 500
TASK = "pushing"  # what the progress bar and log lines call the run


# -- selection ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PushSelection:
    """Which items a push takes: those of `server` (its `libraries`, if named) whose catalog
    tags differ from what push last wrote, or, with `undo`, those push wrote to."""

    server: str
    libraries: tuple[str, ...] = ()
    limit: int | None = None
    undo: bool = False
    kinds_left_alone: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Candidate:
    """One selected item: where it is, the catalog tags it should carry (none on undo), and
    the tags push added to it earlier."""

    media_id: int
    name: str
    item: PushItem
    wanted: tuple[str, ...]
    added: frozenset[str]


def _in_scope(selection: PushSelection) -> list[Any]:
    """The server's (chosen libraries') items the server still lists, of kinds it takes."""
    libraries = (
        select(LIBRARY.c.id)
        .join(SERVER, SERVER.c.id == LIBRARY.c.server_id)
        .where(SERVER.c.name == selection.server)
    )
    if selection.libraries:
        names = [name.casefold() for name in selection.libraries]
        libraries = libraries.where(func.lower(LIBRARY.c.name).in_(names))
    where = [MEDIA.c.missing_since.is_(None), MEDIA.c.library_id.in_(libraries)]
    if selection.kinds_left_alone:
        where.append(MEDIA.c.kind.notin_(sorted(selection.kinds_left_alone)))
    return where


def _catalog_tags() -> Any:
    return MEDIA_TAG.join(TAG, TAG.c.id == MEDIA_TAG.c.tag_id)


def _out_of_step() -> Any:
    """A catalog tag push has not written, or a written one the catalog no longer has. Both
    are anti-joins on primary keys, walked in id order up to the batch's LIMIT."""
    origins = MEDIA_TAG.c.origin.in_(PUSHED_ORIGINS)
    unwritten = exists(
        select(1)
        .select_from(_catalog_tags())
        .where(MEDIA_TAG.c.media_id == MEDIA.c.id, origins)
        .where(
            ~exists().where(PUSHED.c.media_id == MEDIA_TAG.c.media_id, PUSHED.c.name == TAG.c.name)
        )
    )
    dropped = exists(
        select(1)
        .select_from(PUSHED)
        .where(PUSHED.c.media_id == MEDIA.c.id)
        .where(
            ~exists(
                select(1)
                .select_from(_catalog_tags())
                .where(MEDIA_TAG.c.media_id == PUSHED.c.media_id, origins)
                .where(TAG.c.name == PUSHED.c.name)
            )
        )
    )
    return unwritten | dropped


def _selected_where(selection: PushSelection) -> list[Any]:
    if selection.undo:
        return [*_in_scope(selection), exists().where(PUSHED.c.media_id == MEDIA.c.id)]
    return [*_in_scope(selection), _out_of_step()]


def check_libraries(conn: Connection, selection: PushSelection) -> None:
    """A --library the catalog does not hold for this server is an error naming what it has
    (pushing nothing would look like success)."""
    if not selection.libraries:
        return
    query = (
        select(LIBRARY.c.name)
        .join(SERVER, SERVER.c.id == LIBRARY.c.server_id)
        .where(SERVER.c.name == selection.server)
        .order_by(LIBRARY.c.name)
    )
    held = list(conn.execute(query).scalars())
    for name in selection.libraries:
        if name.casefold() not in {h.casefold() for h in held}:
            raise BadFilter(
                f"no library named {name!r} of server {selection.server!r} in the catalog "
                f"(it has: {', '.join(map(repr, held)) or 'none; run catalog sync first'})"
            )


def count_selected(conn: Connection, selection: PushSelection) -> int:
    """How many items a push with `selection` takes, its limit included."""
    query = select(func.count()).select_from(MEDIA).where(*_selected_where(selection))
    total = conn.execute(query).scalar_one()
    return total if selection.limit is None else min(total, selection.limit)


def count_in_scope(conn: Connection, selection: PushSelection) -> int:
    """How many items the server's chosen libraries hold: what the guard's share is of."""
    query = select(func.count()).select_from(MEDIA).where(*_in_scope(selection))
    return conn.execute(query).scalar_one()


def _json_names(conn: Connection, column: Any, from_: Any, *where: Any) -> Any:
    """`column` of the rows of `from_` matching `where`, as one JSON array per media row."""
    agg = (
        func.json_agg(column)
        if conn.dialect.name == "postgresql"
        else func.json_group_array(column)
    )
    return select(agg).select_from(from_).where(*where).scalar_subquery()


def select_candidates(
    conn: Connection, selection: PushSelection, after_id: int, limit: int
) -> list[Candidate]:
    """The next `limit` selected items after `after_id`, in id order: one statement."""
    wanted = _json_names(
        conn, TAG.c.name, _catalog_tags(),
        MEDIA_TAG.c.media_id == MEDIA.c.id, MEDIA_TAG.c.origin.in_(PUSHED_ORIGINS),
    )  # fmt: skip
    added = _json_names(
        conn, PUSHED.c.name, PUSHED, PUSHED.c.media_id == MEDIA.c.id, PUSHED.c.added
    )
    query = (
        select(
            MEDIA.c.id,
            MEDIA.c.external_id,
            MEDIA.c.kind,
            MEDIA.c.name,
            LIBRARY.c.external_id.label("library_external_id"),
            wanted.label("wanted"),
            added.label("added"),
        )
        .join(LIBRARY, LIBRARY.c.id == MEDIA.c.library_id)
        .where(MEDIA.c.id > after_id, *_selected_where(selection))
        .order_by(MEDIA.c.id)
        .limit(limit)
    )
    return [_candidate(row, selection.undo) for row in conn.execute(query)]


def _candidate(row: Any, undo: bool) -> Candidate:
    item = PushItem(row.external_id, row.kind, row.library_external_id)
    wanted = () if undo else tuple(sorted(set(_names(row.wanted))))
    return Candidate(row.id, row.name, item, wanted, frozenset(_names(row.added)))


def _names(value: Any) -> list[str]:
    # PostgreSQL hands back a decoded list (or None); SQLite a JSON text.
    names = json.loads(value) if isinstance(value, str) else value or []
    return [n for n in names if n is not None]


def iter_candidates(
    engine: Engine, selection: PushSelection, batch: int = SELECT_BATCH
) -> Iterator[list[Candidate]]:
    """Every item `selection` takes, in keyset batches (one short transaction each)."""
    after, left = 0, selection.limit
    while left is None or left > 0:
        size = batch if left is None else min(batch, left)
        with engine.connect() as conn:
            found = select_candidates(conn, selection, after, size)
        if not found:
            return
        yield found
        after = found[-1].media_id
        left = None if left is None else left - len(found)
        if len(found) < size:
            return


# -- the goal -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    """What an item's server tags become, and what push then records for it."""

    goal: tuple[str, ...]
    add: tuple[str, ...]
    remove: tuple[str, ...]
    record: dict[str, bool]  # catalog tag → whether push added it to the server

    @property
    def needed(self) -> bool:
        return bool(self.add or self.remove)


def plan_change(server_tags: Sequence[str], candidate: Candidate) -> Change:
    """The goal: the server's tags that push did not add, then each wanted catalog tag the
    server does not already carry under some spelling (`Sci-Fi` carries `sci_fi`)."""
    kept = [t for t in server_tags if t not in candidate.added]
    held = {clean_tag(t) for t in kept}
    new = [t for t in candidate.wanted if clean_tag(t) not in held]
    goal = (*kept, *new)
    record = {t: clean_tag(t) not in held for t in candidate.wanted}
    add = tuple(t for t in new if t not in server_tags)
    remove = tuple(t for t in server_tags if t not in goal)
    return Change(goal, add, remove, record)


# -- records ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """One item's result: the change made (or found unneeded), or the reason it failed."""

    candidate: Candidate
    change: Change | None = None
    error: str | None = None


def record_pushed(conn: Connection, outcomes: Sequence[Outcome], now: datetime) -> None:
    """Replace the record of every item that reached its goal, in two statements."""
    done = [o for o in outcomes if o.change is not None]
    if not done:
        return
    ids = [o.candidate.media_id for o in done]
    conn.execute(delete(PUSHED).where(PUSHED.c.media_id.in_(ids)))
    rows = [
        {"media_id": o.candidate.media_id, "name": name, "added": added, "pushed_at": now}
        for o in done
        for name, added in o.change.record.items()  # type: ignore[union-attr]
    ]
    if rows:
        conn.execute(PUSHED.insert(), rows)


# -- a run --------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class PushReport(JobReport):
    """The outcome of one `catalog push` of one server, filled in as it goes."""

    server: str = ""
    selected: int = 0
    pushed: int = 0
    unchanged: int = 0
    failed: int = 0
    retries: int = 0
    rate_limited: int = 0

    INTERNAL: ClassVar[tuple[str, ...]] = ("started", "retries", "rate_limited")
    RULES: ClassVar[dict[str, str]] = {
        OK: "every selected item written or already as wanted (or none selected)",
        PARTIAL: "some items written, and some failed, were left over, or the breaker stopped it",
        FAILED: "no write went through (every call failed, or the breaker gave up before any "
        "success), the server refused the token, or the guard refused the push",
    }

    def settle(self) -> str:
        """Failed when no write went through; partial when some did and an item failed, the
        breaker gave up, or an item was left over; what was written is recorded either way."""
        if not (self.pushed or self.unchanged) and (self.failed or self.error):
            self.error = self.error or "no write went through"
            return FAILED
        left_over = self.selected > self.pushed + self.unchanged + self.failed
        return PARTIAL if self.error or self.failed or left_over else OK

    def items(self) -> Items:
        return Items(self.selected, self.pushed, self.failed)

    def job_counts(self) -> dict[str, Any]:
        keys = ("selected", "pushed", "unchanged", "failed", "retries", "rate_limited")
        return {k: getattr(self, k) for k in keys}


ChangeSeen = Callable[[Candidate, Change], None]


@dataclass(frozen=True)
class PushOptions:
    """How one push goes: workers, record batches, the guard, and a dry run's report."""

    concurrency: int = 4
    batch_size: int = 100
    max_items: int = 0  # 0: max_share of the items in scope
    max_share: float = 0.5
    allow_many: bool = False
    dry_run: bool = False
    on_change: ChangeSeen | None = None  # told of every item whose server tags would change


def check_guard(selected: int, in_scope: int, options: PushOptions) -> None:
    """Refuse to change more items than `max_items` (or `max_share` of the library) allows:
    a wrong catalog (or a wrong --server) must not rewrite a whole server by accident."""
    cap = options.max_items or max(1, math.ceil(options.max_share * in_scope))
    if selected > cap and not options.allow_many:
        limit = (
            f"[push] max_items = {options.max_items:,}"
            if options.max_items
            else f"{options.max_share:.0%} of the {in_scope:,} items in scope ([push] max_share)"
        )
        raise PushRefused(
            f"push would change up to {selected:,} items, more than {limit}; "
            "run with --allow-many if that is meant (or push in steps with --limit)"
        )


@contextmanager
def push_lock(engine: Engine, server: str) -> Iterator[None]:
    """The push's own lock and its server's sync lock, so a push never overlaps a sync or a
    normalize of that server. Taken when the block is entered (by recorded_run, which reports
    a held lock) and both released when it ends, even when the second was the one held."""
    with job_lock(engine, "push", server), job_lock(engine, "sync", server):
        yield


async def run_push(
    engine: Engine,
    writer: TagWriter,
    breaker: CircuitBreaker,
    selection: PushSelection,
    report: PushReport,
    stats: HttpStats,
    options: PushOptions | None = None,
    progress: Progress | None = None,
    retention: Retention | int = Retention(),
) -> PushReport:
    """Push what `selection` takes as one recorded run (a dry run records nothing and writes
    nothing). Whatever stops it, what was written is recorded."""
    options, progress = options or PushOptions(), progress or QuietProgress()
    selection = _for_writer(selection, writer)
    report.server = selection.server
    try:
        if options.dry_run:
            with DbThread() as db:
                await _go(engine, db, writer, breaker, selection, report, options, progress)
            report.status = DRY_RUN
            return report
        lock = push_lock(engine, selection.server)
        recorded = recorded_run(engine, "push", selection.server, report, lock, retention)
        with recorded, DbThread() as db:
            await _go(engine, db, writer, breaker, selection, report, options, progress)
    finally:
        report.retries, report.rate_limited = stats.retries, stats.rate_limited
        report.duration_s = round(time.monotonic() - report.started, 3)
    return report


def _for_writer(selection: PushSelection, writer: TagWriter) -> PushSelection:
    left_alone = selection.kinds_left_alone | writer.kinds_left_alone
    return PushSelection(
        selection.server, selection.libraries, selection.limit, selection.undo, left_alone
    )


async def _go(
    engine: Engine,
    db: DbThread,
    writer: TagWriter,
    breaker: CircuitBreaker,
    selection: PushSelection,
    report: PushReport,
    options: PushOptions,
    progress: Progress,
) -> None:
    await db.run(in_connection, engine, check_libraries, selection)
    report.selected = await db.run(in_connection, engine, count_selected, selection)
    in_scope = await db.run(in_connection, engine, count_in_scope, selection)
    if not selection.undo:  # taking back only what push added is never a mass change
        check_guard(report.selected, in_scope, options)
    progress.started(TASK, report.selected)
    await _Push(engine, db, writer, breaker, report, options, progress).go(selection)


class _Push:
    """One run's moving parts: a feeder, `concurrency` workers and one recorder."""

    def __init__(
        self,
        engine: Engine,
        db: DbThread,
        writer: TagWriter,
        breaker: CircuitBreaker,
        report: PushReport,
        options: PushOptions,
        progress: Progress,
    ) -> None:
        self.engine, self.db, self.writer, self.breaker = engine, db, writer, breaker
        self.report, self.options, self.progress = report, options, progress
        self.todo: asyncio.Queue[Candidate | None] = asyncio.Queue(maxsize=2 * options.concurrency)
        self.done: asyncio.Queue[Outcome | None] = asyncio.Queue()
        self.stop: BaseException | None = None

    async def go(self, selection: PushSelection) -> None:
        recorder = asyncio.create_task(self._record_loop())
        workers = [asyncio.create_task(self._work()) for _ in range(self.options.concurrency)]
        try:
            await self._feed(selection, len(workers))
            await asyncio.gather(*workers)
        finally:
            # Cancelled or not, what was written is recorded before the run ends.
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            self.done.put_nowait(None)
            await asyncio.shield(recorder)
        if isinstance(self.stop, CircuitOpen):
            self.report.error = str(self.stop)
        elif self.stop is not None:
            raise self.stop

    async def _feed(self, selection: PushSelection, workers: int) -> None:
        batches = iter_candidates(self.engine, selection)
        while self.stop is None:
            batch = await self.db.run(next, batches, None)
            if batch is None:
                break
            for candidate in batch:
                if self.stop is not None:
                    break
                await self.todo.put(candidate)
        for _ in range(workers):
            await self.todo.put(None)

    async def _work(self) -> None:
        while (candidate := await self.todo.get()) is not None:
            if self.stop is not None:
                continue  # drain, so the feeder is never stuck on a full queue
            try:
                self.done.put_nowait(await self._push_one(candidate))
            except (SourceAuthError, CircuitOpen) as exc:  # the whole run must stop
                self.stop = self.stop or exc

    async def _push_one(self, candidate: Candidate) -> Outcome:
        await self.breaker.admit()
        try:
            current = await self.writer.read(candidate.item)
            change = plan_change(current.tags, candidate)
            if change.needed and self.options.on_change is not None:
                self.options.on_change(candidate, change)
            if change.needed and not self.options.dry_run:
                await self._write(candidate, current, change)
        except SourceAuthError:
            raise
        except SourceError as exc:
            self.breaker.failure(str(exc))
            return Outcome(candidate, error=str(exc))
        self.breaker.success()
        return Outcome(candidate, change)

    async def _write(self, candidate: Candidate, current: ServerTags, change: Change) -> None:
        """Write, and when the run is cancelled meanwhile let the write finish (within its
        deadline) and record it: a write the server applied but nobody recorded would look
        like the server's own tag to the next push, which then could not undo it."""
        write = asyncio.ensure_future(self.writer.write(candidate.item, current, change.goal))
        try:
            await asyncio.shield(write)
        except asyncio.CancelledError:
            await asyncio.wait([write])
            if not write.cancelled() and write.exception() is None:
                self.done.put_nowait(Outcome(candidate, change))
            raise

    async def _record_loop(self) -> None:
        batch: list[Outcome] = []
        while (outcome := await self.done.get()) is not None:
            batch.append(outcome)
            if len(batch) >= self.options.batch_size:
                await self._record(batch)
                batch = []
        if batch:
            await self._record(batch)

    async def _record(self, batch: list[Outcome]) -> None:
        if not self.options.dry_run:
            await self.db.run(in_transaction, self.engine, record_pushed, batch, utcnow())
        for outcome in batch:
            if outcome.change is None:
                self.report.failed += 1
                log.warning("%s: %s", outcome.candidate.name, outcome.error)
            elif outcome.change.needed:
                self.report.pushed += 1
            else:
                self.report.unchanged += 1
        self.progress.advanced(TASK, len(batch))
