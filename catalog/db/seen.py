"""The unchanged items a full sync has seen, as a bitmap of their catalog ids in memory.

Nothing is written for an unchanged item, so this is how the reconciliation tells it from an
item gone from the server. One bit per id keeps memory flat (a million ids: 125 KB), costs
the database nothing until the one statement that marks the unseen items, and a pass killed
before it reconciles leaves nothing behind that the next one could trust.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, LargeBinary, case, func, literal
from sqlalchemy.sql.elements import ColumnElement

_SQLITE_FUNCTION = "catalog_unseen"


class SeenIds:
    """Catalog ids seen by one pass: bit `id % 8` of byte `id // 8` (PostgreSQL's get_bit
    numbers bits the same way)."""

    def __init__(self) -> None:
        self.bits = bytearray()

    def add(self, ids: Iterable[int]) -> None:
        ids = list(ids)
        if not ids:
            return
        top = max(ids) >> 3
        if top >= len(self.bits):  # grow by half again at least: amortised, like a list
            self.bits.extend(bytes(max(top + 1 - len(self.bits), len(self.bits) // 2)))
        bits = self.bits
        for id_ in ids:
            bits[id_ >> 3] |= 1 << (id_ & 7)

    def __contains__(self, id_: int) -> bool:
        byte = id_ >> 3
        return 0 <= byte < len(self.bits) and bool(self.bits[byte] >> (id_ & 7) & 1)

    @contextmanager
    def unseen(self, conn: Connection, column: Any) -> Iterator[ColumnElement[bool]]:
        """A condition on `column` (catalog ids), true for the ids not seen, for statements
        run on `conn` inside the block: the bitmap goes along as one parameter on PostgreSQL,
        and SQLite (in-process) asks it through a function of the connection."""
        if conn.dialect.name == "postgresql":
            bits = literal(bytes(self.bits), LargeBinary)
            # CASE, not OR: get_bit refuses an id past the end, and OR has no order.
            yield case((column < len(self.bits) * 8, func.get_bit(bits, column) == 0), else_=True)
            return
        driver = conn.connection.driver_connection
        driver.create_function(_SQLITE_FUNCTION, 1, self._sqlite_unseen, deterministic=True)
        try:
            yield getattr(func, _SQLITE_FUNCTION)(column) == 1
        finally:
            driver.create_function(_SQLITE_FUNCTION, 1, None)

    def _sqlite_unseen(self, id_: int) -> int:
        return 0 if id_ in self else 1
