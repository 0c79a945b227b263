"""`catalog media`: list the catalog's items a page at a time (or all of them), show one."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from contextlib import suppress
from enum import StrEnum
from typing import Annotated, Any

import typer

from catalog.cli.common import (
    ConfigOpt,
    DatabaseOpt,
    DebugOpt,
    JsonOpt,
    catalog_connection,
    errors,
    open_catalog,
    print_json,
    setup_logging,
    stdout,
)
from catalog.cli.output import Format, ItemWriter, next_page_hint
from catalog.cli.parsing import CatalogTyper, closed_set
from catalog.cli.tables import Kind, column, columns, new_table, plain, print_table
from catalog.config import load_settings
from catalog.items import MEDIA_KINDS
from catalog.reads.items import (
    ANY,
    ITEM_FIELDS,
    ITEM_TIMESTAMPS,
    MAX_PAGE,
    MISSING,
    PRESENT,
    MediaFilter,
    MediaPage,
    Sort,
    get_media,
    iter_media_pages,
    list_media,
    parse_years,
)
from catalog.reads.libraries import server_count

ALL_PAGE_SIZE = 2_000  # --all reads this many items per query: few round trips, small memory

YEAR_HELP = "Released in this year or range, inclusive (1940..1959; 1940.. and ..1959 are open)."
FORMAT_HELP = "Output format (default: table on a terminal, else json)."

app = CatalogTyper(help="The catalog's items: list them with filters, a page at a time; show one.")


MediaKind = closed_set("MediaKind", MEDIA_KINDS)


class SortKey(StrEnum):
    name = "name"
    year = "year"
    added = "added"
    rating = "rating"


def _years(value: str | None) -> tuple[int | None, int | None]:
    if value is None:
        return None, None
    try:
        return parse_years(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--year") from None


@app.command("list")
def list_command(
    library: Annotated[
        list[str] | None, typer.Option("--library", "-l", help="Only this library (repeatable).")
    ] = None,
    server: Annotated[
        str | None, typer.Option("--server", help="Only this server's items.")
    ] = None,
    kind: Annotated[
        list[MediaKind] | None,
        typer.Option(
            "--kind", case_sensitive=False, help="Of this kind (repeatable: any of them)."
        ),
    ] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option("--tag", help="Carrying this tag, of any origin (repeatable: all of them)."),
    ] = None,
    genre: Annotated[
        list[str] | None, typer.Option("--genre", help="Of this genre (repeatable: all of them).")
    ] = None,
    year: Annotated[
        str | None,
        typer.Option("--year", metavar="YEAR|A..B", help=YEAR_HELP),
    ] = None,
    missing: Annotated[
        bool, typer.Option("--missing", help="Only items the server no longer lists.")
    ] = False,
    include_missing: Annotated[
        bool, typer.Option("--include-missing", help="Present and missing items alike.")
    ] = False,
    untagged: Annotated[
        bool, typer.Option("--untagged", help="Only items never tagged successfully.")
    ] = False,
    search: Annotated[
        str | None, typer.Option("--search", help="Name contains this text (any case).")
    ] = None,
    sort: Annotated[
        SortKey, typer.Option("--sort", help="Order (ties by id; items without the key last).")
    ] = SortKey.name,
    desc: Annotated[bool, typer.Option("--desc", help="Descending order.")] = False,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=MAX_PAGE, help="Items per page.")
    ] = 50,
    after: Annotated[
        str | None, typer.Option("--after", help="Next page: the cursor the last page gave.")
    ] = None,
    all_pages: Annotated[
        bool,
        typer.Option("--all", help="Every page from --after on, streamed (not with table)."),
    ] = False,
    output: Annotated[
        Format | None,
        typer.Option("--format", help=FORMAT_HELP, show_default=False),
    ] = None,
    config: ConfigOpt = None,
    database_url: DatabaseOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Items a page at a time, filtered and sorted; the next page with --after CURSOR."""
    output = output or (Format.table if stdout.is_terminal else Format.json)
    if missing and include_missing:
        raise typer.BadParameter("give --missing or --include-missing, not both")
    if all_pages and output is Format.table:
        raise typer.BadParameter("--all streams data: use --format json, ndjson or csv")
    years = _years(year)
    filters = MediaFilter(
        libraries=tuple(library or ()), server=server, kinds=tuple(k.value for k in kind or ()),
        tags=tuple(tag or ()), genres=tuple(genre or ()), year_from=years[0], year_to=years[1],
        presence=MISSING if missing else ANY if include_missing else PRESENT,
        untagged=untagged, search=search,
    )  # fmt: skip
    setup_logging(True, debug)
    with errors(debug):
        engine = open_catalog(load_settings(config, database_url=database_url).database_url)
        try:
            with engine.connect() as conn:
                order = Sort(sort.value, desc)
                if all_pages:
                    pages = iter_media_pages(conn, filters, order, after, ALL_PAGE_SIZE)
                    _stream(pages, output)
                else:
                    page = list_media(conn, filters, order, after, limit)
                    several = output is Format.table and server_count(conn) > 1
                    _render_page(page.items, page.next_cursor, output, several)
        except BrokenPipeError:
            _reader_left()
        finally:
            engine.dispose()


