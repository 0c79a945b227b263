"""Set-based writers: a chunk of parsed items becomes a fixed number of statements.

`ChunkWriter` holds the plan (classify by content hash, insert, update, stamp, relink) and the
statements both dialects share. The bulk steps are dialect-specific, because that is where the
time goes: SQLite runs executemany over plain tuples in-process (going through SQLAlchemy's
per-row parameter processing would cost more than SQLite itself), PostgreSQL runs one
statement over unnest()ed arrays instead of one round trip per row. Callers own the transaction.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import count
from typing import Any

import msgspec
from sqlalchemy import (
    ARRAY,
    Connection,
    String,
    any_,
    bindparam,
    delete,
    literal,
    select,
    update,
)

from catalog.db.models import (
    GENRE,
    MEDIA,
    MEDIA_GENRE,
    MEDIA_TAG,
    MEDIA_TAGLINE,
    PROCESS_RUN,
    PUSHED_TAG,
)
from catalog.digest import is_earlier
from catalog.items import InvalidItem, MediaItem, RawItem
from catalog.tags.aliases import KnownNames, ensure_names, resolve_tags

SERVER_ORIGIN = "server"
CONTENT_COLUMNS = (
    "kind", "name", "sort_name", "overview", "year", "premiere", "community_rating",
    "critic_rating", "official_rating", "subtitles", "runtime_s", "parent_external_id",
    "season", "episode", "provider_ids", "added_at", "content_hash",
)  # fmt: skip

# An item's server-origin links: (media id, tag ids in order, genre ids by position, taglines)
Links = tuple[int, list[int], list[int], tuple[str, ...]]


@dataclass
class ChunkCounts:
    """What one chunk did to the catalog, and the items it had to skip; `seen`: the catalog
    ids of the unchanged items, which nothing wrote (a full pass remembers them, see
    catalog.db.seen)."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    invalid: list[InvalidItem] = field(default_factory=list)
    seen: list[int] = field(default_factory=list)


@dataclass
class SortedOut:
    """A chunk's items by what the catalog holds: `fresh` (external ids) to parse and write,
    of which `changed` are held (their catalog ids); `back`: ids of unchanged items that were
    marked missing; `seen`: ids of the items simply unchanged; `redigest`: (id, stored digest,
    digest) of unchanged items whose stored digest is of the earlier kind (catalog.digest)."""

    fresh: set[str] = field(default_factory=set)
    changed: dict[str, int] = field(default_factory=dict)
    back: list[int] = field(default_factory=list)
    seen: list[int] = field(default_factory=list)
    redigest: list[tuple[int, str, str]] = field(default_factory=list)

    @property
    def unchanged(self) -> int:
        return len(self.seen) + len(self.back)

    @classmethod
    def of(
        cls,
        rows: Iterable[Sequence[Any]],
        raws: dict[str, RawItem],
        seen: list[int],
    ) -> SortedOut:
        """From (external id, catalog id, stored digest, whether missing) of the items not
        simply unchanged (a new one has no id), every item by external id, and the ids of the
        simply unchanged."""
        out = cls(seen=seen)
        for ext, id_, stored, missing in rows:
            raw = raws[ext]
            if id_ is None:
                out.fresh.add(ext)
            elif stored == raw.digest or out._earlier(id_, stored, raw):
                (out.back if missing else out.seen).append(id_)
            else:
                out.fresh.add(ext)
                out.changed[ext] = id_
        return out

    def _earlier(self, id_: int, stored: str, raw: RawItem) -> bool:
        if not is_earlier(stored, raw.raw):
            return False
        self.redigest.append((id_, stored, raw.digest))
        return True


@dataclass
class SortedChunk:
    """A chunk as `sort_chunk` found it: the items to parse and write (`fresh`: new, changed
    or without an id), and how the others stand."""

    fresh: list[RawItem]
    sorted_out: SortedOut

    @property
    def writes(self) -> bool:
        """Whether writing it changes anything (an unchanged chunk needs no transaction)."""
        return bool(self.fresh or self.sorted_out.back or self.sorted_out.redigest)


