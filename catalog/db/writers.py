"""Set-based writers: a chunk of parsed items becomes a fixed number of statements.

`ChunkWriter` is the portable path (executemany, which SQLite runs fast in-process);
`PostgresChunkWriter` swaps the row-by-row parts for single statements over unnest()ed
arrays, which is where PostgreSQL pays for round trips. Callers own the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import (
    ARRAY,
    Connection,
    String,
    any_,
    bindparam,
    delete,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from catalog.db.models import Genre, Media, MediaGenre, MediaTag, MediaTagline, Tag, TagAlias
from catalog.sources import MediaItem

MEDIA = Media.__table__
SERVER_ORIGIN = "server"
CONTENT_COLUMNS = (
    "kind", "name", "sort_name", "overview", "year", "premiere", "community_rating",
    "critic_rating", "official_rating", "subtitles", "runtime_s", "parent_external_id",
    "season", "episode", "provider_ids", "added_at", "content_hash",
)  # fmt: skip


@dataclass
class ChunkCounts:
    """What one chunk did to the catalog."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0

    def __iadd__(self, other: ChunkCounts) -> ChunkCounts:
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        return self


def writer_for(dialect_name: str) -> ChunkWriter:
    return PostgresChunkWriter() if dialect_name == "postgresql" else ChunkWriter()


class ChunkWriter:
    """Upserts a chunk of one library's items on (library, external id), by content hash."""

    def upsert_chunk(
        self,
        conn: Connection,
        library_id: int,
        items: Sequence[MediaItem],
        seen_at: datetime,
        also_seen: Sequence[str] = (),
    ) -> ChunkCounts:
        """Insert new items, rewrite changed ones, and only stamp `last_seen_at` on the rest
        (and on `also_seen`: items that exist on the server but failed validation)."""
        items = list({item.external_id: item for item in items}.values())  # last one wins
        existing = self.select_existing(conn, library_id, [i.external_id for i in items])
        new, changed, unchanged_ids = _classify(items, existing)
        ids = self.insert_media(conn, library_id, new, seen_at)
        changed_ids = {i.external_id: existing[i.external_id][0] for i in changed}
        self.update_media(conn, changed, changed_ids, seen_at)
        self.touch(conn, library_id, unchanged_ids, also_seen, seen_at)
        stale = list(changed_ids.values())
        self.replace_links(conn, [*new, *changed], {**ids, **changed_ids}, stale)
        return ChunkCounts(len(new), len(changed), len(unchanged_ids))

    # -- media rows -------------------------------------------------------------------------

    def select_existing(
        self, conn: Connection, library_id: int, external_ids: list[str]
    ) -> dict[str, tuple[int, str]]:
        query = select(MEDIA.c.external_id, MEDIA.c.id, MEDIA.c.content_hash).where(
            MEDIA.c.library_id == library_id, MEDIA.c.external_id.in_(external_ids)
        )
        return {ext: (id_, digest) for ext, id_, digest in conn.execute(query)}

    def insert_media(
        self, conn: Connection, library_id: int, items: list[MediaItem], seen_at: datetime
    ) -> dict[str, int]:
        if not items:
            return {}
        rows = [_media_row(i, library_id, seen_at) for i in items]
        stmt = insert(MEDIA).returning(MEDIA.c.external_id, MEDIA.c.id)
        return dict(conn.execute(stmt, rows).all())

    def update_media(
        self, conn: Connection, items: list[MediaItem], ids: dict[str, int], seen_at: datetime
    ) -> None:
        if not items:
            return
        rows = [{**_content(i), "b_id": ids[i.external_id], "seen": seen_at} for i in items]
        values = {c: bindparam(c) for c in CONTENT_COLUMNS}
        stmt = (
            update(MEDIA)
            .where(MEDIA.c.id == bindparam("b_id"))
            .values(**values, updated_at=bindparam("seen"), last_seen_at=bindparam("seen"))
            .values(missing_since=None)
        )
        conn.execute(stmt, rows)

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
            conn.execute(update(MEDIA).where(MEDIA.c.id.in_(ids)).values(values))
        if external_ids:
            where = (MEDIA.c.library_id == library_id, MEDIA.c.external_id.in_(external_ids))
            conn.execute(update(MEDIA).where(*where).values(values))

    # -- links ------------------------------------------------------------------------------

    def replace_links(
        self, conn: Connection, items: list[MediaItem], ids: dict[str, int], stale: list[int]
    ) -> None:
        """Make the server-origin tags, genres and taglines of `items` what the server says."""
        if stale:
            for table, origin in _LINKS:
                where = [table.c.media_id.in_(stale)]
                if origin is not None:
                    where.append(table.c.origin == SERVER_ORIGIN)
                conn.execute(delete(table).where(*where))
        if not items:
            return
        tag_ids = resolve_tags(conn, {t for i in items for t in i.tags})
        genre_ids = ensure_names(conn, Genre.__table__, {g for i in items for g in i.genres})
        tag_rows = {
            (ids[i.external_id], tag_ids[t]) for i in items for t in i.tags if tag_ids.get(t)
        }
        genre_rows = [(ids[i.external_id], genre_ids[g]) for i in items for g in i.genres]
        tagline_rows = [
            (ids[i.external_id], pos, text) for i in items for pos, text in enumerate(i.taglines)
        ]
        self.insert_links(conn, sorted(tag_rows), genre_rows, tagline_rows)

    def insert_links(
        self,
        conn: Connection,
        tags: list[tuple[int, int]],
        genres: list[tuple[int, int]],
        taglines: list[tuple[int, int, str]],
    ) -> None:
        if tags:
            rows = [{"media_id": m, "tag_id": t, "origin": SERVER_ORIGIN} for m, t in tags]
            conn.execute(insert(MediaTag.__table__), rows)
        if genres:
            conn.execute(
                insert(MediaGenre.__table__), [{"media_id": m, "genre_id": g} for m, g in genres]
            )
        if taglines:
            rows = [
                {"media_id": m, "origin": SERVER_ORIGIN, "position": p, "text": t}
                for m, p, t in taglines
            ]
            conn.execute(insert(MediaTagline.__table__), rows)


