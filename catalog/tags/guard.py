"""The one vocabulary guard. Tag ids are resolved in one statement and linked in a later one, so a
merge committed in between would orphan the links. A vocabulary change holds the normalize lock
and every sync's (`vocabulary_lock`); a sync is guarded by its own job lock, which a change
takes; a retag's write-back holds the normalize lock shared for its transaction
(`guard_links`). On SQLite, the write lock taken first (`hold_write_lock`) does it all."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from sqlalchemy import Connection, Engine, select, text

from catalog.db.locks import job_lock, lock_key
from catalog.db.models import SERVER

NORMALIZE_SCOPE = "catalog"  # the normalize lock is on the whole catalog (locks.CATALOG_SCOPE)


@contextmanager
def vocabulary_lock(engine: Engine) -> Iterator[None]:
    """The normalize job's lock, and every sync's: a sync resolves tag ids in one statement
    and links them in a later one, so a merge committed in between would orphan its links."""
    with job_lock(engine, "normalize", None), ExitStack() as stack:
        with engine.connect() as conn:
            servers = conn.execute(select(SERVER.c.name).order_by(SERVER.c.name)).scalars()
            names = list(servers)
        for server in names:
            stack.enter_context(job_lock(engine, "sync", server))
        yield


def guard_links(conn: Connection) -> None:
    """Hold the vocabulary for the caller's transaction while it links tags it resolved:
    shared, so write-backs run side by side, and never beside a vocabulary change."""
    if conn.dialect.name == "postgresql":
        key = lock_key("normalize", NORMALIZE_SCOPE)
        conn.execute(text("SELECT pg_advisory_xact_lock_shared(:k)"), {"k": key})
    else:
        hold_write_lock(conn)


def hold_write_lock(conn: Connection) -> None:
    """Make what follows one transaction. SQLite's driver opens its transaction only at the
    first INSERT/UPDATE/DELETE: the tag list read and the temp table would fall outside it,
    so open it now, taking the write lock before reading what will be rewritten. PostgreSQL's
    transaction is open already."""
    if conn.dialect.name == "sqlite" and not conn.connection.driver_connection.in_transaction:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
