"""Plex: real captured answers replayed through the source, and `catalog sync` against the fake
Plex server on loopback into a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import TOKEN, Outcome
from sqlalchemy import select
from test_sync import links_of, media_rows
from typer.testing import CliRunner

from catalog.cli import app
from catalog.config import ServerConfig, SyncConfig, load_settings
from catalog.db.models import MEDIA
from catalog.fakes.plex_server import FakeLibrary, FakePlexServer, Faults
from catalog.items import InvalidItem, Library, MediaItem
from catalog.progress import QuietProgress
from catalog.sources.connect import open_source
from catalog.sources.plex import PlexSource, parse_item, raw_item
from catalog.sync import SyncOptions, SyncReport, run_sync, select_libraries

DATA = Path(__file__).parent / "data" / "plex"
KINDS = {"movie": "movie", "show": "series", "episode": "episode"}


def capture(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


# -- real captures, replayed through the source ------------------------------------------------


def capture_transport(routes: dict[tuple[str, str | None], str], seen: list) -> httpx.MockTransport:
    """Serves the captures by (path, type=), paged by the container headers as Plex does."""

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.headers.get("X-Plex-Token") != TOKEN or "X-Plex-Token" in str(request.url):
            return httpx.Response(401)
        name = routes.get((request.url.path, request.url.params.get("type")))
        if name is None:
            return httpx.Response(200, json={"MediaContainer": {"size": 0, "totalSize": 0}})
        body = capture(name)
        items = body["MediaContainer"].get("Metadata")
        if items is not None:
            start = int(request.headers.get("X-Plex-Container-Start", "0"))
            size = int(request.headers.get("X-Plex-Container-Size", len(items)))
            body["MediaContainer"].update(
                Metadata=items[start : start + size], totalSize=len(items), offset=start
            )
        return httpx.Response(200, json=body)

    return httpx.MockTransport(handle)


ROUTES = {
    ("/library/sections", None): "sections.json",
    ("/library/sections/1/all", "1"): "movies_all_2024.json",
    ("/library/sections/3/all", "2"): "shows_all_2022.json",
    ("/library/sections/3/all", "4"): "episodes_all_2024.json",
    ("/library/sections/5/all", "1"): "movies_all_2022.json",
}


def replay(coroutine_of_source, page_size: int = 1, seen: list | None = None) -> Any:
    async def go() -> Any:
        transport = capture_transport(ROUTES, seen if seen is not None else [])
        server = ServerConfig("home", "http://plex.lan:32400", kind="plex", token=TOKEN)
        sync = SyncConfig(page_size=page_size)
        async with open_source(server, sync, transport=transport) as source:
            return await coroutine_of_source(source)

    return asyncio.run(go())


async def _parsed(source: PlexSource, library: Library) -> dict[str, MediaItem]:
    items = {}
    async for page in source.pages(library):
        for raw in page.items:
            item = source.parse(raw)
            assert isinstance(item, MediaItem), item
            items[item.external_id] = item
    return items


def test_captured_sections_become_libraries_and_only_video_ones_sync_by_default():
    async def libraries(source: PlexSource) -> tuple[list[Library], list[str], list[str]]:
        found = await source.libraries()
        by_default = select_libraries(found, (), source.syncs_by_default)
        named = select_libraries(found, ("music",), source.syncs_by_default)
        return found, [lib.name for lib in by_default], [lib.name for lib in named]

    found, by_default, named = replay(libraries)
    assert found == [
        Library("1", "Movies", "movies"), Library("3", "Anime", "tvshows"),
        Library("9", "Music", "music"), Library("5", "Graduation", "movies"),
    ]  # fmt: skip
    assert by_default == ["Movies", "Anime", "Graduation"]
    assert named == ["Music"]


def test_captured_movies_are_parsed_field_by_field_across_pages():
    seen: list[httpx.Request] = []
    movies = replay(lambda s: _parsed(s, Library("1", "Movies", "movies")), seen=seen)
    texas = movies["28550"]
    assert (texas.kind, texas.name, texas.sort_name, texas.year) == (
        "movie", "4 for Texas", "4 for Texas", 1963,
    )  # fmt: skip
    assert texas.premiere == date(1963, 12, 21)
    assert texas.community_rating == 3.7 and texas.critic_rating == 11.0
    assert texas.official_rating == "nl/14"
    assert texas.runtime_s == 6908
    assert texas.added_at == datetime.fromtimestamp(1586886369, UTC)
    assert texas.genres == ("Comedy", "Western")
    assert texas.taglines == ("The far out story of the far west",)
    assert texas.tags == () and texas.provider_ids == {}  # no labels; listed without Guid[]
    assert texas.overview.startswith("In the 1870s, two rival businessmen")
    assert texas.parent_external_id is None and texas.season is None and texas.episode is None
    assert movies["20936"].critic_rating == 9.0 and movies["20936"].year == 2008
    # Paged one item at a time, by headers, and never with the token in the URL.
    starts = [r.headers["X-Plex-Container-Start"] for r in seen if r.url.path.endswith("/all")]
    assert starts == ["0", "1", "2"]
    assert all(r.url.params["includeGuids"] == "1" for r in seen)


def test_captured_legacy_agent_movies_without_guids_or_audience_rating():
    movies = replay(lambda s: _parsed(s, Library("5", "Graduation", "movies")), page_size=10)
    bunny, interstate = movies["55"], movies["108"]
    assert bunny.runtime_s == 5 and bunny.community_rating is None and bunny.critic_rating == 62.0
    assert bunny.taglines == () and bunny.genres == ("Animation", "Comedy")
    assert interstate.taglines[0].startswith("It began as a wish")
    assert interstate.premiere == date(2002, 4, 13) and interstate.official_rating == "R"


def test_captured_shows_and_episodes_link_by_grandparent_with_season_and_number():
    items = replay(lambda s: _parsed(s, Library("3", "Anime", "tvshows")), page_size=1)
    hundred = items["22"]
    assert (hundred.kind, hundred.name, hundred.sort_name) == ("series", "The 100", "100")
    assert hundred.season is None and hundred.episode is None, "a show's index is not a season"
    assert hundred.runtime_s == 2700 and hundred.critic_rating == 83.0
    five, six = items["45524"], items["45525"]
    assert (five.kind, five.parent_external_id, five.season, five.episode) == (
        "episode", "45520", 1, 5,
    )  # fmt: skip
    assert five.provider_ids == {"imdb": "tt13618832", "tmdb": "2552015", "tvdb": "8073643"}
    assert five.community_rating == 6.7 and five.critic_rating is None
    assert (six.episode, six.runtime_s) == (6, 2492)
    assert set(items) == {"22", "68", "45524", "45525"}


def test_total_counts_shows_and_episodes_on_the_first_page_only():
    async def totals(source: PlexSource) -> list:
        return [page.total async for page in source.pages(Library("3", "Anime", "tvshows"))]

    assert replay(totals, page_size=1) == [4, None, None, None]


def test_digest_ignores_view_state_and_tag_counts_but_not_labels():
    item = capture("movie_webhook_2025.json")["MediaContainer"]["Metadata"][0]
    base = raw_item(json.dumps(item).encode())
    watched = {**item, "viewCount": 7, "viewOffset": 1, "lastViewedAt": 1800000000}
    watched["Genre"] = [{**g, "count": g["count"] + 1} for g in item["Genre"]]
    assert raw_item(json.dumps(watched).encode()).digest == base.digest
    labelled = {**item, "Label": [{"tag": "rewatch"}]}
    assert raw_item(json.dumps(labelled).encode()).digest != base.digest
    parsed = parse_item(base.raw, base.digest)
    assert isinstance(parsed, MediaItem) and parsed.content_hash == base.digest
    assert parsed.provider_ids == {"imdb": "tt0132477", "tmdb": "13466", "tvdb": "5370"}
    assert (parsed.critic_rating, parsed.community_rating) == (90.0, 8.8)
    assert parsed.genres == ("Drama", "Family", "Biography")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"ratingKey": None}, "no ratingKey"),
        ({"title": " "}, "no title"),
        ({"type": "season"}, "unknown type 'season'"),
        ({"audienceRating": 42.5}, "audienceRating 42.5 is outside 0-10"),
        ({"originallyAvailableAt": "sometime"}, "is not a date"),
        ({"year": "nineteen"}, "invalid field"),
    ],
    ids=["no-key", "no-title", "season", "rating", "date", "wrong-type"],
)
def test_bad_items_are_invalid_with_a_reason(change, reason):
    item = capture("movie_webhook_2025.json")["MediaContainer"]["Metadata"][0]
    item = {k: v for k, v in {**item, **change}.items() if v is not None}
    parsed = parse_item(json.dumps(item).encode())
    assert isinstance(parsed, InvalidItem) and reason in parsed.reason


def test_captures_sync_into_the_catalog(engine):
    server = ServerConfig("plex", "http://plex.lan:32400", kind="plex", token=TOKEN)

    async def sync(source: PlexSource) -> SyncReport:
        options = SyncOptions(libraries=("Movies", "Anime"), chunk_size=2)
        return await run_sync(
            engine, source, server, options, QuietProgress(), SyncReport(server="plex")
        )

    report = replay(sync, page_size=1)
    assert report.status == "ok"
    assert [(lib.name, lib.total, lib.inserted) for lib in report.libraries] == [
        ("Movies", 2, 2), ("Anime", 4, 4),
    ]  # fmt: skip
    rows = media_rows(engine)
    episode = rows["45524"]
    assert (episode["parent_external_id"], episode["season"], episode["episode"]) == ("45520", 1, 5)
    assert rows["45524"]["provider_ids"]["tvdb"] == "8073643"
    assert links_of(engine, "28550")[1] == {"Comedy", "Western"}


# -- the fake Plex server, through the real command --------------------------------------------


@pytest.fixture
def plex():
    libraries = [FakeLibrary("Movies", "movies", 40), FakeLibrary("TV Shows", "tvshows", 33)]
    with FakePlexServer(libraries, token=TOKEN) as server:
        yield server


@pytest.fixture
def plex_cli(database_url: str, plex: FakePlexServer) -> Any:
    """Run the real `catalog` command against the fake Plex server and the test database."""

    def run(*args: str, env: dict[str, str] | None = None) -> Outcome:
        base_env = {
            "CATALOG_DATABASE_URL": database_url, "CATALOG_SERVER_URL": plex.url,
            "CATALOG_SERVER_KIND": "plex", "CATALOG_SERVER_TOKEN": TOKEN,
            "CATALOG_PAGE_SIZE": "25",
        }  # fmt: skip
        result = CliRunner().invoke(app, list(args), env={**base_env, **(env or {})})
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Outcome(result.exit_code, result.stdout, result.stderr)

    return run


def served(plex: FakePlexServer) -> dict[str, dict]:
    return {i["ratingKey"]: i for lib in ("Movies", "TV Shows") for i in plex.items(lib)}


def expected(raw: dict[str, Any]) -> dict[str, Any]:
    """What the catalog must hold for one served item, read straight off the JSON."""
    episode = raw["type"] == "episode"
    guids = dict(g["id"].split("://") for g in raw.get("Guid", []))
    premiere = raw.get("originallyAvailableAt")
    return {
        "kind": KINDS[raw["type"]], "name": raw["title"],
        "sort_name": raw.get("titleSort", raw["title"]), "overview": raw.get("summary"),
        "year": raw.get("year"), "premiere": date.fromisoformat(premiere) if premiere else None,
        "community_rating": raw.get("audienceRating"),
        "critic_rating": round(raw["rating"] * 10, 1) if "rating" in raw else None,
        "official_rating": raw.get("contentRating"),
        "runtime_s": raw["duration"] // 1000 if "duration" in raw else None,
        "parent_external_id": raw.get("grandparentRatingKey") if episode else None,
        "season": raw.get("parentIndex") if episode else None,
        "episode": raw.get("index") if episode else None,
        "provider_ids": guids, "added_at": datetime.fromtimestamp(raw["addedAt"], UTC),
        "missing_since": None,
    }  # fmt: skip


def test_plex_library_lands_field_by_field(plex_cli, plex, engine):
    bare = {"summary": None, "audienceRating": None, "rating": None, "year": None,
            "originallyAvailableAt": None, "duration": None, "contentRating": None,
            "Genre": None, "Label": None, "Guid": None, "tagline": None}  # fmt: skip
    plex.edit("Movies", 3, **bare)  # every optional field absent: unknown, not an error
    out = plex_cli("sync", "--json")
    assert out.exit_code == 0, out.stderr
    assert [(lib["name"], lib["inserted"]) for lib in out.json()["libraries"]] == [
        ("Movies", 40), ("TV Shows", 33),
    ]  # fmt: skip
    rows, items = media_rows(engine), served(plex)
    assert set(rows) == set(items)
    for key, raw in items.items():
        row = rows[key]
        assert {k: row[k] for k in expected(raw)} == expected(raw), key
        tags, genres, taglines = links_of(engine, key)
        assert tags == {t["tag"] for t in raw.get("Label", [])}
        assert genres == {g["tag"] for g in raw.get("Genre", [])}
        assert taglines == ([raw["tagline"]] if "tagline" in raw else [])
    kinds = [row["kind"] for row in rows.values()]
    assert (kinds.count("movie"), kinds.count("series"), kinds.count("episode")) == (40, 3, 30)
    seasons = {(r["parent_external_id"], r["season"]) for r in rows.values() if r["season"]}
    assert seasons == {(plex.item_id("TV Shows", s), n) for s in (0, 11, 22) for n in (1, 2)}
    bare_row = rows[plex.item_id("Movies", 3)]
    assert bare_row["overview"] is None and bare_row["community_rating"] is None
    assert bare_row["provider_ids"] == {} and links_of(engine, bare_row["external_id"])[0] == set()
    assert any("titleSort" in raw for raw in items.values())
    assert any(row["critic_rating"] is None for row in rows.values())


def test_paging_walks_every_page_by_container_headers(plex_cli, plex, engine):
    summary = plex_cli("sync", "--json", env={"CATALOG_PAGE_SIZE": "7"}).json()
    movies, shows = summary["libraries"]
    assert (movies["seen"], movies["inserted"], movies["total"]) == (40, 40, 40)
    assert (shows["seen"], shows["total"]) == (33, 33)
    pages = [r for r in plex.requests if r.path.endswith("/all")]
    movie_starts = [
        r.headers["x-plex-container-start"] for r in pages if r.path == "/library/sections/1/all"
    ]
    assert movie_starts == ["0", "7", "14", "21", "28", "35"]
    assert {r.headers["x-plex-container-size"] for r in pages} == {"7", "0"}
    episodes = [r for r in pages if r.query.get("type") == "4"]
    assert len(episodes) == 1 + 5, "one count, then 30 episodes in pages of 7"
    assert len(media_rows(engine)) == 73


def test_token_never_travels_in_a_url(plex_cli, plex):
    out = plex_cli("sync", "--json")
    assert out.exit_code == 0
    assert plex.requests
    for request in plex.requests:
        assert request.headers["x-plex-token"] == TOKEN
        assert TOKEN not in request.path and TOKEN not in json.dumps(request.query)
        assert request.headers["accept"] == "application/json"
        for name in ("x-plex-client-identifier", "x-plex-product", "x-plex-version"):
            assert request.headers[name]
    assert TOKEN not in out.stdout + out.stderr
    refused = httpx.get(
        f"{plex.url}/library/sections", params={"X-Plex-Token": TOKEN},
        headers={"Accept": "application/json"},
    )  # fmt: skip
    assert refused.status_code == 400 and "query string" in refused.text


def test_removed_items_are_marked_missing(plex_cli, plex, engine):
    plex_cli("sync")
    gone = plex.item_id("Movies", 7)
    plex.remove("Movies", 7)
    summary = plex_cli("sync", "--json").json()
    assert summary["libraries"][0]["missing"] == 1
    rows = media_rows(engine)
    assert rows[gone]["missing_since"] is not None
    assert sum(r["missing_since"] is not None for r in rows.values()) == 1


def test_unchanged_resync_writes_nothing_even_after_someone_watched(plex_cli, plex, engine):
    plex_cli("sync")
    before = media_rows(engine)
    plex.edit("Movies", 2, viewCount=3, viewOffset=60000, lastViewedAt=1800000000)
    summary = plex_cli("sync", "--json").json()
    assert [lib["unchanged"] for lib in summary["libraries"]] == [40, 33]
    assert all(lib["inserted"] == lib["updated"] == 0 for lib in summary["libraries"])
    for key, row in media_rows(engine).items():
        assert row["updated_at"] == before[key]["updated_at"]


def test_label_edit_waits_for_a_full_sync(plex_cli, plex, engine):
    plex_cli("sync")
    target = plex.item_id("Movies", 5)
    updated_at = plex.item("Movies", 5)["updatedAt"]
    plex.edit_labels("Movies", 5, ["cozy", "rewatch"])
    assert plex.item("Movies", 5)["updatedAt"] == updated_at, "Plex leaves updatedAt alone"
    incremental = plex_cli("sync", "--since-last", "--json").json()
    assert incremental["libraries"][0]["seen"] == 0
    assert links_of(engine, target)[0] != {"cozy", "rewatch"}
    full = plex_cli("sync", "--json").json()
    assert (full["libraries"][0]["updated"], full["libraries"][0]["unchanged"]) == (1, 39)
    assert links_of(engine, target)[0] == {"cozy", "rewatch"}


def test_since_last_asks_for_items_updated_since(plex_cli, plex, engine):
    plex_cli("sync")
    plex.edit("Movies", 2, title="Now Retitled")
    plex.requests.clear()
    summary = plex_cli("sync", "--since-last", "--json").json()
    movies, shows = summary["libraries"]
    assert (movies["seen"], movies["updated"], movies["full"]) == (1, 1, False)
    assert shows["seen"] == 0
    pages = [r for r in plex.requests if r.path.endswith("/all")]
    assert pages and all(int(r.query["updatedAt>>"]) > 1_700_000_000 for r in pages)
    assert media_rows(engine)[plex.item_id("Movies", 2)]["name"] == "Now Retitled"


def test_rate_limits_and_unavailability_are_waited_out(plex_cli, plex, engine):
    plex.faults = Faults(rate_limit_every=3, unavailable_every=4, retry_after_s=0.01)
    out = plex_cli("sync", "--json", env={"CATALOG_PAGE_SIZE": "10"})
    assert out.exit_code == 0, out.stderr
    assert out.json()["http"]["rate_limited"] > 0
    assert len(media_rows(engine)) == 73


def test_malformed_items_are_skipped_and_counted(plex_cli, plex, engine):
    plex.faults = Faults(malformed_every=10)
    out = plex_cli("sync", "--json")
    assert out.exit_code == 3
    assert [lib["skipped"] for lib in out.json()["libraries"]] == [4, 3]
    assert len(media_rows(engine)) == 73 - 7


def test_plex_kind_is_accepted_in_the_config_file_and_the_environment(tmp_path):
    config = tmp_path / "catalog.toml"
    config.write_text('[servers.den]\nkind = "plex"\nurl = "http://plex.lan:32400"\ntoken = "t"\n')
    assert load_settings(config, env={}).server().kind == "plex"
    env = {"CATALOG_SERVER_URL": "http://plex.lan:32400", "CATALOG_SERVER_KIND": "plex"}
    assert load_settings(env=env).server().kind == "plex"


def test_demo_against_the_fake_plex_server(database_url, engine):
    out = CliRunner().invoke(
        app, ["demo", "--kind", "plex", "--items", "60", "--database-url", database_url, "--json"]
    )
    assert out.exit_code == 0, out.stderr
    summary = json.loads(out.stdout)
    assert [(lib["name"], lib["inserted"]) for lib in summary["libraries"]] == [
        ("Movies", 36), ("TV Shows", 24),
    ]  # fmt: skip
    with engine.connect() as conn:
        kinds = conn.execute(select(MEDIA.c.kind)).scalars().all()
        servers = conn.execute(select(MEDIA.c.library_id).distinct()).all()
    assert sorted(set(kinds)) == ["episode", "movie", "series"] and len(kinds) == 60
    assert len(servers) == 2
