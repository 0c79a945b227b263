"""Reads of the catalog's servers and libraries: what each library holds, how many servers."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, case, func, select

from catalog.db.models import LIBRARY, MEDIA, SERVER


def library_overview(conn: Connection, server_name: str) -> dict[str, dict[str, Any]]:
    """Per library of a server (by external id): items held, how many missing, last syncs."""
    missing = func.sum(case((MEDIA.c.missing_since.is_not(None), 1), else_=0))
    query = (
        select(
            LIBRARY.c.external_id,
            func.count(MEDIA.c.id).label("items"),
            func.coalesce(missing, 0).label("missing"),
            LIBRARY.c.last_sync_at,
            LIBRARY.c.last_full_sync_at,
        )
        .join(SERVER, SERVER.c.id == LIBRARY.c.server_id)
        .outerjoin(MEDIA, MEDIA.c.library_id == LIBRARY.c.id)
        .where(SERVER.c.name == server_name)
        .group_by(LIBRARY.c.id)
    )
    return {row.external_id: dict(row._mapping) for row in conn.execute(query)}


def server_count(conn: Connection) -> int:
    """How many servers feed the catalog (tables name an item's server only when several do)."""
    return conn.execute(select(func.count()).select_from(SERVER)).scalar_one()
