"""The predecessor's write pattern, for comparison: one transaction per item, and a statement
per tag and genre row (look up, insert if missing, link), on the same schema as `catalog`."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, insert, select

from catalog.db.models import GENRE, MEDIA, MEDIA_GENRE, MEDIA_TAG, MEDIA_TAGLINE, TAG
from catalog.items import MediaItem


def write_item_naively(conn: Connection, library_id: int, item: MediaItem) -> None:
    now = datetime.now(UTC)
    found = conn.execute(
        select(MEDIA.c.id).where(
            MEDIA.c.library_id == library_id, MEDIA.c.external_id == item.external_id
        )
    ).scalar()
    if found is not None:
        return
    row = {
        "library_id": library_id, "external_id": item.external_id, "kind": item.kind,
        "name": item.name, "sort_name": item.sort_name, "overview": item.overview,
        "year": item.year, "premiere": item.premiere, "community_rating": item.community_rating,
        "critic_rating": item.critic_rating, "official_rating": item.official_rating,
        "subtitles": item.subtitles, "runtime_s": item.runtime_s,
        "provider_ids": item.provider_ids, "added_at": item.added_at,
        "content_hash": item.content_hash, "first_seen_at": now, "updated_at": now,
        "last_seen_at": now,
    }  # fmt: skip
    media_id = conn.execute(insert(MEDIA).returning(MEDIA.c.id), row).scalar_one()
    for name in item.tags:
        tag_id = _name_id(conn, TAG, name)
        conn.execute(
            insert(MEDIA_TAG), {"media_id": media_id, "tag_id": tag_id, "origin": "server"}
        )
    for name in item.genres:
        genre_id = _name_id(conn, GENRE, name)
        conn.execute(insert(MEDIA_GENRE), {"media_id": media_id, "genre_id": genre_id})
    for position, text in enumerate(item.taglines):
        conn.execute(
            insert(MEDIA_TAGLINE),
            {"media_id": media_id, "origin": "server", "position": position, "text": text},
        )


def _name_id(conn: Connection, table, name: str) -> int:
    found = conn.execute(select(table.c.id).where(table.c.name == name)).scalar()
    if found is None:
        found = conn.execute(insert(table).returning(table.c.id), {"name": name}).scalar_one()
    return found


def write_naively(engine: Engine, library_id: int, items: list[MediaItem]) -> None:
    for item in items:
        with engine.begin() as conn:  # one transaction per item, as the predecessor did
            write_item_naively(conn, library_id, item)
