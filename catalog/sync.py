"""The sync pipeline: a source's pages → chunks → set-based upserts → missing items marked.

Pages are pulled lazily with one prefetched while earlier chunks are written on database
threads (two side by side on PostgreSQL, see WRITE_LANES), so memory stays flat whatever the
library size. One transaction per chunk: a run stopped at any moment keeps its committed
chunks, in whatever order they committed, and the next run converges.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

from sqlalchemy import Connection, Engine, delete, func, select, update

from catalog.aio import DbThread, prefetch
from catalog.config import ServerConfig
from catalog.db.engine import in_transaction
from catalog.db.locks import job_lock
from catalog.db.models import LIBRARY, LINK_TABLES, MEDIA, SERVER
from catalog.db.refused import crossed, refusal, refused_by
from catalog.db.seen import SeenIds
from catalog.db.writers import ChunkCounts, writer_for
from catalog.errors import ConfigError, MassDeleteRefused
from catalog.heap import bulk_pass
from catalog.http import HttpStats
from catalog.items import InvalidItem, MediaItem, RawItem
from catalog.items import Library as SourceLibrary
from catalog.jobs import Items, JobReport, recorded_run
from catalog.progress import Progress
from catalog.runs import FAILED, OK, PARTIAL, Retention, utcnow
from catalog.sources import Source

log = logging.getLogger(__name__)

# MinDateLastSaved is compared with the server's clock; look back a little further so clock
# skew can't hide an edit. Re-reading an unchanged item costs no write.
SINCE_LAST_MARGIN = timedelta(minutes=10)
# Chunks queued for the database thread while the next one fills. Two, not one: the thread
# waits for the interpreter's lock after every round trip (up to 5 ms, while the event loop
# digests pages), and with one chunk queued the event loop then waited for it in turn.
WRITES_AHEAD = 2
# Connections that write chunks side by side, taking turns, each on a thread of its own: while
# one's server process works through a chunk, the next is being sorted and built on the other,
# and a multi-core server runs both. SQLite has one writer at a time.
WRITE_LANES = {"postgresql": 2}
# Times a chunk is written again after crossing the chunk beside it (catalog.db.refused.crossed)
# before its items are taken one by one.
CROSSED_RETRIES = 3


@dataclass
class _Lane:
    """Where chunks are written: a database thread, its connection for the chunks' writes, and
    one outside any transaction where a chunk is sorted in one round trip (an unchanged chunk
    needs no other). Kept for the pass: a checkout per chunk cost a ping."""

    db: DbThread
    conn: Connection
    reads: Connection


@dataclass
class SyncOptions:
    """What a sync should do, beyond which server."""

    libraries: tuple[str, ...] = ()
    since_last: bool = False
    prune: bool = False
    allow_mass_delete: bool = False
    chunk_size: int = 1000
    mass_delete_share: float = 0.5
    # A pass that wrote this many items refreshes the planner's statistics (writer.statistics).
    analyze_after: int = 10_000


@dataclass
class LibraryResult:
    """What a sync did to one library."""

    name: str
    full: bool = True
    total: int | None = None
    seen: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    missing: int = 0
    pruned: int = 0
    error: str | None = None

    def add(self, counts: ChunkCounts) -> None:
        """Add one chunk's counts."""
        self.inserted += counts.inserted
        self.updated += counts.updated
        self.unchanged += counts.unchanged
        self.skipped += len(counts.invalid)

    def summary(self) -> str:
        return (
            f"{self.seen:,} seen, {self.inserted:,} new, {self.updated:,} changed, "
            f"{self.unchanged:,} unchanged, {self.skipped:,} skipped, {self.missing:,} missing"
        )


