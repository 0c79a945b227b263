"""Bad items never block a library: each is stored with the offending value made safe (as the
README's "How a sync behaves" documents) or skipped and counted, every other item of its page
and library is stored, nothing written before is lost, and the next run converges."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import TOKEN
from sqlalchemy import Engine, func, select

from catalog.config import ServerConfig
from catalog.db.models import GENRE, MEDIA, MEDIA_GENRE, MEDIA_TAG, MEDIA_TAGLINE, PROCESS_RUN, TAG
from catalog.fakes.media_server import FakeLibrary, FakeMediaServer, Faults, ItemShape
from catalog.fakes.tagger import FakeTagger, TaggerFaults
from catalog.items import InvalidItem, Library, MediaItem, Page, RawItem
from catalog.sync import SyncOptions, SyncReport, run_sync

MOVIES = 60


def rows(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return {r.external_id: r for r in conn.execute(select(MEDIA))}


def names(engine: Engine, external_id: str, link: Any, table: Any, key: str) -> list[str]:
    with engine.connect() as conn:
        query = (
            select(table.c.name)
            .join(link, link.c[key] == table.c.id)
            .join(MEDIA, MEDIA.c.id == link.c.media_id)
            .where(MEDIA.c.external_id == external_id)
        )
        return sorted(conn.execute(query).scalars())


def sync_movies(cli: Any) -> dict[str, Any]:
    out = cli("sync", "--library", "Movies", "--json")
    assert out.exit_code in (0, 3), out.stderr
    return out.json()["libraries"][0]


def test_a_page_with_a_lone_surrogate_or_invalid_utf8_still_stores_every_item(
    cli: Any, fake: FakeMediaServer, engine: Engine
) -> None:
    fake.faults = Faults(undecodable={5: "surrogate", 30: "utf8"})
    result = sync_movies(cli)
    assert (result["inserted"], result["skipped"]) == (MOVIES, 0)
    stored = rows(engine)
    assert len(stored) == MOVIES
    for index, replaced in ((5, "\ufffd"), (30, "\ufffd\ufffd")):  # one per bad byte
        served = fake.item("Movies", index)
        assert stored[served["Id"]].name == replaced + served["Name"], "the bad text, replaced"
    again = sync_movies(cli)
    assert (again["unchanged"], again["inserted"], again["updated"]) == (MOVIES, 0, 0)


# (fields set on item 7, what the catalog then holds for it)
MADE_SAFE = {
    "premiere-after-9999-in-utc": (
        {"PremiereDate": "9999-12-31T23:00:00-05:00"}, lambda r, e: r.premiere is None
    ),
    "offset-postgres-refuses": (
        {"DateCreated": "0001-01-02T00:00:00+23:59"}, lambda r, e: r.added_at is None
    ),
    "year-2-to-the-40": ({"ProductionYear": 2**40}, lambda r, e: r.year is None),
    "official-rating-1000-chars": (
        {"OfficialRating": "R" * 1000}, lambda r, e: r.official_rating == "R" * 40
    ),
    "nul-in-every-text": (
        {"Name": "Blade\x00 Runner", "SortName": "blade\x00runner", "Overview": "a\x00b",
         "OfficialRating": "P\x00G", "Taglines": ["one\x00two"], "Genres": ["Dra\x00ma"],
         "Tags": ["cyber\x00punk"], "ProviderIds": {"Imdb": "tt\x00123"}},
        lambda r, e: (r.name, r.sort_name, r.overview, r.official_rating, r.provider_ids)
        == ("Blade Runner", "bladerunner", "ab", "PG", {"Imdb": "tt123"})
        and names(e, r.external_id, MEDIA_TAG, TAG, "tag_id") == ["cyberpunk"]
        and names(e, r.external_id, MEDIA_GENRE, GENRE, "genre_id") == ["Drama"],
    ),
    "tag-name-over-200": (
        {"Tags": ["x" * 300, "short"]},
        lambda r, e: names(e, r.external_id, MEDIA_TAG, TAG, "tag_id") == ["short", "x" * 200],
    ),
    "numeric-provider-id": (
        {"ProviderIds": {"Tmdb": 550, "Imdb": "tt0137523", "Tvdb": None}},
        lambda r, e: r.provider_ids == {"Imdb": "tt0137523", "Tmdb": "550"},
    ),
    "series-id-over-64": (
        {"Type": "Episode", "SeriesId": "s" * 65},
        lambda r, e: r.kind == "episode" and r.parent_external_id is None,
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(MADE_SAFE), ids=list(MADE_SAFE))
def test_a_bad_value_is_made_safe_and_nothing_else_is_lost(
    cli: Any, fake: FakeMediaServer, engine: Engine, case: str
) -> None:
    assert sync_movies(cli)["inserted"] == MOVIES
    before = rows(engine)
    fields, holds = MADE_SAFE[case]
    fake.edit("Movies", 7, **fields)
    result = sync_movies(cli)
    assert (result["updated"], result["unchanged"], result["skipped"]) == (1, MOVIES - 1, 0)
    after = rows(engine)
    assert set(after) == set(before), "every item of the library is still there"
    bad = fake.item_id("Movies", 7)
    assert holds(after[bad], engine)
    for external_id, row in before.items():
        if external_id != bad:
            assert after[external_id].name == row.name
    again = sync_movies(cli)
    assert (again["unchanged"], again["updated"]) == (MOVIES, 0), "the next run converges"


@pytest.mark.parametrize(
    ("bad_id", "reason"),
    [("f" * 65, "Id is 65 characters, over 64"), ("ab\x00cd", "Id has NUL characters")],
    ids=["over-64", "nul"],
)
def test_an_id_that_cannot_be_a_key_is_skipped_and_counted(
    cli: Any, fake: FakeMediaServer, engine: Engine, bad_id: str, reason: str
) -> None:
    fake.edit("Movies", 3, Id=bad_id)
    for _ in range(2):  # and again: the next run is the same, the rest stays
        out = cli("sync", "--library", "Movies", "--json")
        assert out.exit_code == 3, out.stderr
        result = out.json()["libraries"][0]
        assert result["skipped"] == 1
        assert reason in out.stderr
        assert len(rows(engine)) == MOVIES - 1


def test_emby_tags_come_from_tag_items_and_genres_keep_their_order(
    database_url: str, engine: Engine, cli: Any
) -> None:
    with FakeMediaServer([FakeLibrary("Movies", "movies", 20)], kind="emby", token=TOKEN) as emby:
        out = cli("sync", "--json", url=emby.url, env={"CATALOG_SERVER_KIND": "emby"})
        assert out.exit_code == 0, out.stderr
        served = {i["Id"]: i for i in emby.items("Movies")}
    stored = rows(engine)
    assert set(stored) == set(served)
    assert any(i["TagItems"] for i in served.values())
    for external_id, item in served.items():
        assert "Tags" not in item and "HasSubtitles" not in item
        tags = names(engine, external_id, MEDIA_TAG, TAG, "tag_id")
        assert tags == sorted({t["Name"].strip() for t in item["TagItems"]})
        assert stored[external_id].subtitles is False


def test_explicit_nulls_keep_the_item(database_url: str, engine: Engine, cli: Any) -> None:
    shape = ItemShape(tags=0, genres=0, taglines=0, explicit_nulls=True)
    libraries = [FakeLibrary("Movies", "movies", 10), FakeLibrary("Home", "homevideos", 5)]
    with FakeMediaServer(libraries, token=TOKEN, shape=shape) as server:
        server.edit("Movies", 2, HasSubtitles=None, Overview=None)
        served = [*server.items("Movies"), *server.items("Home")]
        out = cli("sync", "--json", url=server.url)
    assert out.exit_code == 0, out.stderr
    assert all(i["Tags"] is None and i["Genres"] is None for i in served)
    assert any(i["ProviderIds"] is None for i in served)
    assert len(rows(engine)) == 15


def test_home_video_and_music_video_libraries_store_their_items(
    database_url: str, engine: Engine, cli: Any
) -> None:
    libraries = [
        FakeLibrary("Home", "homevideos", 12), FakeLibrary("Clips", "musicvideos", 8),
        FakeLibrary("Movies", "movies", 5),
    ]  # fmt: skip
    with FakeMediaServer(libraries, token=TOKEN) as server:
        out = cli("sync", "--json", url=server.url)
        asked = {
            r.query["ParentId"]: r.query["IncludeItemTypes"]
            for r in server.requests
            if r.path == "/Items"
        }
    assert out.exit_code == 0, out.stderr
    kinds = [r.kind for r in rows(engine).values()]
    assert (kinds.count("video"), kinds.count("musicvideo"), kinds.count("movie")) == (12, 8, 5)
    assert asked[libraries[2].id] == "Movie"
    assert "Video" in asked[libraries[0].id].split(",")


class _RefusedSource:
    """A source whose parser lets through a value the database refuses (year 2**70), as a
    parser without the schema's check would: the chunk is split to isolate it."""

    url = "http://source.invalid"

    def __init__(self, count: int, bad: set[int]) -> None:
        self.count, self.bad = count, bad

    async def libraries(self) -> list[Library]:
        return [Library("lib1", "Films", "movies")]

    def syncs_by_default(self, library: Library) -> bool:
        return True

    async def pages(self, library: Library, since: Any = None) -> AsyncIterator[Page]:
        yield Page([RawItem(f"id{n}", f"d{n}", b"{}") for n in range(self.count)], self.count)

    def parse(self, item: RawItem) -> MediaItem | InvalidItem:
        n = int(item.external_id[2:])
        year = 2**70 if n in self.bad else 2000
        return MediaItem(item.external_id, "movie", f"Film {n}", f"film {n}", year=year,
                         content_hash=item.digest)  # fmt: skip


