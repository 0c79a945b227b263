"""The CLI's tables for people, laid out once so that every one fits 80 columns and reads well.

Numbers, moments and short labels (a status, a kind) never wrap and are never cut: each such
column is as wide as its widest cell. Names, titles and lists wrap (a word longer than its
column folds onto the next line) and share what is left by weight, a title more than a list.
Columns are two spaces apart under a ruled header, and moments are local time to the minute
(`2026-12-02 05:31`); machine output (`--json`, `--format`) keeps UTC timestamps
(catalog.timefmt).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from enum import Enum
from typing import TYPE_CHECKING

from catalog.cli.console import LazyConsole, stderr
from catalog.timefmt import local_minute, short_duration

if TYPE_CHECKING:  # rich is imported where a table is made: output for a machine needs none
    from rich.console import Console
    from rich.table import Column, Table

TEXT_FLOOR = 6  # a text column is never laid out narrower than this (or its header, or its text)


class Kind(Enum):
    """What a column holds, which decides how it behaves when space runs short."""

    TEXT = "text"  # wraps, folds a word longer than the column
    NUMBER = "number"  # right-aligned, never wraps or is cut
    MOMENT = "moment"  # never wraps or is cut
    LABEL = "label"  # one short word from a fixed set (status, kind): never wraps or is cut


FIXED = (Kind.NUMBER, Kind.MOMENT, Kind.LABEL)
Spec = tuple[str, Kind] | tuple[str, Kind, int]


def new_table(title: str | None = None, *, header: bool = True) -> Table:
    """An empty table in the CLI's style; add columns with `column`."""
    from rich import box
    from rich.table import Table

    return Table(
        title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
        collapse_padding=True, show_header=header,
    )  # fmt: skip


def column(
    table: Table, header: str, kind: Kind = Kind.TEXT, weight: int = 1, **options: object
) -> None:
    """Add a column of `kind`: TEXT wraps and gets `weight` shares of the room left; NUMBER,
    MOMENT and LABEL never wrap or get cut."""
    if kind in FIXED:
        options.setdefault("justify", "right" if kind is Kind.NUMBER else "left")
        table.add_column(header, no_wrap=True, **options)  # type: ignore[arg-type]
    else:  # the weight rides on `ratio`, which rich reads only for tables that expand
        table.add_column(header, overflow="fold", ratio=weight, **options)  # type: ignore[arg-type]


def columns(table: Table, specs: Iterable[Spec]) -> None:
    """Several columns at once: (header, kind) or (header, kind, weight), in order."""
    for header, kind, *weight in specs:
        column(table, header, kind, *weight)


def print_table(table: Table, console: Console | LazyConsole) -> None:
    """Print `table` laid out to the console's width (see `lay_out`). The title goes on a line
    of its own, as wide as the console (rich would wrap it to the width of a narrow table)."""
    from rich.text import Text

    lay_out(table, console.width)
    if table.title:
        console.print(Text(str(table.title)), soft_wrap=False)
        table.title = None
    # Not soft-wrapped (a text cell wraps in its column); not cropped (a table too wide for any
    # layout runs past the edge rather than lose digits); no markup (a tag named `[sci-fi]`
    # is text, not a style).
    console.print(table, soft_wrap=False, crop=False, markup=False)


def lay_out(table: Table, width: int) -> None:
    """Fixed columns as wide as their widest cell; text columns share the rest by weight, each
    at least TEXT_FLOOR (or its header) wide and none wider than its widest cell. Left to
    itself, rich would cut numbers once the text columns are narrow and share out evenly."""
    fixed = [c for c in table.columns if c.no_wrap]
    text = [c for c in table.columns if not c.no_wrap]
    for each in fixed:
        each.min_width = _widest(each)
    # What rich puts between and around cells (padding, the spaces between columns).
    chrome = table._extra_width + sum(
        table._get_padding_width(i) for i in range(len(table.columns))
    )
    room = width - chrome - sum(each.min_width or 0 for each in fixed)
    for each, share in zip(text, _shares(text, room), strict=True):
        each.max_width = share


def _shares(text: list[Column], room: int) -> list[int]:
    """Widths for text columns in `room`: floors first, then one character at a time to the
    column with the least width per weight among those narrower than their widest cell."""
    from rich.cells import cell_len

    widest = [_widest(each) for each in text]
    floors = [max(TEXT_FLOOR, cell_len(str(each.header))) for each in text]
    widths = [min(pair) for pair in zip(widest, floors, strict=True)]
    spare = room - sum(widths)
    while spare > 0:
        open_ = [i for i, w in enumerate(widths) if w < widest[i]]
        if not open_:
            break
        i = min(open_, key=lambda i: widths[i] / (text[i].ratio or 1))
        widths[i] += 1
        spare -= 1
    return widths


def _widest(each: Column) -> int:
    from rich.cells import cell_len

    return max(map(cell_len, [str(each.header), *map(str, each.cells)]))


def counts_table(title: str, report: object, names: tuple[str, ...]) -> None:
    """One row of a report's counts under `title`, on stderr (stdout stays for data)."""
    table = new_table(title)
    columns(table, [(name.replace("_", " "), Kind.NUMBER) for name in names])
    table.add_row(*(count(getattr(report, name)) for name in names))
    print_table(table, stderr)


def plain(value: object) -> str:
    """A value as a person reads it: lists joined with commas, mappings as `key value` pairs,
    moments in local time, yes / no, nothing for None (never a Python repr)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return local_minute(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return ", ".join(f"{key} {plain(each)}" for key, each in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(map(plain, value))
    return str(value)


def count(value: int | None) -> str:
    """A count for a table: `1,234,567`; blank when unknown."""
    return "" if value is None else f"{value:,}"


def moment(value: datetime | None, never: str = "") -> str:
    """A moment for a table: local time to the minute; `never` when there is none."""
    return never if value is None else local_minute(value)


def took(seconds: float | None) -> str:
    """A run's duration for a table: `1.9 s`, `3m05s`; `-` while unknown."""
    return "-" if seconds is None else short_duration(seconds)