@dataclass
class SyncReport(JobReport):
    """The outcome of one `catalog sync`, filled in as it goes (so an interrupted run has one)."""

    server: str
    libraries: list[LibraryResult] = field(default_factory=list)
    http: HttpStats = field(default_factory=HttpStats)

    RULES: ClassVar[dict[str, str]] = {
        OK: "every library synced, no item skipped",
        PARTIAL: "some items failed validation and were skipped",
        FAILED: "a library was refused (mass-delete guard), or the server or database failed",
    }

    def settle(self) -> str:
        errors = [lib.error for lib in self.libraries if lib.error]
        if errors:
            self.error = errors[0]
            return FAILED
        return PARTIAL if any(lib.skipped for lib in self.libraries) else OK

    def items(self) -> Items:
        libs = self.libraries
        return Items(
            seen=sum(lib.seen for lib in libs),
            written=sum(lib.inserted + lib.updated for lib in libs),
            failed=sum(lib.skipped for lib in libs),
        )

    def job_counts(self) -> dict[str, Any]:
        return {"libraries": [asdict(lib) for lib in self.libraries], "http": asdict(self.http)}


async def run_sync(
    engine: Engine,
    source: Source,
    server: ServerConfig,
    options: SyncOptions,
    progress: Progress,
    report: SyncReport,
    keep_runs: int | Retention = Retention(),
) -> SyncReport:
    """Sync `server` into the catalog as one recorded run under the job lock."""
    lock = job_lock(engine, "sync", server.name)
    run = recorded_run(engine, "sync", server.name, report, lock, keep_runs)
    with run, DbThread() as db, bulk_pass():
        await _sync_server(engine, db, source, server, options, progress, report)
    return report


async def _sync_server(
    engine: Engine,
    db: DbThread,
    source: Source,
    server: ServerConfig,
    options: SyncOptions,
    progress: Progress,
    report: SyncReport,
) -> None:
    wanted = options.libraries or server.libraries
    libraries = select_libraries(
        await source.libraries(), wanted, source.syncs_by_default, server.name
    )
    server_id = await db.run(in_transaction, engine, register_server, server)
    for library in libraries:
        library_id, last_sync = await db.run(
            in_transaction, engine, register_library, server_id, library
        )
        since = last_sync - SINCE_LAST_MARGIN if options.since_last and last_sync else None
        result = LibraryResult(library.name, full=since is None)
        report.libraries.append(result)
        pipeline = _LibrarySync(engine, db, source, options, progress, result, last_sync is None)
        await pipeline.run(library, library_id, since)


def select_libraries(
    available: list[SourceLibrary],
    wanted: tuple[str, ...],
    by_default: Callable[[SourceLibrary], bool],
    server: str = "",
) -> list[SourceLibrary]:
    """The libraries to sync: the ones named (case-insensitive), else those the source syncs
    by default (its video libraries)."""
    if not wanted:
        return [lib for lib in available if by_default(lib)]
    by_name = {lib.name.casefold(): lib for lib in available}
    unknown = [name for name in wanted if name.casefold() not in by_name]
    if unknown:
        names = ", ".join(repr(lib.name) for lib in available) or "none"
        where = f"server {server!r}" if server else "the server"
        raise ConfigError(f"no library named {unknown[0]!r} on {where} (it has: {names})")
    return [by_name[name.casefold()] for name in dict.fromkeys(wanted)]


