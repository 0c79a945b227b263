"""`catalog media list` and `show`: keyset pages, filters, cursors and formats, both databases."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, insert, inspect, select

from catalog.db import migrate
from catalog.db.engine import recorded_statements
from catalog.db.models import (
    GENRE,
    LIBRARY,
    MEDIA,
    MEDIA_GENRE,
    MEDIA_TAG,
    MEDIA_TAGLINE,
    PROCESS_RUN,
    SERVER,
    TAG,
)
from catalog.reads.items import (
    ANY,
    ITEM_FIELDS,
    MISSING,
    MediaFilter,
    Sort,
    iter_media_pages,
    list_media,
    parse_years,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)
SORTS = ["name", "year", "added", "rating"]

# -- seeding ------------------------------------------------------------------------------------


@dataclass
class Item:
    """An item to write straight into the catalog; `name` doubles as its external id."""

    name: str
    library: str = "Movies"
    kind: str = "movie"
    sort_name: str | None = None
    year: int | None = 2000
    rating: float | None = 7.0
    added: datetime | None = T0
    tags: list[tuple[str, str]] = field(default_factory=list)  # (tag, origin)
    genres: list[str] = field(default_factory=list)
    taglines: list[tuple[str, str]] = field(default_factory=list)  # (origin, text)
    missing: bool = False
    tagging: str | None = None  # status of its process_run row for tagging, if any


LIBRARIES = {"Movies": "home", "Shows": "home", "Films": "cabin"}


def seed(engine: Engine, items: list[Item]) -> dict[str, int]:
    """Write `items` (and whatever servers, libraries, tags and genres they name); returns
    name → media id. Ids follow the list order, so ties break in list order."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        libraries = _libraries(conn)
        conn.execute(
            insert(MEDIA),
            [
                {
                    "library_id": libraries[i.library], "external_id": i.name, "kind": i.kind,
                    "name": i.name, "sort_name": i.sort_name or i.name.lower(), "year": i.year,
                    "community_rating": i.rating, "added_at": i.added, "subtitles": False,
                    "content_hash": "x", "first_seen_at": now, "updated_at": now,
                    "last_seen_at": now, "missing_since": now if i.missing else None,
                }
                for i in items
            ],
        )  # fmt: skip
        ids = dict(
            conn.execute(
                select(MEDIA.c.external_id, MEDIA.c.id).where(
                    MEDIA.c.external_id.in_([i.name for i in items])
                )
            ).all()
        )
        _links(conn, items, ids, now)
    return ids


def _libraries(conn: Any) -> dict[str, int]:
    found = dict(conn.execute(select(LIBRARY.c.name, LIBRARY.c.id)).all())
    if found:
        return found
    servers = {}
    for name in sorted(set(LIBRARIES.values())):
        servers[name] = conn.execute(
            insert(SERVER).returning(SERVER.c.id),
            {"name": name, "kind": "jellyfin", "url": "http://127.0.0.1:9"},
        ).scalar_one()
    for name, server in LIBRARIES.items():
        found[name] = conn.execute(
            insert(LIBRARY).returning(LIBRARY.c.id),
            {"server_id": servers[server], "external_id": name, "name": name, "kind": "movies"},
        ).scalar_one()
    return found


def _links(conn: Any, items: list[Item], ids: dict[str, int], now: datetime) -> None:
    tags = _ids_by_name(conn, TAG, {t for i in items for t, _ in i.tags})
    genres = _ids_by_name(conn, GENRE, {g for i in items for g in i.genres})
    rows = {
        MEDIA_TAG: [
            {"media_id": ids[i.name], "tag_id": tags[t], "origin": o}
            for i in items
            for t, o in i.tags
        ],
        MEDIA_GENRE: [
            {"media_id": ids[i.name], "genre_id": genres[g]} for i in items for g in i.genres
        ],
        MEDIA_TAGLINE: [
            {"media_id": ids[i.name], "origin": o, "position": p, "text": text}
            for i in items
            for p, (o, text) in enumerate(i.taglines)
        ],
        PROCESS_RUN: [
            {"media_id": ids[i.name], "process": "tagging", "last_run_at": now, "status": i.tagging,
             "last_success_at": now if i.tagging == "ok" else None}
            for i in items
            if i.tagging
        ],
    }  # fmt: skip
    for table, values in rows.items():
        if values:
            conn.execute(insert(table), values)