Parser = Callable[[RawItem], MediaItem | InvalidItem]


def writer_for(dialect_name: str) -> ChunkWriter:
    return PostgresChunkWriter() if dialect_name == "postgresql" else SqliteChunkWriter()


class ChunkWriter(ABC):
    """Upserts a chunk of one library's items on (library, external id), by content digest.
    One writer serves one pass: it keeps the tag and genre names the pass has met."""

    def __init__(self) -> None:
        self.names = KnownNames()

    def upsert_chunk(
        self,
        conn: Connection,
        library_id: int,
        chunk: Sequence[RawItem],
        parse: Parser,
        seen_at: datetime,
    ) -> ChunkCounts:
        """`sort_chunk` then `write_chunk`, on one connection in the caller's transaction."""
        sorted_chunk = self.sort_chunk(conn, library_id, chunk)
        return self.write_chunk(conn, library_id, sorted_chunk, parse, seen_at)

    def sort_chunk(
        self, conn: Connection, library_id: int, chunk: Sequence[RawItem], all_new: bool = False
    ) -> SortedChunk:
        """The chunk's items by what the catalog holds, read in one statement that writes
        nothing: it may run on a connection of its own, outside any transaction. `all_new`:
        take every item for new without asking (the caller knows the library was empty, and
        that an item it already wrote fails on media's key)."""
        raws = list({r.external_id or str(n): r for n, r in enumerate(chunk)}.values())
        if all_new:
            return SortedChunk(raws, SortedOut())
        sorted_out = self.classify(conn, library_id, [r for r in raws if r.external_id])
        fresh = [r for r in raws if not r.external_id or r.external_id in sorted_out.fresh]
        return SortedChunk(fresh, sorted_out)

    def write_chunk(
        self,
        conn: Connection,
        library_id: int,
        sorted_chunk: SortedChunk,
        parse: Parser,
        seen_at: datetime,
    ) -> ChunkCounts:
        """Items whose digest matches the catalog's are neither parsed nor written (their ids
        come back in `seen`, for the reconciliation of a full pass); the rest are parsed, then
        inserted or rewritten with their links. An item back from missing, or an invalid item
        the catalog holds, is stamped seen: it is on the server."""
        fresh, sorted_out = sorted_chunk.fresh, sorted_chunk.sorted_out
        counts = ChunkCounts()
        if sorted_chunk.writes:
            self.before_writes(conn)
            counts = self.write_fresh(conn, library_id, fresh, sorted_out, parse, seen_at)
            redigest(conn, sorted_out.redigest)
        counts.unchanged, counts.seen = sorted_out.unchanged, sorted_out.seen
        return counts

    def write_fresh(
        self,
        conn: Connection,
        library_id: int,
        fresh: list[RawItem],
        sorted_out: SortedOut,
        parse: Parser,
        seen_at: datetime,
    ) -> ChunkCounts:
        """Parse the new and changed items and write them with their links; stamp the items
        back from missing, and the invalid ones the catalog holds."""
        existing = sorted_out.changed
        parsed = [parse(r) for r in fresh]
        items = [p for p in parsed if isinstance(p, MediaItem)]
        invalid = [p for p in parsed if isinstance(p, InvalidItem)]
        new = [i for i in items if i.external_id not in existing]
        changed = [i for i in items if i.external_id in existing]
        ids = self.insert_media(conn, library_id, new, seen_at)
        changed_ids = {i.external_id: existing[i.external_id] for i in changed}
        self.update_media(conn, changed, changed_ids, seen_at)
        still_there = [i.external_id for i in invalid if i.external_id in existing]
        self.touch(conn, library_id, sorted_out.back, still_there, seen_at)
        stale = list(changed_ids.values())
        self.replace_links(conn, [*new, *changed], {**ids, **changed_ids}, stale)
        return ChunkCounts(len(new), len(changed), invalid=invalid)

    def before_writes(self, conn: Connection) -> None:
        """Set up a transaction that is about to write (nothing to do on SQLite)."""
        return None

    def statistics(self) -> list[str]:
        """After a pass that wrote many rows, the statements that let the planner know; each
        may run on a connection of its own, outside any transaction (SQLite's needs none)."""
        return []

    def classify(self, conn: Connection, library_id: int, raws: list[RawItem]) -> SortedOut:
        """Sort `raws` by what the catalog holds. Here in Python, which SQLite runs in-process
        anyway."""
        if not raws:
            return SortedOut()
        query = select(
            MEDIA.c.external_id, MEDIA.c.id, MEDIA.c.content_hash, MEDIA.c.missing_since
        ).where(
            MEDIA.c.library_id == library_id,
            self.in_(MEDIA.c.external_id, [r.external_id for r in raws]),
        )
        held = {ext: (id_, digest, missing) for ext, id_, digest, missing in conn.execute(query)}
        by_id = {r.external_id: r for r in raws}
        rows, unchanged = [], []
        for ext, raw in by_id.items():
            id_, stored, missing = held.get(ext, (None, None, None))
            if id_ is not None and stored == raw.digest and missing is None:
                unchanged.append(id_)
            else:
                rows.append((ext, id_, stored, missing is not None))
        return SortedOut.of(rows, by_id, unchanged)

    def select_existing(
        self, conn: Connection, library_id: int, external_ids: list[str]
    ) -> dict[str, tuple[int, str]]:
        """(id, content digest) of the items of `library_id` among `external_ids`."""
        if not external_ids:
            return {}
        query = select(MEDIA.c.external_id, MEDIA.c.id, MEDIA.c.content_hash).where(
            MEDIA.c.library_id == library_id, self.in_(MEDIA.c.external_id, external_ids)
        )
        return {ext: (id_, digest) for ext, id_, digest in conn.execute(query)}

    def in_(self, column: Any, values: list[Any]) -> Any:
        return column.in_(values)

    def touch(
        self,
        conn: Connection,
        library_id: int,
        ids: list[int],
        external_ids: Sequence[str],
        seen_at: datetime,
    ) -> None:
        values = {"last_seen_at": seen_at, "missing_since": None}
        if ids:
            conn.execute(update(MEDIA).where(self.in_(MEDIA.c.id, ids)).values(values))
        if external_ids:
            where = (MEDIA.c.library_id == library_id, MEDIA.c.external_id.in_(external_ids))
            conn.execute(update(MEDIA).where(*where).values(values))

    def replace_links(
        self, conn: Connection, items: list[MediaItem], ids: dict[str, int], stale: list[int]
    ) -> None:
        """Make the server-origin tags, genres and taglines of `items` what the server says."""
        if stale:
            for table, origin in _LINKS:
                where = [self.in_(table.c.media_id, stale)]
                if origin is not None:
                    where.append(table.c.origin == SERVER_ORIGIN)
                conn.execute(delete(table).where(*where))
        if not items:
            return
        tag_ids = resolve_tags(conn, {t for i in items for t in i.tags}, self.names.tags)
        pushed = _added_by_push(conn, stale)
        names = {g for i in items for g in i.genres}
        genre_ids = ensure_names(conn, GENRE, names, self.names.genres)
        links: list[Links] = []
        # By catalog id, each item's tags by tag id: the rows come out in key order.
        for item in sorted(items, key=lambda i: ids[i.external_id]):
            media_id, tags = ids[item.external_id], item.tags
            if pushed:
                tags = tuple(t for t in tags if (media_id, t) not in pushed)
            linked = {tag_ids[t] for t in tags}
            linked.discard(None)  # a tag normalization dropped
            genres = [genre_ids[g] for g in item.genres]
            links.append((media_id, sorted(linked), genres, item.taglines))  # type: ignore[type-var]
        self.insert_links(conn, links)

    # The bulk steps, per dialect.

    @abstractmethod
    def insert_media(
        self, conn: Connection, library_id: int, items: list[MediaItem], seen_at: datetime
    ) -> dict[str, int]:
        """Insert new items; their ids by external id."""

    @abstractmethod
    def update_media(
        self, conn: Connection, items: list[MediaItem], ids: dict[str, int], seen_at: datetime
    ) -> None:
        """Rewrite changed items (`ids`: their catalog ids by external id)."""

    @abstractmethod
    def insert_links(self, conn: Connection, links: list[Links]) -> None:
        """Insert server-origin links of items whose old links are gone."""