def _reader_left() -> None:
    """The reader of stdout (head, less) stopped: not worth a message. Point stdout at
    /dev/null so the interpreter's final flush can't fail again."""
    with suppress(OSError, ValueError, io.UnsupportedOperation):  # stdout without a descriptor
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _stream(pages: Iterator[MediaPage], output: Format) -> None:
    first = next(pages)  # a bad cursor or filter fails here, before any output
    writer = ItemWriter(output, ITEM_FIELDS, ITEM_TIMESTAMPS)
    writer.write(first.items)
    for page in pages:
        writer.write(page.items)
    writer.close(None)


# The table of `media list`; the server column only when the catalog has several servers.
LIST_COLUMNS = (
    ("id", Kind.NUMBER), ("name", Kind.TEXT, 4), ("year", Kind.NUMBER), ("kind", Kind.LABEL),
    ("server", Kind.TEXT), ("library", Kind.TEXT), ("rating", Kind.NUMBER),
    ("genres", Kind.TEXT), ("tags", Kind.TEXT, 2),
)  # fmt: skip


def _render_page(
    items: list[dict[str, Any]], cursor: str | None, output: Format, several_servers: bool = False
) -> None:
    if output is not Format.table:
        writer = ItemWriter(output, ITEM_FIELDS, ITEM_TIMESTAMPS)
        writer.write(items)
        writer.close(cursor)
        return
    table = new_table()
    shown = [spec for spec in LIST_COLUMNS if several_servers or spec[0] != "server"]
    columns(table, shown)
    for item in items:
        rating = item["community_rating"]
        cells = {
            "id": str(item["id"]),
            "name": item["name"] + (" (missing)" if item["missing_since"] else ""),
            "year": str(item["year"] or ""), "kind": item["kind"], "server": item["server"],
            "library": item["library"], "rating": f"{rating:.1f}" if rating is not None else "",
            "genres": ", ".join(item["genres"]), "tags": _shorten(item["tags"]),
        }  # fmt: skip
        table.add_row(*(cells[spec[0]] for spec in shown))
    print_table(table, stdout)
    if cursor:
        next_page_hint(cursor)


def _shorten(names: list[str], most: int = 4) -> str:
    shown = ", ".join(names[:most])
    return f"{shown} (+{len(names) - most})" if len(names) > most else shown


@app.command()
def show(
    item: Annotated[
        str, typer.Argument(metavar="ITEM", help="The item's id, or the server's id for it.")
    ],
    config: ConfigOpt = None,
    database_url: DatabaseOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """One item in full: its fields, tags by origin, genres, taglines and process runs."""
    setup_logging(True, debug)
    with errors(debug), catalog_connection(config, database_url) as conn:
        found = get_media(conn, item)
    if json_out:
        print_json(found)
        return
    _render_item(found)


def _render_item(item: dict[str, Any]) -> None:
    table = new_table(f"{item['name']} ({item['id']})", header=False)
    column(table, "field", Kind.LABEL, style="bold")
    column(table, "value")
    skip = {"tags_by_origin", "taglines_by_origin", "runs", "taglines", "tags", "overview"}
    for key, value in item.items():
        if key not in skip:
            table.add_row(key, plain(value))
    for origin, names in item["tags_by_origin"].items():
        table.add_row(f"tags ({origin})", plain(names))
    for tagline in item["taglines_by_origin"]:
        table.add_row(f"tagline ({tagline['origin']})", tagline["text"])
    for run in item["runs"]:
        outcome = run["status"] + (f": {run['error']}" if run["error"] else "")
        table.add_row(f"run {run['process']}", f"{plain(run['last_run_at'])} {outcome}")
    table.add_row("overview", item["overview"] or "")
    print_table(table, stdout)