def _ids_by_name(conn: Any, table: Any, names: set[str]) -> dict[str, int]:
    known = dict(conn.execute(select(table.c.name, table.c.id)).all())
    new = sorted(names - known.keys())
    if new:
        conn.execute(insert(table), [{"name": name} for name in new])
        known = dict(conn.execute(select(table.c.name, table.c.id)).all())
    return known


# -- reading helpers ----------------------------------------------------------------------------


def every_page(
    engine: Engine, filters: MediaFilter | None = None, sort: Sort | None = None, limit: int = 3
) -> list[list[str]]:
    """Names on each page, following the cursors with list_media."""
    pages, cursor = [], None
    with engine.connect() as conn:
        while True:
            page = list_media(conn, filters, sort, cursor, limit)
            pages.append([item["name"] for item in page.items])
            cursor = page.next_cursor
            if cursor is None:
                return pages


def names(engine: Engine, **filters: Any) -> list[str]:
    """Every name the filters let through, in name order."""
    return [n for page in every_page(engine, MediaFilter(**filters), limit=50) for n in page]


def cli_pages(cli: Any, *args: str) -> list[list[dict]]:
    """Every page of `catalog media list ARGS --format json`, following the cursors."""
    found, cursor = [], None
    while True:
        after = ["--after", cursor] if cursor else []
        out = cli("media", "list", *args, "--format", "json", *after)
        assert out.exit_code == 0, out.stderr
        document = out.json()
        found.append(document["items"])
        cursor = document["next_cursor"]
        if cursor is None:
            return found


def expected_order(items: list[Item], sort: str, desc: bool) -> list[str]:
    """Python's statement of the order: items with the key by (key, id) in the direction
    asked, then items without it by id in that direction."""
    key = {
        "name": lambda i: i.sort_name or i.name.lower(),
        "year": lambda i: i.year,
        "added": lambda i: i.added,
        "rating": lambda i: i.rating,
    }[sort]
    position = {i.name: n for n, i in enumerate(items)}  # ids follow the list order
    keyed = sorted(
        (i for i in items if key(i) is not None), key=lambda i: (key(i), position[i.name])
    )
    unkeyed = [i for i in items if key(i) is None]
    if desc:
        keyed.reverse()
        unkeyed.reverse()
    return [i.name for i in keyed + unkeyed]


# -- paging -------------------------------------------------------------------------------------


def tied_items() -> list[Item]:
    """Ties and missing keys in every sort column, ids not in key order."""
    items = []
    for n in range(23):
        items.append(
            Item(
                f"item{n:02d}",
                sort_name=["b", "a", "c", "a"][n % 4] + ("" if n % 3 else " tie"),
                year=None if n % 5 == 0 else 1990 + n % 3,
                rating=None if n % 7 == 3 else [5.5, 7.0, 5.5, 9.25][n % 4],
                added=None if n % 6 == 1 else T0 + timedelta(days=n % 4, microseconds=n % 2),
            )
        )
    return items


@pytest.mark.parametrize("desc", [False, True], ids=["asc", "desc"])
@pytest.mark.parametrize("sort", SORTS)
def test_paging_visits_every_item_once_in_order_with_ties_and_missing_keys(engine, sort, desc):
    items = tied_items()
    seed(engine, items)
    for limit in (1, 4, 23, 50):
        pages = every_page(engine, sort=Sort(sort, desc), limit=limit)
        assert [n for page in pages for n in page] == expected_order(items, sort, desc)
        assert all(len(page) == limit for page in pages[:-1])