class SqliteChunkWriter(ChunkWriter):
    """SQLite: executemany over tuples already in SQLite's storage formats."""

    def insert_media(
        self, conn: Connection, library_id: int, items: list[MediaItem], seen_at: datetime
    ) -> dict[str, int]:
        if not items:
            return {}
        seen = _sqlite_datetime(seen_at)
        columns = ("library_id", "external_id", "first_seen_at", "updated_at", "last_seen_at")
        rows = [(library_id, i.external_id, seen, seen, seen, *_sqlite_content(i)) for i in items]
        names = ", ".join((*columns, *CONTENT_COLUMNS))
        marks = ", ".join("?" * (len(columns) + len(CONTENT_COLUMNS)))
        conn.exec_driver_sql(f"INSERT INTO media ({names}) VALUES ({marks})", rows)
        found = self.select_existing(conn, library_id, [i.external_id for i in items])
        return {external_id: id_ for external_id, (id_, _) in found.items()}

    def update_media(
        self, conn: Connection, items: list[MediaItem], ids: dict[str, int], seen_at: datetime
    ) -> None:
        if not items:
            return
        seen = _sqlite_datetime(seen_at)
        rows = [(*_sqlite_content(i), seen, seen, ids[i.external_id]) for i in items]
        assignments = ", ".join(f"{c} = ?" for c in CONTENT_COLUMNS)
        conn.exec_driver_sql(
            f"UPDATE media SET {assignments}, updated_at = ?, last_seen_at = ?, "
            "missing_since = NULL WHERE id = ?",
            rows,
        )

    def insert_links(self, conn: Connection, links: list[Links]) -> None:
        tags = [(m, t) for m, tag_ids, _, _ in links for t in tag_ids]
        genres = [(m, g, p) for m, _, genre_ids, _ in links for p, g in enumerate(genre_ids)]
        taglines = [(m, p, t) for m, _, _, texts in links for p, t in enumerate(texts)]
        if tags:
            conn.exec_driver_sql(
                "INSERT INTO media_tag (media_id, tag_id, origin) VALUES (?, ?, 'server')", tags
            )
        if genres:
            conn.exec_driver_sql(
                "INSERT INTO media_genre (media_id, genre_id, position) VALUES (?, ?, ?)", genres
            )
        if taglines:
            conn.exec_driver_sql(
                "INSERT INTO media_tagline (media_id, origin, position, text) "
                "VALUES (?, 'server', ?, ?)",
                taglines,
            )


