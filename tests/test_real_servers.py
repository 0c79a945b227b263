"""Real-server compatibility: captured answers replayed field by field (tests/data/README.md
names their sources), the views endpoints of each server and version, the Fields asked for,
and genres in the server's order on both databases."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
from conftest import TOKEN
from sqlalchemy import Engine, select

from catalog.config import ServerConfig, SyncConfig
from catalog.db.engine import in_connection
from catalog.db.models import MEDIA
from catalog.fakes.media_server import FakeLibrary, FakeMediaServer
from catalog.progress import QuietProgress
from catalog.reads.items import get_media
from catalog.retag import Selection, iter_overdue
from catalog.sources.connect import open_source
from catalog.sources.jellyfin import FIELDS
from catalog.sync import SyncOptions, SyncReport, run_sync

DATA = Path(__file__).parent / "data"


def replay(engine: Engine, page: bytes, kind: str, collection: str = "movies") -> SyncReport:
    """Sync one library whose /Items answer is `page`, through httpx.MockTransport."""
    folders = [{"Name": "Captured", "ItemId": "lib1", "CollectionType": collection}]

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/Library/VirtualFolders":
            return httpx.Response(200, json=folders)
        if request.url.path == "/Items":
            return httpx.Response(200, content=page)
        return httpx.Response(404)

    async def go() -> SyncReport:
        transport = httpx.MockTransport(answer)
        server = ServerConfig("captured", "http://captured", token="tok", kind=kind)
        async with open_source(server, SyncConfig(), transport=transport) as source:
            report = SyncReport(server="captured")
            return await run_sync(engine, source, server, SyncOptions(), QuietProgress(), report)

    return asyncio.run(go())


def shown(engine: Engine, external_id: str) -> dict[str, Any]:
    return in_connection(engine, get_media, external_id)


def test_emby_movie_capture_is_stored_field_by_field(engine: Engine) -> None:
    item = json.loads((DATA / "emby-movie-item.json").read_text())
    page = json.dumps({"Items": [item], "TotalRecordCount": 1}, ensure_ascii=False).encode()
    report = replay(engine, page, "emby")
    assert report.status == "ok" and report.libraries[0].inserted == 1
    movie = shown(engine, "368536")
    expected = {
        "kind": "movie", "name": "惊奇队长2", "sort_name": "JQDZ2", "year": 2023,
        "premiere": "2023-11-07", "community_rating": 5.9, "critic_rating": None,
        "official_rating": "PG-13", "subtitles": False, "runtime_s": 6284,
        "provider_ids": {"IMDB": "tt10676048", "Tmdb": "609681", "Tvdb": "134366"},
        "genres": ["科幻", "冒险", "动作"], "tags": [], "taglines": ["复联超强战力 集结惊奇联盟"],
    }  # fmt: skip
    for key, value in expected.items():
        got = movie[key]
        assert (got.isoformat() if isinstance(got, date) else got) == value, key
    assert movie["overview"].startswith('"惊奇队长"卡罗尔·丹弗斯')
    with engine.connect() as conn:
        added = conn.execute(select(MEDIA.c.added_at)).scalar_one()
    assert added == datetime(2026, 4, 9, 11, 26, 32, tzinfo=UTC)


def test_emby_episode_and_series_capture_is_stored_field_by_field(engine: Engine) -> None:
    page = (DATA / "emby-episodes-page.json").read_bytes()
    report = replay(engine, page, "emby", "tvshows")
    assert report.status == "ok" and report.libraries[0].inserted == 2
    episode, series = shown(engine, "4689622"), shown(engine, "303167")
    assert (episode["kind"], episode["season"], episode["episode"]) == ("episode", 1, 9)
    assert episode["parent_external_id"] == "4689614"
    assert (episode["premiere"], episode["runtime_s"]) == (date(2022, 4, 14), 1590)
    assert episode["genres"] == [] and episode["subtitles"] is False
    assert (series["kind"], series["name"], series["year"]) == ("series", "Absentia", 2017)
    assert series["genres"] == ["Drama", "Crime", "Thriller", "Mystery"], "the server's order"
    assert series["official_rating"] == "TV-MA" and series["community_rating"] == 7.3
    assert series["provider_ids"] == {"Imdb": "tt6794990", "Tvdb": "330500"}
    assert series["premiere"] == date(2017, 9, 25)


def test_jellyfin_10_10_capture_is_stored_field_by_field(engine: Engine) -> None:
    page = (DATA / "jellyfin-10.10-items-page.json").read_bytes()
    report = replay(engine, page, "jellyfin", "tvshows")
    assert report.status == "ok" and report.libraries[0].inserted == 3
    series = shown(engine, "2738871dd7a147758c789d4755f965b6")
    movie = shown(engine, "e26770fa7320cf02f6bc1436f7ce1d63")
    episode = shown(engine, "ebf426612fd9faef245484ffccadceec")
    assert (series["kind"], series["official_rating"], series["runtime_s"]) == (
        "series", "TV-14", 1500,
    )  # fmt: skip
    assert (movie["name"], movie["year"], movie["community_rating"]) == ("1992", 2024, 6.6)
    assert movie["premiere"] == date(2024, 8, 29) and movie["runtime_s"] == 5831
    assert (episode["season"], episode["episode"], episode["community_rating"]) == (1, 3, 8.263)
    assert episode["parent_external_id"] == "2738871dd7a147758c789d4755f965b6"
    assert episode["runtime_s"] is None and episode["added_at"] is None


def test_items_are_asked_for_without_official_rating_in_fields(
    cli: Any, fake: FakeMediaServer
) -> None:
    assert cli("sync").exit_code == 0
    asked = [r.query["Fields"].split(",") for r in fake.requests if r.path == "/Items"]
    assert asked and all("OfficialRating" not in fields for fields in asked)
    assert set(FIELDS.split(",")) >= {"Tags", "Genres", "ProviderIds", "DateCreated"}


def _user_token_sync(cli: Any, server: FakeMediaServer, kind: str) -> Any:
    server.user_token = "user-token"
    return cli(
        "sync", "--json", url=server.url,
        env={"CATALOG_SERVER_TOKEN": "user-token", "CATALOG_SERVER_KIND": kind},
    )  # fmt: skip


def test_a_user_token_on_jellyfin_10_8_lists_views_at_users_id_views(
    cli: Any, engine: Engine
) -> None:
    with FakeMediaServer([FakeLibrary("Movies", "movies", 7)], token=TOKEN) as server:
        server.legacy_views = True  # no /UserViews
        out = _user_token_sync(cli, server, "jellyfin")
        paths = [r.path for r in server.requests]
    assert out.exit_code == 0, out.stderr
    assert out.json()["libraries"][0]["inserted"] == 7
    user_id = FakeMediaServer._me(server)["Id"]
    assert "/Users/Me" in paths and f"/Users/{user_id}/Views" in paths


def test_a_user_token_on_emby_finds_its_user_in_sessions(cli: Any, engine: Engine) -> None:
    libraries = [FakeLibrary("Movies", "movies", 6)]
    with FakeMediaServer(libraries, kind="emby", token=TOKEN) as server:
        out = _user_token_sync(cli, server, "emby")
        paths = [r.path for r in server.requests]
    assert out.exit_code == 0, out.stderr
    assert out.json()["libraries"][0]["inserted"] == 6
    user_id = FakeMediaServer._me(server)["Id"]
    assert paths[:3] == ["/Library/VirtualFolders", "/Sessions", f"/Users/{user_id}/Views"]


def test_genres_keep_the_server_order_in_reads_and_tagger_requests(
    cli: Any, fake: FakeMediaServer, engine: Engine
) -> None:
    fake.edit("Movies", 4, Genres=["Western", "Action", "Drama"])
    assert cli("sync").exit_code == 0
    external_id = fake.item_id("Movies", 4)
    assert shown(engine, external_id)["genres"] == ["Western", "Action", "Drama"]
    listed = cli("media", "list", "--search", fake.item("Movies", 4)["Name"], "--format", "json")
    found = [i for i in listed.json()["items"] if i["external_id"] == external_id]
    assert found[0]["genres"] == ["Western", "Action", "Drama"]
    with engine.connect() as conn:
        media_id = conn.execute(
            select(MEDIA.c.id).where(MEDIA.c.external_id == external_id)
        ).scalar_one()
    requests = [r for b in iter_overdue(engine, Selection(), datetime.now(UTC)) for r in b]
    sent = next(r for r in requests if r.media_id == media_id)
    assert sent.genres == ("Western", "Action", "Drama")