def test_the_cli_pages_through_every_item_with_its_cursor(cli, engine):
    items = tied_items()
    seed(engine, items)
    pages = cli_pages(cli, "--sort", "rating", "--desc", "--limit", "5")
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    assert [i["name"] for p in pages for i in p] == expected_order(items, "rating", True)


@pytest.mark.parametrize("sort", SORTS)
def test_items_inserted_between_pages_appear_once_if_after_the_cursor(engine, sort):
    items = [
        Item(f"m{n}", year=2000 + n, rating=float(n), added=T0 + timedelta(n)) for n in range(6)
    ]
    seed(engine, items)
    with engine.connect() as conn:
        first = list_media(conn, sort=Sort(sort), limit=3)
    assert [i["name"] for i in first.items] == ["m0", "m1", "m2"]
    seed(
        engine,
        [
            Item("m00", year=2000, rating=0.0, added=T0),  # ties m0 on every key, larger id
            Item("m0_", sort_name="a", year=1999, rating=-1.0, added=T0 - timedelta(1)),
            Item("m9", year=2009, rating=9.0, added=T0 + timedelta(9)),
            Item("mz", sort_name="zz", year=None, rating=None, added=None),
        ],
    )
    rest = []
    with engine.connect() as conn:
        cursor = first.next_cursor
        while cursor:
            page = list_media(conn, sort=Sort(sort), after=cursor, limit=3)
            rest += [i["name"] for i in page.items]
            cursor = page.next_cursor
    # m00 sorts right after m0 (same key, larger id): before the cursor, like m0_.
    assert rest == ["m3", "m4", "m5", "m9", "mz"]


def test_all_pages_stream_from_a_cursor(engine):
    seed(engine, [Item(f"x{n:03d}") for n in range(25)])
    with engine.connect() as conn:
        first = list_media(conn, limit=10)
        pages = list(iter_media_pages(conn, after=first.next_cursor, page_size=4))
    assert [len(p.items) for p in pages] == [4, 4, 4, 3]
    assert [i["name"] for p in pages for i in p.items] == [f"x{n:03d}" for n in range(10, 25)]


@pytest.mark.parametrize("limit", [10, 500])
def test_a_page_costs_four_statements_whatever_its_size(engine, limit):
    items = [
        Item(
            f"s{n:04d}", year=None if n % 9 == 0 else 1950 + n % 50,
            genres=["Drama", "Noir"][: n % 3], taglines=[("server", f"t{n}")],
            tags=[("noir", "server"), ("night", "tagger")][: n % 3],
        )
        for n in range(1500)
    ]  # fmt: skip
    seed(engine, items)
    with engine.connect() as conn, recorded_statements(engine) as seen:
        page = list_media(conn, sort=Sort("year"), limit=limit)
        deep = list_media(conn, MediaFilter(tags=("noir",)), Sort("year"), page.next_cursor, limit)
    assert len(page.items) == len(deep.items) == limit
    assert len(seen) == 8, seen


# -- filters ------------------------------------------------------------------------------------


@pytest.fixture
def shelf(engine: Engine) -> Engine:
    seed(
        engine,
        [
            Item("Laura", year=1944, genres=["Drama", "Film-Noir"],
                 tags=[("noir", "server"), ("detective", "tagger")], tagging="ok"),
            Item("Gilda", year=1946, genres=["Drama"], tags=[("noir", "tagger")], tagging="failed"),
            Item("Heat", year=1995, genres=["Crime", "Drama"], tags=[("heist", "server")]),
            Item("Alien", year=1979, genres=["Horror", "Science Fiction"],
                 tags=[("space", "manual")]),
            Item("Twin Peaks", library="Shows", kind="series", year=1990, genres=["Drama"],
                 tags=[("noir", "server")]),
            Item("Pilot", library="Shows", kind="episode", year=1990, tagging="ok"),
            Item("Metropolis", library="Films", year=1927, genres=["Drama"],
                 tags=[("noir", "server")]),
            Item("Lost Film", year=1950, genres=["Drama"], tags=[("noir", "server")], missing=True),
            Item("Undated", year=None, genres=["Drama"]),
        ],
    )  # fmt: skip
    return engine