class _Skips:
    """A progress sink that keeps the skipped items."""

    def __init__(self) -> None:
        self.skipped: list[InvalidItem] = []

    def started(self, task: str, total: int | None) -> None: ...

    def advanced(self, task: str, count: int = 1) -> None: ...

    def item_skipped(self, task: str, item: str | None, reason: str) -> None:
        self.skipped.append(InvalidItem(item, reason))

    def finished(self, task: str, done: int, summary: str) -> None: ...


def test_a_chunk_the_database_refuses_is_split_to_isolate_the_refused_items(
    engine: Engine,
) -> None:
    source, reporter = _RefusedSource(40, {3, 17}), _Skips()
    report = SyncReport(server="refusing")
    server = ServerConfig("refusing", source.url, token="")
    options = SyncOptions(chunk_size=40)
    asyncio.run(run_sync(engine, source, server, options, reporter, report))
    result = report.libraries[0]
    assert (result.inserted, result.skipped, report.status) == (38, 2, "partial")
    assert sorted(i.external_id for i in reporter.skipped) == ["id17", "id3"]
    assert all(i.reason.startswith("refused by the database: ") for i in reporter.skipped)
    assert set(rows(engine)) == {f"id{n}" for n in range(40)} - {"id3", "id17"}


@pytest.fixture
def tagger() -> Any:
    with FakeTagger() as fake:
        yield fake


