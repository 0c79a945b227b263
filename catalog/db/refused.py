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


MEDIA_KEY = "uq_media_library_id_external_id"  # (library, external id): the key a sync upserts on


def crossed(exc: BaseException) -> bool:
    """Whether a chunk failed only because a chunk written beside it in the same pass held one
    of its new items (a server that repeats an item pages apart): a unique violation on
    media's key, or a deadlock between the two. Sorted afresh, it finds the item held.
    Only PostgreSQL writes chunks side by side (catalog.sync.WRITE_LANES)."""
    import psycopg

    orig = getattr(exc, "orig", None) or exc
    if isinstance(orig, psycopg.errors.DeadlockDetected):
        return True
    return isinstance(orig, psycopg.errors.UniqueViolation) and (
        orig.diag.constraint_name == MEDIA_KEY
    )
