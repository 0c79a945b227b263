"""What the database refuses because of the data in a statement (not because it is down), and
the one line that says why: the last line of defence behind `catalog.items.ItemCheck`."""

from __future__ import annotations

import psycopg
from sqlalchemy import exc as sa_exc

# IntegrityError / DataError through SQLAlchemy; psycopg's own from the COPY fast path (its
# cursor is the driver's); OverflowError and UnicodeEncodeError from a driver converting a
# value it cannot send.
REFUSED: tuple[type[BaseException], ...] = (
    sa_exc.IntegrityError,
    sa_exc.DataError,
    psycopg.IntegrityError,
    psycopg.DataError,
    OverflowError,
    UnicodeEncodeError,
)


def refusal(exc: BaseException) -> str:
    """The database's reason, one line, without SQLAlchemy's statement dump."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    return text.splitlines()[0] if text else type(orig).__name__
