"""Integrity checks the schema cannot enforce itself (link tables have no foreign keys)."""

from __future__ import annotations

from sqlalchemy import Connection, func, select

from catalog.db.models import GENRE, LINK_TABLES, MEDIA, MEDIA_GENRE, MEDIA_TAG, TAG


def orphan_counts(conn: Connection) -> dict[str, int]:
    """Rows per link table that point at media, tags or genres that do not exist."""
    counts = {}
    for table in LINK_TABLES:
        missing = ~table.c.media_id.in_(select(MEDIA.c.id))
        counts[f"{table.name}.media_id"] = conn.execute(
            select(func.count()).select_from(table).where(missing)
        ).scalar_one()
    for link, column, target in (
        (MEDIA_TAG, "tag_id", TAG),
        (MEDIA_GENRE, "genre_id", GENRE),
    ):
        missing = ~link.c[column].in_(select(target.c.id))
        counts[f"{link.name}.{column}"] = conn.execute(
            select(func.count()).select_from(link).where(missing)
        ).scalar_one()
    return counts