FILTER_CASES = {
    "library": ({"libraries": ("movies",)}, ["Alien", "Gilda", "Heat", "Laura", "Undated"]),
    "two libraries": ({"libraries": ("Shows", "Films")}, ["Metropolis", "Pilot", "Twin Peaks"]),
    "server": ({"server": "cabin"}, ["Metropolis"]),
    "kind": ({"kinds": ("Series", "episode")}, ["Pilot", "Twin Peaks"]),
    "tag of any origin": ({"tags": ("noir",)}, ["Gilda", "Laura", "Metropolis", "Twin Peaks"]),
    "tag in raw form": ({"tags": ("Noir",)}, ["Gilda", "Laura", "Metropolis", "Twin Peaks"]),
    "every tag": ({"tags": ("noir", "detective")}, ["Laura"]),
    "genre": ({"genres": ("film-noir",)}, ["Laura"]),
    "every genre": ({"genres": ("Drama", "Crime")}, ["Heat"]),
    "year": ({"year_from": 1990, "year_to": 1990}, ["Pilot", "Twin Peaks"]),
    "years from": ({"year_from": 1979}, ["Alien", "Heat", "Pilot", "Twin Peaks"]),
    "years to": ({"year_to": 1944}, ["Laura", "Metropolis"]),
    "missing": ({"presence": MISSING}, ["Lost Film"]),
    "missing too": ({"presence": ANY, "year_from": 1950, "year_to": 1950}, ["Lost Film"]),
    "untagged": (
        {"untagged": True, "libraries": ("Movies",)}, ["Alien", "Gilda", "Heat", "Undated"]
    ),
    "search": ({"search": "IL"}, ["Gilda", "Pilot"]),
    "combined": (
        {"libraries": ("Movies", "Films"), "tags": ("noir",), "genres": ("drama",),
         "year_from": 1920, "year_to": 1945, "kinds": ("movie",)},
        ["Laura", "Metropolis"],
    ),
    "nothing": ({"tags": ("noir",), "genres": ("Horror",)}, []),
    "unknown tag": ({"tags": ("no such tag",)}, []),
}  # fmt: skip


@pytest.mark.parametrize(("filters", "expected"), FILTER_CASES.values(), ids=list(FILTER_CASES))
def test_filters_compose(shelf, filters, expected):
    assert names(shelf, **filters) == expected


def test_by_default_missing_items_are_left_out(shelf):
    assert "Lost Film" not in names(shelf)
    assert len(names(shelf)) == 8 and len(names(shelf, presence=ANY)) == 9


def test_filters_on_the_command_line(cli, shelf):
    args = ["--library", "Movies", "--library", "Films", "--tag", "noir", "--genre", "Drama",
            "--kind", "movie", "--year", "1920..1945"]  # fmt: skip
    pages = cli_pages(cli, *args, "--limit", "1")
    assert [[i["name"] for i in p] for p in pages] == [["Laura"], ["Metropolis"]]
    assert [i["name"] for p in cli_pages(cli, "--missing") for i in p] == ["Lost Film"]
    assert [i["name"] for p in cli_pages(cli, "--year", "..1930") for i in p] == ["Metropolis"]
    untagged = cli_pages(cli, "--untagged", "--include-missing", "--library", "movies")
    assert [i["name"] for i in untagged[0]] == ["Alien", "Gilda", "Heat", "Lost Film", "Undated"]


@pytest.mark.parametrize(
    ("text", "years"),
    [("1999", (1999, 1999)), ("1940..1959", (1940, 1959)), ("1940..", (1940, None)),
     ("..1959", (None, 1959)), (" 2001 ", (2001, 2001))],
)  # fmt: skip
def test_year_ranges(text, years):
    assert parse_years(text) == years


