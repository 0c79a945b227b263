"""How names enter the catalog: a raw tag name through `tag_alias` (what normalization decided)
to its tag, and any name into its (id, name) table. Every tag a sync or a retag brings in comes
through here, so a normalized vocabulary stays normalized."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, select

from catalog.db.engine import dialect_insert
from catalog.db.models import TAG, TAG_ALIAS


class KnownNames:
    """The ids of names a pass has already met, so each chunk asks the database only about the
    names new to it. Only what a statement read is kept, never a name this transaction is
    inserting: a rollback would take that row away, and a later chunk would link to nothing.
    Safe for a sync's pass: a change to the vocabulary takes every sync's lock
    (catalog.tags.guard), and nothing else renames or drops a name."""

    def __init__(self) -> None:
        self.tags: dict[str, int | None] = {}
        self.genres: dict[str, int] = {}


def resolve_tags(
    conn: Connection, names: set[str], known: dict[str, int | None] | None = None
) -> dict[str, int | None]:
    """Tag id for each raw name: what normalization decided (None = dropped), else the tag of
    that exact name, created when new. A fixed number of statements whatever the count, none
    when `known` (a pass's KnownNames.tags) holds every name."""
    known = {} if known is None else known
    asked = {n for n in names if n not in known}
    created: dict[str, int] = {}
    if asked:
        query = select(TAG_ALIAS.c.raw_name, TAG_ALIAS.c.tag_id).where(
            TAG_ALIAS.c.raw_name.in_(asked)
        )
        decided = dict(conn.execute(query).all())
        known.update(decided)
        created = ensure_names(conn, TAG, asked - decided.keys(), known)  # type: ignore[arg-type]
    return {n: known[n] if n in known else created[n] for n in names}


def ensure_names(
    conn: Connection, table: Any, names: Iterable[str], known: dict[str, int] | None = None
) -> dict[str, int]:
    """Ids of `names` in a (id, name unique) table, inserting the missing ones; `known` (a
    pass's KnownNames) spares the names it holds and keeps those found committed."""
    known = {} if known is None else known
    # A stable order avoids deadlocks between concurrent writers.
    asked = sorted({n for n in names if n not in known})
    created: dict[str, int] = {}
    if asked:
        query = select(table.c.name, table.c.id).where(table.c.name.in_(asked))
        found = dict(conn.execute(query).all())
        known.update(found)
        if len(found) < len(asked):  # usually every name exists already: skip the insert
            missing = [{"name": n} for n in asked if n not in found]
            conn.execute(
                dialect_insert(conn, table).on_conflict_do_nothing(index_elements=["name"]),
                missing,
            )
            created = dict(conn.execute(query).all())  # ours until commit: answered, not kept
    return {n: known[n] if n in known else created[n] for n in names}