class _LibrarySync:
    """One library's pass: stream pages, write chunks, then reconcile what went missing."""

    def __init__(
        self,
        engine: Engine,
        db: DbThread,
        source: Source,
        options: SyncOptions,
        progress: Progress,
        result: LibraryResult,
        first: bool,
    ) -> None:
        self.engine, self.db, self.source = engine, db, source
        self.options, self.progress, self.result = options, progress, result
        self.writer = writer_for(engine.dialect.name)
        # Parse pages as they arrive (see _write_chunk): from the start on a library's first
        # sync, whose items are all new.
        self.eager = first
        self.full = True  # a full pass notes the unchanged items it sees, for _reconcile
        self.seen = SeenIds()
        # The lanes chunks are written on: the first opened with the pass, the others once
        # chunks are mostly new (an unchanged chunk is one round trip, and a second thread
        # waiting for the interpreter's lock only slowed a re-sync down).
        self.lanes: list[_Lane] = []
        self.lane_limit = WRITE_LANES.get(engine.dialect.name, 1)
        self.turn = 0
        self.closing = contextlib.AsyncExitStack()
        self.recording = threading.Lock()  # the lanes count what they wrote into one result
        # A library empty when the pass began has its chunks written unsorted, all taken for
        # new: an item the server repeats fails on media's key, as a crossing does, and from
        # then on every chunk is sorted. On PostgreSQL, where sorting costs a round trip and an
        # index probe an item (a fifth of what PostgreSQL spends on a first sync besides the
        # rows themselves); SQLite's sort runs in-process.
        self.unsorted = False

    async def run(self, library: SourceLibrary, library_id: int, since: datetime | None) -> None:
        self.full = since is None
        async with self.closing:
            await self._open_lane(self.db)
            if self.lane_limit > 1:
                self.unsorted = await self.db.run(is_empty, self.lanes[0].reads, library_id)
            await self._stream(library, library_id, since)

    async def _open_lane(self, db: DbThread) -> None:
        conn = await db.run(self.engine.connect)
        self.closing.push_async_callback(db.run, conn.close)
        reads = await db.run(_autocommit, self.engine)
        self.closing.push_async_callback(db.run, reads.close)
        self.lanes.append(_Lane(db, conn, reads))

    async def _widen(self) -> None:
        """Open the lanes not yet open, each on a thread of its own."""
        while len(self.lanes) < self.lane_limit:
            await self._open_lane(self.closing.enter_context(DbThread()))

    def _next_lane(self) -> _Lane:
        """Turns while chunks are mostly new, else the first lane."""
        if not self.eager:
            return self.lanes[0]
        self.turn += 1
        return self.lanes[self.turn % len(self.lanes)]

    async def _stream(
        self, library: SourceLibrary, library_id: int, since: datetime | None
    ) -> None:
        seen_at = utcnow()
        items: list[RawItem] = []
        parsed: dict[str, MediaItem | InvalidItem] = {}
        # The chunks handed to the lanes (WRITES_AHEAD a lane at most) and the one being
        # filled from the network: pages never wait for a write they don't depend on.
        writing: deque[asyncio.Future[None]] = deque()
        try:
            async for page in prefetch(self.source.pages(library, since)):
                if page.total is not None:
                    self.result.total = page.total
                    self.progress.started(library.name, page.total)
                items.extend(page.items)
                if self.eager:
                    parsed.update((raw.digest, self.source.parse(raw)) for raw in page.items)
                self.result.seen += len(page.items)
                self.progress.advanced(self.result.name, len(page.items))
                if len(items) >= self.options.chunk_size:
                    if self.eager:
                        await self._widen()
                    if len(writing) >= WRITES_AHEAD * len(self.lanes):
                        await writing.popleft()
                    writing.append(
                        asyncio.ensure_future(self._write(library_id, items, parsed, seen_at))
                    )
                    items, parsed = [], {}
            while writing:
                await writing.popleft()
        finally:
            for chunk in writing:
                chunk.cancel()  # a chunk in flight still commits or rolls back whole
            await asyncio.gather(*writing, return_exceptions=True)
        await self._write(library_id, items, parsed, seen_at)
        if self.full:
            await self._reconcile(library_id, library.name, seen_at)
        await self.db.run(in_transaction, self.engine, mark_synced, library_id, seen_at, self.full)
        if self.result.inserted + self.result.updated >= self.options.analyze_after:
            await self._refresh_statistics()
        self.progress.finished(self.result.name, self.result.seen, self.result.summary())

    async def _refresh_statistics(self) -> None:
        """The writer's statistics statements dealt out to the lanes: side by side on two, in
        turn on one (a lane's thread runs one thing at a time)."""
        dealt = zip(itertools.cycle(self.lanes), self.writer.statistics())
        await asyncio.gather(*(lane.db.run(lane.reads.exec_driver_sql, sql) for lane, sql in dealt))

    async def _write(
        self,
        library_id: int,
        items: list[RawItem],
        parsed: dict[str, MediaItem | InvalidItem],
        seen_at: datetime,
    ) -> None:
        size = self.options.chunk_size
        for start in range(0, len(items), size):
            chunk = items[start : start + size]
            lane = self._next_lane()
            await lane.db.run(self._write_chunk, lane, library_id, chunk, parsed, seen_at)

    def _write_chunk(
        self,
        lane: _Lane,
        library_id: int,
        chunk: list[RawItem],
        parsed: dict[str, MediaItem | InvalidItem],
        seen_at: datetime,
        crossings: int = 0,
    ) -> None:
        """On the lane's thread: one transaction, counted as soon as it commits (so an
        interrupted run still reports what it wrote). A chunk that crossed the one beside it
        is written again; a chunk the database refuses is halved until the refused items are
        alone: they are skipped with the database's reason, and statements grow with the
        number of bad items only."""

        def parse(raw: RawItem) -> MediaItem | InvalidItem:
            return parsed.get(raw.digest) or self.source.parse(raw)

        try:
            unsorted = self.unsorted and not crossings
            sorted_chunk = self.writer.sort_chunk(lane.reads, library_id, chunk, unsorted)
            with lane.conn.begin():
                counts = self.writer.write_chunk(
                    lane.conn, library_id, sorted_chunk, parse, seen_at
                )
        except Exception as exc:
            if self.lane_limit > 1 and crossings < CROSSED_RETRIES and crossed(exc):
                self.unsorted = False
                self._write_chunk(lane, library_id, chunk, parsed, seen_at, crossings + 1)
            elif not isinstance(exc, refused_by(self.engine.dialect.name)):
                raise
            elif len(chunk) == 1:
                self._refused(lane, library_id, chunk[0], refusal(exc), seen_at)
            else:
                middle = len(chunk) // 2
                for part in (chunk[:middle], chunk[middle:]):
                    self._write_chunk(lane, library_id, part, parsed, seen_at)
            return
        with self.recording:
            self._record(counts)

    def _record(self, counts: ChunkCounts) -> None:
        self.result.add(counts)
        if self.full:
            self.seen.add(counts.seen)
        # While chunks are mostly new (a first sync), parse on the event loop's thread as pages
        # arrive, in parallel with the lanes' writing; once they are mostly unchanged (a
        # re-sync), leave parsing to the writer, which skips the unchanged items.
        self.eager = counts.inserted + counts.updated > counts.unchanged
        for item in counts.invalid:
            self.progress.item_skipped(self.result.name, item.external_id, item.reason)

    def _refused(
        self, lane: _Lane, library_id: int, raw: RawItem, reason: str, seen_at: datetime
    ) -> None:
        """Skip and count an item the database refused; if the catalog holds it, it is still on
        the server: stamp it seen, so it is not marked missing."""
        item = InvalidItem(raw.external_id, f"refused by the database: {reason}")
        if raw.external_id:
            with lane.conn.begin():
                self.writer.touch(lane.conn, library_id, [], [raw.external_id], seen_at)
        with self.recording:
            self.result.skipped += 1
            self.progress.item_skipped(self.result.name, item.external_id, item.reason)

    async def _reconcile(self, library_id: int, name: str, seen_at: datetime) -> None:
        try:
            missing, pruned = await self.db.run(
                in_transaction, self.engine, mark_missing, library_id, name, seen_at,
                self.options, self.seen,
            )  # fmt: skip
        except MassDeleteRefused as exc:
            self.result.error = str(exc)
            return
        self.result.missing, self.result.pruned = missing, pruned