class PostgresChunkWriter(ChunkWriter):
    """PostgreSQL: one statement per step over arrays, instead of one row per round trip."""

    def before_writes(self, conn: Connection) -> None:
        """Commit without waiting for the WAL flush: a chunk is one of hundreds, and what a
        server crash could lose (the last fraction of a second of chunks, never part of one)
        the next sync writes again. Everything else the catalog commits stays synchronous.
        A chunk that writes nothing (an unchanged one) commits no WAL, and skips the round
        trip."""
        conn.exec_driver_sql("SET LOCAL synchronous_commit = off")

    def statistics(self) -> list[str]:
        """ANALYZE what a big pass wrote. Until autovacuum gets to it, the planner takes a
        catalog just filled with a million items for an empty one: a page of `catalog media
        list` then joined its tags by scanning media_tag, minutes per page. Not media's
        columns that no query filters, sorts or joins on (autovacuum's own ANALYZE covers them
        later): at 100,000 items the statement takes about 290 ms, against 530 to 570 ms for
        every column. media's statement and the link tables' (about 175 ms) are two, so that
        they can run side by side; two ANALYZEs of one table cannot (each takes a lock the
        other waits for)."""
        columns = ", ".join(c.name for c in MEDIA.c if c.name not in _NO_STATISTICS)
        return [f"ANALYZE media ({columns})", "ANALYZE media_tag, media_genre, media_tagline"]

    def classify(self, conn: Connection, library_id: int, raws: list[RawItem]) -> SortedOut:
        """One read-only statement: the chunk's digests are compared with the catalog's in
        SQL, and one row comes back: the items not simply unchanged, and the ids of the
        others."""
        if not raws:
            return SortedOut()
        by_id = {r.external_id: r for r in raws}
        # JSON texts: msgspec encodes them in C, where psycopg would dump arrays element by
        # element in Python; the answer is two texts for the same reason.
        params = {
            "ids": msgspec.json.encode(list(by_id)).decode(),
            "digests": msgspec.json.encode([r.digest for r in by_id.values()]).decode(),
            "library": library_id,
        }
        fresh, seen = conn.exec_driver_sql(_PG_CLASSIFY, params).one()
        rows = msgspec.json.decode(fresh) if fresh else []
        return SortedOut.of(rows, by_id, list(map(int, seen.split(","))) if seen else [])

    def in_(self, column: Any, values: list[Any]) -> Any:
        kind = String if isinstance(values[0], str) else column.type
        return column == any_(literal(values, ARRAY(kind)))

    def insert_media(
        self, conn: Connection, library_id: int, items: list[MediaItem], seen_at: datetime
    ) -> dict[str, int]:
        """Reserve ids from media's own sequence (safe beside any concurrent writer), then
        COPY the rows straight in: COPY cannot return ids, and needs no staging table this way.
        The job lock means no one else inserts these (library, external id) keys."""
        if not items:
            return {}
        # The sequence is looked up once (a subquery), not once a row: that was two thirds of
        # the statement's time.
        reserve = (
            "SELECT nextval((SELECT pg_get_serial_sequence('media', 'id'))::regclass) "
            "FROM generate_series(1, %s)"
        )
        ids = conn.exec_driver_sql(reserve, (len(items),)).scalars().all()
        columns = ("id", "library_id", "external_id", "first_seen_at", "updated_at", "last_seen_at")
        rows = (
            (id_, library_id, i.external_id, seen_at, seen_at, seen_at, *_pg_content(i))
            for id_, i in zip(ids, items, strict=True)
        )
        _copy(conn, "media", (*columns, *CONTENT_COLUMNS), rows)
        return {i.external_id: id_ for id_, i in zip(ids, items, strict=True)}

    def update_media(
        self, conn: Connection, items: list[MediaItem], ids: dict[str, int], seen_at: datetime
    ) -> None:
        if not items:
            return
        columns = ("id", *CONTENT_COLUMNS)
        arrays = _arrays(items, columns, ids)
        assignments = ", ".join(
            f"{c} = s.{c}" + ("::json" if c == "provider_ids" else "") for c in CONTENT_COLUMNS
        )
        sql = (
            f"UPDATE media SET {assignments}, updated_at = %(seen)s, last_seen_at = %(seen)s, "
            f"missing_since = NULL FROM {_unnest(columns)} WHERE media.id = s.id"
        )
        conn.exec_driver_sql(sql, {**arrays, "seen": seen_at})

    def insert_links(self, conn: Connection, links: list[Links]) -> None:
        """media_tag and media_genre as COPY text built an item at a time: the item's id joins
        its rows' cached tails, one C call an item where a row would cost a Python one."""
        tags: list[str] = []
        genres: list[str] = []
        for media_id, tag_ids, genre_ids, _ in links:
            m = str(media_id)
            if tag_ids:
                tags += (m, m.join(map(_tag_tail, tag_ids)))
            if genre_ids:
                genres += (m, m.join(map(_genre_tail, genre_ids, count())))
        if tags:
            _copy_text(conn, "media_tag", ("media_id", "tag_id", "origin"), "".join(tags))
        if genres:
            _copy_text(conn, "media_genre", ("media_id", "genre_id", "position"), "".join(genres))
        rows = [(m, SERVER_ORIGIN, p, t) for m, _, _, texts in links for p, t in enumerate(texts)]
        if rows:
            _copy(conn, "media_tagline", ("media_id", "origin", "position", "text"), rows)