@pytest.mark.parametrize("text", ["", "..", "19x", "1959..1940", "1940-1959", "1..2..3"])
def test_bad_year_ranges_are_usage_errors(cli, text):
    out = cli("media", "list", "--year", text)
    assert out.exit_code == 2 and "--year" in out.stderr and out.stdout == ""


def test_an_unknown_library_or_server_is_named(cli, shelf):
    out = cli("media", "list", "--library", "Movis")
    assert out.exit_code == 2
    assert out.stderr.strip() == (
        "error: no library named 'Movis' in the catalog "
        "(it has: 'Films' on 'cabin', 'Movies' on 'home', 'Shows' on 'home')"
    )
    out = cli("media", "list", "--server", "attic")
    assert out.exit_code == 2 and "no server named 'attic'" in out.stderr


# -- cursors ------------------------------------------------------------------------------------


def cursor_of(cli: Any, *args: str) -> str:
    return cli("media", "list", "--format", "json", "--limit", "2", *args).json()["next_cursor"]


def test_malformed_and_foreign_cursors_are_one_line_usage_errors(cli, shelf):
    by_year = cursor_of(cli, "--sort", "year")
    by_year_desc = cursor_of(cli, "--sort", "year", "--desc")
    tags_cursor = cli("tags", "--format", "json", "--limit", "1").json()["next_cursor"]
    cases = {
        "not base64 json": ("media", "list", "--after", "not-a-cursor"),
        "another sort": ("media", "list", "--sort", "rating", "--after", by_year),
        "another direction": ("media", "list", "--sort", "year", "--after", by_year_desc),
        "the tags listing": ("media", "list", "--after", tags_cursor),
        "a tampered key": ("media", "list", "--sort", "year", "--after", _tampered(by_year)),
        "with --all": ("media", "list", "--all", "--format", "json", "--after", by_year),
    }
    for case, args in cases.items():
        out = cli(*args)
        assert out.exit_code == 2, case
        assert out.stdout == "", case
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: invalid --after cursor: "), case
        assert lines[0].endswith("start again without --after"), case