def test_a_tagger_answer_with_a_nul_among_100_good_ones_fails_nothing_else(
    cli: Any, engine: Engine, tagger: FakeTagger, tmp_path: Path
) -> None:
    assert cli("sync", "--quiet").exit_code == 0
    with engine.connect() as conn:
        ids = sorted(conn.execute(select(MEDIA.c.id)).scalars())[:101]
    tagger.faults = TaggerFaults(nul_ids=frozenset({str(ids[40])}))
    config = tmp_path / "tagger.toml"
    config.write_text("[tagger]\nbatch_size = 200\nrate = 1000\nconcurrency = 8\n")
    out = cli("retag", "--config", str(config), "--limit", "101", "--json",
              env={"CATALOG_TAGGER_URL": tagger.url})  # fmt: skip
    assert out.exit_code == 0, out.stderr
    assert (out.json()["tagged"], out.json()["failed"]) == (101, 0)
    with engine.connect() as conn:
        tags = conn.execute(
            select(TAG.c.name).join(MEDIA_TAG, MEDIA_TAG.c.tag_id == TAG.c.id)
            .where(MEDIA_TAG.c.media_id == ids[40], MEDIA_TAG.c.origin == "tagger")
        ).scalars().all()  # fmt: skip
        taglines = conn.execute(
            select(MEDIA_TAGLINE.c.text).where(MEDIA_TAGLINE.c.media_id == ids[40])
        ).scalars().all()  # fmt: skip
        ok = conn.execute(
            select(func.count()).select_from(PROCESS_RUN).where(PROCESS_RUN.c.status == "ok")
        ).scalar_one()
    assert "nultag" in tags and taglines == ["ab"], "the NUL stripped, as documented"
    assert ok == 101


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_tagger_answer_the_database_refuses_fails_only_its_own_item(
    cli: Any, engine: Engine
) -> None:
    from catalog.retag import Outcome, write_batch
    from catalog.runs import utcnow
    from catalog.tagging import TagAnswer, TagRequest

    assert cli("sync", "--quiet").exit_code == 0
    with engine.connect() as conn:
        ids = sorted(conn.execute(select(MEDIA.c.id)).scalars())[:100]
    # An input hash longer than its column (32) is what no answer check can repair.
    outcomes = [
        Outcome(TagRequest(i, f"t{i}", "h" * (40 if n == 10 else 32)), TagAnswer(("good",)))
        for n, i in enumerate(ids)
    ]
    counts = write_batch(engine, outcomes, utcnow())
    assert (counts.tagged, counts.failed) == (99, 1)
    with engine.connect() as conn:
        failed = conn.execute(
            select(PROCESS_RUN.c.media_id, PROCESS_RUN.c.error).where(
                PROCESS_RUN.c.status == "failed"
            )
        ).all()
    assert [f.media_id for f in failed] == [ids[10]]
    assert failed[0].error.startswith("refused by the database: ")


def test_limits_are_the_schema_columns() -> None:
    from catalog import items
    from catalog.db.models import LIBRARY, TAG_ALIAS

    columns = {
        MEDIA.c.external_id: items.EXTERNAL_ID_CHARS,
        MEDIA.c.parent_external_id: items.EXTERNAL_ID_CHARS,
        LIBRARY.c.external_id: items.EXTERNAL_ID_CHARS,
        MEDIA.c.official_rating: items.OFFICIAL_RATING_CHARS,
        MEDIA.c.kind: items.KIND_CHARS,
        TAG.c.name: items.NAME_CHARS,
        GENRE.c.name: items.NAME_CHARS,
        TAG_ALIAS.c.raw_name: items.NAME_CHARS,
    }
    for column, limit in columns.items():
        assert column.type.length == limit, column
    assert json.dumps(items.INT32) == "[-2147483648, 2147483647]"