class PostgresChunkWriter(ChunkWriter):
    """PostgreSQL: one statement per step over arrays, instead of one row per round trip."""

    def select_existing(
        self, conn: Connection, library_id: int, external_ids: list[str]
    ) -> dict[str, tuple[int, str]]:
        query = select(MEDIA.c.external_id, MEDIA.c.id, MEDIA.c.content_hash).where(
            MEDIA.c.library_id == library_id,
            MEDIA.c.external_id == _any(external_ids),
        )
        return {ext: (id_, digest) for ext, id_, digest in conn.execute(query)}

    def insert_media(
        self, conn: Connection, library_id: int, items: list[MediaItem], seen_at: datetime
    ) -> dict[str, int]:
        if not items:
            return {}
        columns = ("external_id", *CONTENT_COLUMNS)
        arrays = _columns([{"external_id": i.external_id, **_content(i)} for i in items], columns)
        sql = (
            f"INSERT INTO media (library_id, first_seen_at, updated_at, last_seen_at, "
            f"{', '.join(columns)}) "
            f"SELECT :library_id, :seen, :seen, :seen, {', '.join(_select_list(columns))} "
            f"FROM {_unnest(columns)} RETURNING external_id, id"
        )
        params = {**arrays, "library_id": library_id, "seen": seen_at}
        return dict(conn.exec_driver_sql(*_driver(sql, params)).all())

    def update_media(
        self, conn: Connection, items: list[MediaItem], ids: dict[str, int], seen_at: datetime
    ) -> None:
        if not items:
            return
        columns = ("id", *CONTENT_COLUMNS)
        arrays = _columns([{"id": ids[i.external_id], **_content(i)} for i in items], columns)
        assignments = ", ".join(
            f"{c} = s.{c}" + ("::json" if c == "provider_ids" else "") for c in CONTENT_COLUMNS
        )
        sql = (
            f"UPDATE media SET {assignments}, updated_at = :seen, last_seen_at = :seen, "
            f"missing_since = NULL FROM {_unnest(columns)} WHERE media.id = s.id"
        )
        conn.exec_driver_sql(*_driver(sql, {**arrays, "seen": seen_at}))

    def insert_links(
        self,
        conn: Connection,
        tags: list[tuple[int, int]],
        genres: list[tuple[int, int]],
        taglines: list[tuple[int, int, str]],
    ) -> None:
        if tags:
            m, t = zip(*tags, strict=True)
            conn.exec_driver_sql(
                "INSERT INTO media_tag (media_id, tag_id, origin) "
                "SELECT m, t, 'server' FROM unnest(%(m)s::bigint[], %(t)s::int[]) AS s(m, t)",
                {"m": list(m), "t": list(t)},
            )
        if genres:
            m, g = zip(*genres, strict=True)
            conn.exec_driver_sql(
                "INSERT INTO media_genre (media_id, genre_id) "
                "SELECT * FROM unnest(%(m)s::bigint[], %(g)s::int[])",
                {"m": list(m), "g": list(g)},
            )
        if taglines:
            m, p, text = zip(*taglines, strict=True)
            conn.exec_driver_sql(
                "INSERT INTO media_tagline (media_id, origin, position, text) "
                "SELECT m, 'server', p, t FROM unnest(%(m)s::bigint[], %(p)s::int[], %(t)s::text[])"
                " AS s(m, p, t)",
                {"m": list(m), "p": list(p), "t": list(text)},
            )


