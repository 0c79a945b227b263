"""What the database refuses because of the data in a statement (not because it is down), and
the one line that says why: the last line of defence behind `catalog.items.ItemCheck`."""

from __future__ import annotations

from sqlalchemy import exc as sa_exc

# IntegrityError / DataError through SQLAlchemy; OverflowError and UnicodeEncodeError from a
# driver converting a value it cannot send.
_ANY_DIALECT: tuple[type[BaseException], ...] = (
    sa_exc.IntegrityError,
    sa_exc.DataError,
    OverflowError,
    UnicodeEncodeError,
)


def refused_by(dialect: str) -> tuple[type[BaseException], ...]:
    """The errors by which a database of `dialect` refuses a statement's data. On PostgreSQL
    also psycopg's own, from the COPY fast path (its cursor is the driver's); psycopg is
    imported only then, since it costs every SQLite command about 0.17 s of start-up."""
    if dialect != "postgresql":
        return _ANY_DIALECT
    import psycopg

    return (*_ANY_DIALECT, psycopg.IntegrityError, psycopg.DataError)


def refusal(exc: BaseException) -> str:
    """The database's reason, one line, without SQLAlchemy's statement dump."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    return text.splitlines()[0] if text else type(orig).__name__
