"""Engines for the catalog database, with settings that pay on each dialect and safe messages."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, OperationalError

from catalog.errors import CatalogMissing, ConfigError, DatabaseError

T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_MS = 30_000
# PostgreSQL's answer (in English, its default) to a connection naming no database it has.
_NO_SUCH_DATABASE = re.compile(r'database ".*" does not exist')


def parse_url(url: str) -> URL:
    """Parse a database URL, naming the problem (without the password) when it is wrong."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"database URL {mask_url(url)!r} is not a valid SQLAlchemy URL") from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"database URL {mask_url(url)!r}: "
            "only sqlite:/// and postgresql+psycopg:// are supported"
        )
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def mask_url(url: str | URL) -> str:
    """The URL as it may appear in a message: password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def sqlite_path(url: URL) -> Path | None:
    """The file behind a SQLite URL, or None for an in-memory database."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def require_catalog(url: str) -> None:
    """CatalogMissing when `url` names a SQLite file that does not exist (checked before an
    engine is made: connecting would create it). PostgreSQL: `check_connection` says so."""
    path = sqlite_path(parse_url(url))
    if path is not None and not path.exists():
        raise CatalogMissing(
            f"no catalog database at {path}: the file does not exist (`catalog sync` creates "
            "it; check --database-url, CATALOG_DATABASE_URL or database_url in the config)"
        )


def connect_catalog(url: str, create: bool = False) -> Engine:
    """An engine on a catalog that answers. A SQLite file that does not exist is made only with
    `create` (a sync, the demo, `db upgrade`): a read of a mistyped path is CatalogMissing, not
    a new empty catalog."""
    if not create:
        require_catalog(url)
    engine = create_catalog_engine(url)
    check_connection(engine)
    return engine


def create_catalog_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for the catalog: SQLite in WAL mode, PostgreSQL through psycopg 3."""
    parsed = parse_url(url)
    path = sqlite_path(parsed)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "sqlite":
        return create_engine(parsed, **kwargs)
    return create_engine(parsed, pool_pre_ping=True, **kwargs)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets readers (catalog media list) work while a sync writes; NORMAL is durable across
    # application crashes, which is what a catalog that can be re-synced needs.
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA wal_autocheckpoint=16384")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def check_connection(engine: Engine) -> None:
    """Connect once, turning a failure into one line that names the (masked) URL."""
    try:
        with engine.connect():
            pass
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        if engine.dialect.name == "postgresql" and _NO_SUCH_DATABASE.search(reason):
            name = engine.url.database
            raise CatalogMissing(
                f"no PostgreSQL database {name!r} at {mask_url(engine.url)}: create it "
                f"(createdb {name}) or fix the database URL"
            ) from exc
        raise DatabaseError(
            f"cannot open the catalog database {mask_url(engine.url)}: {reason}"
        ) from exc


@contextmanager
def recorded_statements(engine: Engine) -> Iterator[list[str]]:
    """Every statement sent to the database while the block runs (an executemany is one): how
    tests and benchmarks check that statements grow with batches, never with items."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def in_transaction(engine: Engine, fn: Callable[..., T], *args: Any) -> T:
    """fn(conn, *args) in a transaction of its own (for DbThread.run)."""
    with engine.begin() as conn:
        return fn(conn, *args)


def in_connection(engine: Engine, fn: Callable[..., T], *args: Any) -> T:
    """fn(conn, *args) on a connection of its own, for reads (for DbThread.run)."""
    with engine.connect() as conn:
        return fn(conn, *args)


def dialect_insert(conn: Connection, table: Any) -> Any:
    """INSERT for `conn`'s dialect, which knows ON CONFLICT."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)
