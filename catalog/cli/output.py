"""Writing listings: one page or a stream of pages as JSON, NDJSON or CSV on stdout.

JSON is one document `{"items": [...], "next_cursor": ...}` even when it spans many pages: the
items are written as they come, so memory holds one page. Encoding is msgspec's, several
times faster than the json module on an export of the whole catalog. Moments are written by
catalog.timefmt.iso_utc in every format, booleans in CSV as `true` / `false` as in JSON.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from enum import StrEnum
from typing import Any, BinaryIO

import msgspec

from catalog.cli.console import stderr
from catalog.timefmt import iso_utc

LIST_SEPARATOR = "|"  # joins list fields (tags, genres, ...) in a CSV cell

_encoder = msgspec.json.Encoder()


class Format(StrEnum):
    table = "table"
    json = "json"
    ndjson = "ndjson"
    csv = "csv"


class ItemWriter:
    """Writes items in a data format (not table) as pages arrive; `close` ends the document."""

    def __init__(
        self, output: Format, columns: Sequence[str], timestamps: Sequence[str] = ()
    ) -> None:
        """`timestamps`: the columns that hold datetimes, written with iso_utc."""
        self.output, self.columns, self.timestamps = output, columns, timestamps
        sys.stdout.flush()
        self.binary: BinaryIO = sys.stdout.buffer
        self.csv = csv.writer(sys.stdout, lineterminator="\n") if output is Format.csv else None
        self.count = 0
        if self.csv is not None:
            self.csv.writerow(columns)
        elif output is Format.json:
            self.binary.write(b'{"items":[')

    def write(self, items: Iterable[dict[str, Any]]) -> None:
        if self.csv is not None:
            self.csv.writerows([_cell(item[c]) for c in self.columns] for item in items)
            return
        separator = b"\n" if self.output is Format.ndjson else b","
        chunk = [_encoder.encode(self._formatted(item)) for item in items]
        if not chunk:
            return
        if self.output is Format.ndjson:
            self.binary.write(separator.join(chunk) + b"\n")
        else:
            self.binary.write((b"," if self.count else b"") + separator.join(chunk))
        self.count += len(chunk)

    def _formatted(self, item: dict[str, Any]) -> dict[str, Any]:
        # msgspec writes datetimes its own way (fractions when there are any): ours instead.
        for key in self.timestamps:
            value = item[key]
            if value is not None:
                item[key] = iso_utc(value)
        return item

    def close(self, next_cursor: str | None) -> None:
        """End the document; the cursor goes in it (JSON) or on stderr, so data stays data."""
        if self.output is Format.json:
            self.binary.write(b'],"next_cursor":' + _encoder.encode(next_cursor) + b"}\n")
        self.binary.flush()
        sys.stdout.flush()
        if next_cursor and self.output is not Format.json:
            next_page_hint(next_cursor)


def next_page_hint(cursor: str) -> None:
    stderr.print(f"next page: --after {cursor}", highlight=False, soft_wrap=True)


def _cell(value: Any) -> Any:
    """A value as a CSV cell, written as JSON writes it (but lists, joined)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return LIST_SEPARATOR.join(map(str, value))
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    return "" if value is None else value