def _autocommit(engine: Engine) -> Connection:
    return engine.connect().execution_options(isolation_level="AUTOCOMMIT")


# -- database steps (each runs inside one transaction on the database thread) ---------------


def register_server(conn: Connection, server: ServerConfig) -> int:
    """The catalog id of `server`, recorded (or its kind and URL refreshed) by name."""
    found = conn.execute(select(SERVER.c.id).where(SERVER.c.name == server.name)).scalar()
    values = {"name": server.name, "kind": server.kind, "url": server.url}
    if found is None:
        return conn.execute(SERVER.insert().returning(SERVER.c.id), values).scalar_one()
    conn.execute(update(SERVER).where(SERVER.c.id == found).values(values))
    return found


def register_library(
    conn: Connection, server_id: int, library: SourceLibrary
) -> tuple[int, datetime | None]:
    """(library id, start of its last completed sync), recording the library if new."""
    where = (LIBRARY.c.server_id == server_id, LIBRARY.c.external_id == library.external_id)
    row = conn.execute(select(LIBRARY.c.id, LIBRARY.c.last_sync_at).where(*where)).first()
    values = {"name": library.name, "kind": library.kind}
    if row is None:
        values.update(server_id=server_id, external_id=library.external_id)
        return conn.execute(LIBRARY.insert().returning(LIBRARY.c.id), values).scalar_one(), None
    conn.execute(update(LIBRARY).where(LIBRARY.c.id == row.id).values(values))
    return row.id, row.last_sync_at