def _tampered(cursor: str) -> str:
    import base64

    sort, _, media_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw = json.dumps([sort, "1999", media_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_a_cursor_of_a_deleted_item_still_continues_after_it(cli, shelf):
    cursor = cursor_of(cli)  # after Gilda
    with shelf.begin() as conn:
        conn.execute(MEDIA.delete().where(MEDIA.c.name == "Gilda"))
    names_after = [i["name"] for p in cli_pages(cli, "--after", cursor) for i in p]
    assert names_after == ["Heat", "Laura", "Metropolis", "Pilot", "Twin Peaks", "Undated"]


# -- formats ------------------------------------------------------------------------------------


def test_json_items_carry_every_field(cli, shelf):
    document = cli("media", "list", "--format", "json", "--tag", "detective").json()
    assert document["next_cursor"] is None
    [laura] = document["items"]
    assert list(laura) == list(ITEM_FIELDS)
    assert laura["name"] == "Laura" and laura["library"] == "Movies" and laura["year"] == 1944
    assert laura["tags"] == ["detective", "noir"]  # server and tagger, sorted
    assert laura["genres"] == ["Drama", "Film-Noir"]
    assert laura["missing_since"] is None and laura["added_at"].startswith("2024-01-01T00:00:00")


def test_ndjson_and_csv_parse_and_agree_with_json(cli, shelf):
    from_json = cli("media", "list", "--format", "json", "--limit", "4").json()["items"]
    out = cli("media", "list", "--format", "ndjson", "--limit", "4")
    assert [json.loads(line) for line in out.stdout.splitlines()] == from_json
    assert "next page: --after " in out.stderr
    out = cli("media", "list", "--format", "csv", "--limit", "4")
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert list(rows[0]) == list(ITEM_FIELDS)
    assert [r["name"] for r in rows] == [i["name"] for i in from_json]
    assert [r["tags"].split("|") if r["tags"] else [] for r in rows] == [
        i["tags"] for i in from_json
    ]
    assert rows[0]["year"] == "1979" and rows[0]["missing_since"] == ""


@pytest.mark.parametrize("output", ["json", "ndjson", "csv"])
def test_all_streams_every_page_as_one_document(engine, cli, output):
    seed(engine, [Item(f"e{n:04d}", tags=[("t", "server")]) for n in range(2_345)])
    out = cli("media", "list", "--all", "--format", output, "--sort", "added")
    assert out.exit_code == 0, out.stderr
    if output == "json":
        document = out.json()
        found = [i["name"] for i in document["items"]]
        assert document["next_cursor"] is None
    elif output == "ndjson":
        found = [json.loads(line)["name"] for line in out.stdout.splitlines()]
    else:
        found = [row["name"] for row in csv.DictReader(io.StringIO(out.stdout))]
    assert found == [f"e{n:04d}" for n in range(2_345)]


def test_all_refuses_the_table_format(cli, shelf):
    out = cli("media", "list", "--all", "--format", "table")
    assert out.exit_code == 2 and "--format" in out.stderr


def test_table_lists_the_page(cli, shelf):
    out = cli("media", "list", "--format", "table", "--genre", "Film-Noir")
    assert out.exit_code == 0 and "Laura" in out.stdout and "Heat" not in out.stdout


# -- show ---------------------------------------------------------------------------------------


def test_show_gives_tags_by_origin_genres_taglines_and_runs(engine, cli):
    ids = seed(
        engine,
        [
            Item("Laura", tags=[("noir", "server"), ("detective", "tagger"), ("noir", "tagger")],
                 genres=["Drama"], taglines=[("server", "Murder!"), ("tagger", "A portrait.")],
                 tagging="ok"),
        ],
    )  # fmt: skip
    item = cli("media", "show", str(ids["Laura"]), "--json").json()
    assert item["tags_by_origin"] == {"server": ["noir"], "tagger": ["detective", "noir"]}
    assert item["tags"] == ["detective", "noir"] and item["genres"] == ["Drama"]
    assert item["taglines"] == ["Murder!", "A portrait."]
    assert [(r["process"], r["status"]) for r in item["runs"]] == [("tagging", "ok")]
    assert item["library"] == "Movies" and item["server"] == "home"
    by_server_id = cli("media", "show", "Laura", "--json").json()
    assert by_server_id == item
    table = cli("media", "show", str(ids["Laura"]))
    assert "tags (tagger)" in table.stdout and "A portrait." in table.stdout


def test_show_of_an_unknown_item_is_an_error(cli, shelf):
    out = cli("media", "show", "424242")
    assert out.exit_code == 1
    assert out.stderr.strip() == "error: no item with id '424242' in the catalog"


def test_show_finds_a_numeric_server_id_that_is_no_catalog_id(engine, cli):
    ids = seed(engine, [Item("100000007")])  # Emby's ids are numbers
    item = cli("media", "show", "100000007", "--json").json()
    assert item["id"] == ids["100000007"] and item["external_id"] == "100000007"
    assert cli("media", "show", str(ids["100000007"]), "--json").json() == item


# -- migration ----------------------------------------------------------------------------------


def media_indexes(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return {ix["name"] for ix in inspect(conn).get_indexes("media")}


def test_the_read_indexes_migration_goes_down_and_up(engine):
    new = {"ix_media_sort_name_id", "ix_media_year_id", "ix_media_added_id", "ix_media_rating_id"}
    assert new <= media_indexes(engine) and "ix_media_library_sort" not in media_indexes(engine)
    config = migrate._config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0001")
    assert not new & media_indexes(engine) and "ix_media_library_sort" in media_indexes(engine)
    migrate.upgrade(engine)
    assert new <= media_indexes(engine) and "ix_media_library_sort" not in media_indexes(engine)
    with engine.connect() as conn:
        alias_indexes = {ix["name"] for ix in inspect(conn).get_indexes("tag_alias")}
    assert "ix_tag_alias_tag_id" in alias_indexes