@functools.cache
def _tag_tail(tag_id: int) -> str:
    """A media_tag row after its media id, in COPY's text format (numbers need no escaping)."""
    return f"\t{tag_id}\t{SERVER_ORIGIN}\n"


@functools.cache
def _genre_tail(genre_id: int, position: int) -> str:
    return f"\t{genre_id}\t{position}\n"


def _copy(conn: Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence]) -> None:
    """COPY rows into `table` on the connection's own transaction, in COPY's binary format:
    psycopg builds a binary row in a fifth of the time of a text one (numbers and dates are
    not printed), and PostgreSQL reads it faster too (a sixth less for media)."""
    cursor = conn.connection.driver_connection.cursor()
    sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
    with cursor, cursor.copy(sql) as copy:
        copy.set_types([_PG_TYPES[c] for c in columns])
        for row in rows:
            copy.write_row(row)
    conn.info["copies"] = conn.info.get("copies", 0) + 1


def _copy_text(conn: Connection, table: str, columns: Sequence[str], text: str) -> None:
    """COPY rows already in COPY's text format (numbers and fixed words, which need no
    escaping): one f-string a row, where write_row is a Python call a row."""
    cursor = conn.connection.driver_connection.cursor()
    with cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        copy.write(text.encode())
    conn.info["copies"] = conn.info.get("copies", 0) + 1