def is_empty(conn: Connection, library_id: int) -> bool:
    """Whether the catalog holds no item of the library."""
    held = select(MEDIA.c.id).where(MEDIA.c.library_id == library_id).limit(1)
    return conn.execute(held).first() is None


def mark_synced(conn: Connection, library_id: int, started_at: datetime, full: bool) -> None:
    values = {"last_sync_at": started_at}
    if full:
        values["last_full_sync_at"] = started_at
    conn.execute(update(LIBRARY).where(LIBRARY.c.id == library_id).values(values))


def mark_missing(
    conn: Connection,
    library_id: int,
    name: str,
    seen_at: datetime,
    options: SyncOptions,
    seen: SeenIds,
) -> tuple[int, int]:
    """After a full pass: items not seen get `missing_since` (or are deleted with prune).
    Refuses when that would hit more than the allowed share of the library. Seen: written or
    stamped by this pass (`last_seen_at`), or found unchanged by it (`seen`)."""
    with seen.unseen(conn, MEDIA.c.id) as not_noted:
        unseen = (MEDIA.c.library_id == library_id, MEDIA.c.last_seen_at != seen_at, not_noted)
        return _mark_unseen(conn, library_id, name, seen_at, options, unseen)


def _mark_unseen(
    conn: Connection,
    library_id: int,
    name: str,
    seen_at: datetime,
    options: SyncOptions,
    unseen: tuple[Any, ...],
) -> tuple[int, int]:
    # Mark first, judge after: a refusal rolls the transaction back, and a pass that finds
    # nothing gone (the usual one) never counts the library.
    newly = conn.execute(
        update(MEDIA).where(*unseen, MEDIA.c.missing_since.is_(None)).values(missing_since=seen_at)
    ).rowcount
    present = 0
    if newly:  # the items present before this pass: those still present, and those just marked
        still = select(func.count()).where(
            MEDIA.c.library_id == library_id, MEDIA.c.missing_since.is_(None)
        )
        present = newly + conn.execute(still).scalar_one()
    if present and newly > options.mass_delete_share * present and not options.allow_mass_delete:
        raise MassDeleteRefused(
            f"library {name!r}: refusing to mark {newly} of {present} items missing "
            f"(more than {options.mass_delete_share:.0%}); if the server really lost them, "
            "run again with --allow-mass-delete"
        )
    pruned = delete_media(conn, select(MEDIA.c.id).where(*unseen)) if options.prune else 0
    return newly, pruned


def forget_server(conn: Connection, name: str) -> int:
    """Delete a server's libraries and items, with their links (its run records stay); the
    number of items deleted. The demo starts afresh with this."""
    server_id = select(SERVER.c.id).where(SERVER.c.name == name).scalar_subquery()
    libraries = select(LIBRARY.c.id).where(LIBRARY.c.server_id == server_id)
    deleted = delete_media(conn, select(MEDIA.c.id).where(MEDIA.c.library_id.in_(libraries)))
    conn.execute(delete(LIBRARY).where(LIBRARY.c.server_id == server_id))
    return deleted


def delete_media(conn: Connection, ids: Any) -> int:
    """Delete media rows (a select of ids) and, in the same transaction, every link to them:
    link tables carry no foreign keys, so nothing else would."""
    for table in LINK_TABLES:
        conn.execute(delete(table).where(table.c.media_id.in_(ids)))
    return conn.execute(delete(MEDIA).where(MEDIA.c.id.in_(ids))).rowcount
