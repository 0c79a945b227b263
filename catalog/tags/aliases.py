"""How names enter the catalog: a raw tag name through `tag_alias` (what normalization decided)
to its tag, and any name into its (id, name) table. Every tag a sync or a retag brings in comes
through here, so a normalized vocabulary stays normalized."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, select

from catalog.db.engine import dialect_insert
from catalog.db.models import TAG, TAG_ALIAS


def resolve_tags(conn: Connection, names: set[str]) -> dict[str, int | None]:
    """Tag id for each raw name: what normalization decided (None = dropped), else the tag of
    that exact name, created when new. A fixed number of statements whatever the count."""
    if not names:
        return {}
    query = select(TAG_ALIAS.c.raw_name, TAG_ALIAS.c.tag_id).where(TAG_ALIAS.c.raw_name.in_(names))
    decided = dict(conn.execute(query).all())
    plain = ensure_names(conn, TAG, names - decided.keys())
    return {**plain, **decided}


def ensure_names(conn: Connection, table: Any, names: Iterable[str]) -> dict[str, int]:
    """Ids of `names` in a (id, name unique) table, inserting the missing ones."""
    names = sorted(set(names))  # a stable order avoids deadlocks between concurrent writers
    if not names:
        return {}
    query = select(table.c.name, table.c.id).where(table.c.name.in_(names))
    found = dict(conn.execute(query).all())
    if len(found) < len(names):  # usually every name exists already: skip the insert
        missing = [{"name": n} for n in names if n not in found]
        conn.execute(
            dialect_insert(conn, table).on_conflict_do_nothing(index_elements=["name"]), missing
        )
        found = dict(conn.execute(query).all())
    return found