def _pg_content(i: MediaItem) -> tuple[Any, ...]:
    """CONTENT_COLUMNS of an item, in order, as psycopg takes them (written out: a generator
    over the column names cost a fifth of the COPY's own time)."""
    return (
        i.kind, i.name, i.sort_name, i.overview, i.year, i.premiere, i.community_rating,
        i.critic_rating, i.official_rating, i.subtitles, i.runtime_s, i.parent_external_id,
        i.season, i.episode, _json(i.provider_ids), i.added_at, i.content_hash,
    )  # fmt: skip


def redigest(conn: Connection, rows: list[tuple[int, str, str]]) -> None:
    """Give unchanged items (id, earlier digest, digest) their digest of today's kind, and
    their tagging the same, so neither a sync nor `catalog retag --changed` takes them for
    changed (see catalog.digest). Once per item, on the first sync that sees it."""
    if not rows:
        return
    params = [{"media": id_, "earlier": old, "digest": new} for id_, old, new in rows]
    for table, key, digest in (
        (MEDIA, MEDIA.c.id, MEDIA.c.content_hash),
        (PROCESS_RUN, PROCESS_RUN.c.media_id, PROCESS_RUN.c.input_hash),
    ):
        where = (key == bindparam("media"), digest == bindparam("earlier"))
        conn.execute(update(table).where(*where).values({digest: bindparam("digest")}), params)


def _added_by_push(conn: Connection, media_ids: list[int]) -> set[tuple[int, str]]:
    """(item, tag) pairs `catalog push` added to the server. They are the catalog's own tags
    (tagger or manual): linked as server tags too, they would count twice, and would outlive
    the catalog's when it drops them."""
    if not media_ids:
        return set()
    query = select(PUSHED_TAG.c.media_id, PUSHED_TAG.c.name).where(
        PUSHED_TAG.c.media_id.in_(media_ids), PUSHED_TAG.c.added
    )
    return {(media_id, name) for media_id, name in conn.execute(query)}