# -- names: tags (through their aliases) and genres --------------------------------------------


def resolve_tags(conn: Connection, names: set[str]) -> dict[str, int | None]:
    """Tag id for each raw name: what normalization decided (None = dropped), else the tag of
    that exact name, created when new. A fixed number of statements whatever the count."""
    if not names:
        return {}
    alias = TagAlias.__table__
    decided = dict(
        conn.execute(
            select(alias.c.raw_name, alias.c.tag_id).where(alias.c.raw_name.in_(names))
        ).all()
    )
    plain = ensure_names(conn, Tag.__table__, names - decided.keys())
    return {**plain, **decided}


def ensure_names(conn: Connection, table: Any, names: Iterable[str]) -> dict[str, int]:
    """Ids of `names` in a (id, name unique) table, inserting the missing ones."""
    names = sorted(set(names))  # a stable order avoids deadlocks between concurrent writers
    if not names:
        return {}
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(
        dialect_insert(table).on_conflict_do_nothing(index_elements=["name"]),
        [{"name": n} for n in names],
    )
    found = conn.execute(select(table.c.name, table.c.id).where(table.c.name.in_(names)))
    return dict(found.all())


# -- helpers ------------------------------------------------------------------------------------

_LINKS = (
    (MediaTag.__table__, SERVER_ORIGIN),
    (MediaGenre.__table__, None),
    (MediaTagline.__table__, SERVER_ORIGIN),
)

_PG_TYPES = {
    "id": "bigint", "external_id": "text", "kind": "text", "name": "text", "sort_name": "text",
    "overview": "text", "year": "int", "premiere": "date", "community_rating": "float8",
    "critic_rating": "float8", "official_rating": "text", "subtitles": "bool",
    "runtime_s": "int", "parent_external_id": "text", "season": "int", "episode": "int",
    "provider_ids": "text", "added_at": "timestamptz", "content_hash": "text",
}  # fmt: skip


def _classify(
    items: list[MediaItem], existing: dict[str, tuple[int, str]]
) -> tuple[list[MediaItem], list[MediaItem], list[int]]:
    """Split a chunk into new items, changed items and the ids of unchanged ones."""
    new, changed, unchanged = [], [], []
    for item in items:
        known = existing.get(item.external_id)
        if known is None:
            new.append(item)
        elif known[1] != item.content_hash:
            changed.append(item)
        else:
            unchanged.append(known[0])
    return new, changed, unchanged


def _content(item: MediaItem) -> dict[str, Any]:
    return {c: getattr(item, c) for c in CONTENT_COLUMNS}


def _media_row(item: MediaItem, library_id: int, seen_at: datetime) -> dict[str, Any]:
    return {
        **_content(item),
        "library_id": library_id,
        "external_id": item.external_id,
        "first_seen_at": seen_at,
        "updated_at": seen_at,
        "last_seen_at": seen_at,
    }


def _columns(rows: list[dict[str, Any]], columns: Sequence[str]) -> dict[str, list[Any]]:
    arrays = {c: [r[c] for r in rows] for c in columns}
    arrays["provider_ids"] = [msgspec.json.encode(v).decode() for v in arrays["provider_ids"]]
    return arrays


def _unnest(columns: Sequence[str]) -> str:
    arrays = ", ".join(f":{c}::{_PG_TYPES[c]}[]" for c in columns)
    return f"unnest({arrays}) AS s({', '.join(columns)})"


def _select_list(columns: Sequence[str]) -> list[str]:
    return [f"s.{c}::json" if c == "provider_ids" else f"s.{c}" for c in columns]


def _driver(sql: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Turn :name placeholders into psycopg's %(name)s for exec_driver_sql."""
    for name in sorted(params, key=len, reverse=True):
        sql = sql.replace(f":{name}", f"%({name})s")
    return sql, params


def _any(values: list[str]) -> Any:
    return any_(literal(values, ARRAY(String)))