_PG_CLASSIFY = """
SELECT
    json_agg(json_build_array(s.external_id, m.id, m.content_hash, m.missing_since IS NOT NULL))
        FILTER (WHERE m.id IS NULL OR m.content_hash <> s.digest OR m.missing_since IS NOT NULL)
        ::text,
    string_agg(m.id::text, ',') FILTER (WHERE m.content_hash = s.digest AND m.missing_since IS NULL)
FROM ROWS FROM (
    json_array_elements_text(%(ids)s::json), json_array_elements_text(%(digests)s::json)
) s(external_id, digest)
-- LIMIT 1 (the key is unique) keeps this one index probe per item: a library's first sync has
-- no statistics yet, and the plain join was planned as a scan of the library.
LEFT JOIN LATERAL (
    SELECT id, content_hash, missing_since FROM media
    WHERE library_id = %(library)s AND external_id = s.external_id LIMIT 1
) m ON true
"""

# -- helpers ------------------------------------------------------------------------------------

# media's columns no query filters, sorts or joins on (a digest is compared one item at a time,
# and a sync finds what it did not see by library, through its index)
_NO_STATISTICS = frozenset({
    "overview", "provider_ids", "content_hash", "parent_external_id", "season", "episode",
    "first_seen_at", "updated_at", "last_seen_at",
})  # fmt: skip

_LINKS = (
    (MEDIA_TAG, SERVER_ORIGIN),
    (MEDIA_GENRE, None),
    (MEDIA_TAGLINE, SERVER_ORIGIN),
)

# Each column's type, for unnest()ed arrays and for COPY's binary format, whose fields must be
# of the column's type: json goes as text, which is its binary form too, and varchar as text.
_PG_TYPES = {
    "id": "bigint", "library_id": "int4", "external_id": "text", "kind": "text", "name": "text",
    "sort_name": "text", "overview": "text", "year": "int4", "premiere": "date",
    "community_rating": "float8", "critic_rating": "float8", "official_rating": "text",
    "subtitles": "bool", "runtime_s": "int4", "parent_external_id": "text", "season": "int4",
    "episode": "int4", "provider_ids": "text", "added_at": "timestamptz", "content_hash": "text",
    "first_seen_at": "timestamptz", "updated_at": "timestamptz", "last_seen_at": "timestamptz",
    "media_id": "bigint", "origin": "text", "position": "int4", "text": "text",
}  # fmt: skip


def _sqlite_datetime(value: datetime | None) -> str | None:
    """SQLAlchemy's SQLite DATETIME storage format, in UTC (what UTCDateTime reads back)."""
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _sqlite_content(i: MediaItem) -> tuple[Any, ...]:
    """CONTENT_COLUMNS of an item, in order, in SQLite's storage formats."""
    return (
        i.kind, i.name, i.sort_name, i.overview, i.year,
        i.premiere.isoformat() if i.premiere else None,
        i.community_rating, i.critic_rating, i.official_rating, i.subtitles, i.runtime_s,
        i.parent_external_id, i.season, i.episode, _json(i.provider_ids),
        _sqlite_datetime(i.added_at), i.content_hash,
    )  # fmt: skip


def _json(value: dict[str, Any]) -> str:
    return msgspec.json.encode(value).decode()


def _arrays(
    items: list[MediaItem], columns: Sequence[str], ids: dict[str, int]
) -> dict[str, list[Any]]:
    arrays = {c: [getattr(i, c) for i in items] for c in columns if c != "id"}
    if "id" in columns:
        arrays["id"] = [ids[i.external_id] for i in items]
    arrays["provider_ids"] = [_json(v) for v in arrays["provider_ids"]]
    return arrays


def _unnest(columns: Sequence[str]) -> str:
    arrays = ", ".join(f"%({c})s::{_PG_TYPES[c]}[]" for c in columns)
    return f"unnest({arrays}) AS s({', '.join(columns)})"
