"""The fake Jellyfin/Emby server, exercised over real HTTP with httpx (no mocks)."""

from __future__ import annotations

import json
import os
import re
import selectors
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from catalog.fakes.media_server import FakeLibrary, FakeMediaServer, Faults, ItemShape

TOKEN = "test-token"
HEX32 = re.compile(r"[0-9a-f]{32}")


def jellyfin_auth(token: str = TOKEN) -> dict[str, str]:
    value = (
        f'MediaBrowser Client="catalog", Device="cli", DeviceId="x", Version="0.1", Token="{token}"'
    )
    return {"Authorization": value}


@pytest.fixture
def server() -> Iterator[FakeMediaServer]:
    with FakeMediaServer(seed=7) as fake:
        yield fake


@pytest.fixture
def client(server: FakeMediaServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers=jellyfin_auth(), timeout=10) as http:
        yield http


def get_items(http: httpx.Client, server: FakeMediaServer, library: str, **params: Any) -> Any:
    response = http.get("/Items", params={"ParentId": server.library(library).id, **params})
    assert response.status_code == 200, response.text
    return response.json()


def all_pages(
    http: httpx.Client, server: FakeMediaServer, library: str, limit: int, **params: Any
) -> list[list[dict[str, Any]]]:
    """Page the way the catalog client does: until a page comes back short."""
    pages, start = [], 0
    while True:
        page = get_items(http, server, library, StartIndex=start, Limit=limit, **params)["Items"]
        pages.append(page)
        if len(page) < limit:
            return pages
        start += len(page)


def walk(value: Any) -> Iterator[Any]:
    yield value
    children = value.values() if isinstance(value, dict) else value
    if isinstance(value, dict | list):
        for child in children:
            yield from walk(child)


def iso_now(delta_s: float = 0.0) -> str:
    moment = datetime.now(UTC) + timedelta(seconds=delta_s)
    return moment.isoformat().replace("+00:00", "Z")


# -- authentication --------------------------------------------------------------------------


def test_public_info_needs_no_token(server: FakeMediaServer) -> None:
    info = httpx.get(f"{server.url}/System/Info/Public").json()
    assert info["ProductName"] == "Jellyfin Server"
    assert info["Version"] == "10.10.3"
    assert HEX32.fullmatch(info["Id"])


def test_jellyfin_authorization_header_is_accepted(client: httpx.Client) -> None:
    response = client.get("/Library/VirtualFolders")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.http_version == "HTTP/1.1"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        jellyfin_auth("wrong"),
        {"Authorization": f'Bearer Token="{TOKEN}"'},
        {"X-Emby-Token": TOKEN},
    ],
    ids=["missing", "wrong-token", "wrong-scheme", "emby-header-on-jellyfin"],
)
def test_bad_credentials_are_401_with_empty_body(
    server: FakeMediaServer, headers: dict[str, str]
) -> None:
    response = httpx.get(f"{server.url}/Library/VirtualFolders", headers=headers)
    assert response.status_code == 401
    assert response.content == b""


@pytest.mark.parametrize("param", ["api_key", "ApiKey"])
def test_token_in_query_string_is_refused(server: FakeMediaServer, param: str) -> None:
    response = httpx.get(f"{server.url}/Library/VirtualFolders", params={param: TOKEN})
    assert response.status_code == 401


def test_emby_wants_x_emby_token_and_uses_numeric_ids() -> None:
    with FakeMediaServer(kind="emby", token="e") as emby:
        url = f"{emby.url}/Library/VirtualFolders"
        assert httpx.get(url, headers={"X-Emby-Token": "e"}).status_code == 200
        assert httpx.get(url, headers=jellyfin_auth("e")).status_code == 401
        assert httpx.get(f"{emby.url}/System/Info/Public").json()["ProductName"] == "Emby Server"
        with httpx.Client(base_url=emby.url, headers={"X-Emby-Token": "e"}) as http:
            items = get_items(http, emby, "TV Shows")["Items"]
            assert all(item["Id"].isdigit() for item in items)
            assert all(item["SeriesId"].isdigit() for item in items if item["Type"] == "Episode")
            one = http.get(f"/Items/{items[3]['Id']}").json()
        assert one == emby.full_item("TV Shows", 3)


# -- endpoints -------------------------------------------------------------------------------


def test_virtual_folders_and_user_views(server: FakeMediaServer, client: httpx.Client) -> None:
    folders = client.get("/Library/VirtualFolders").json()
    assert folders == [
        {"Name": "Movies", "ItemId": server.library("Movies").id, "CollectionType": "movies",
         "Locations": [], "LibraryOptions": {}},
        {"Name": "TV Shows", "ItemId": server.library("TV Shows").id,
         "CollectionType": "tvshows", "Locations": [], "LibraryOptions": {}},
    ]  # fmt: skip
    views = client.get("/UserViews", params={"userId": "u"}).json()
    assert views["TotalRecordCount"] == 2
    assert views["StartIndex"] == 0
    assert [(v["Name"], v["Id"], v["Type"]) for v in views["Items"]] == [
        ("Movies", server.library("Movies").id, "CollectionFolder"),
        ("TV Shows", server.library("TV Shows").id, "CollectionFolder"),
    ]


def test_unknown_parent_path_and_parameters(client: httpx.Client) -> None:
    assert client.get("/Items", params={"ParentId": "0" * 32}).status_code == 400
    assert client.get("/Items").status_code == 400
    assert client.get("/Nope").status_code == 404
    assert client.get("/Items/" + "0" * 32).status_code == 404


def test_bad_paging_parameters_are_400(server: FakeMediaServer, client: httpx.Client) -> None:
    parent = server.library("Movies").id
    for params in ({"StartIndex": "x"}, {"Limit": "-1"}, {"MinDateLastSaved": "not-a-date"}):
        assert client.get("/Items", params={"ParentId": parent, **params}).status_code == 400


def test_single_item_matches_item(server: FakeMediaServer, client: httpx.Client) -> None:
    for library, index in (("Movies", 0), ("Movies", 59), ("TV Shows", 12)):
        response = client.get(f"/Items/{server.item_id(library, index)}")
        assert response.json() == server.full_item(library, index)


def test_requests_are_recorded(server: FakeMediaServer, client: httpx.Client) -> None:
    client.get("/UserViews", params={"userId": "abc"}, headers={"X-Extra": "1"})
    recorded = server.requests[-1]
    assert (recorded.method, recorded.path, recorded.query) == (
        "GET",
        "/UserViews",
        {"userId": "abc"},
    )
    assert recorded.headers["x-extra"] == "1"
    assert "authorization" in recorded.headers


# -- paging ----------------------------------------------------------------------------------


@pytest.mark.parametrize("library", ["Movies", "TV Shows"])
def test_paging_serves_every_item_once_in_order(
    server: FakeMediaServer, client: httpx.Client, library: str
) -> None:
    pages = all_pages(client, server, library, 7)
    served = [item["Id"] for page in pages for item in page]
    assert served == [item["Id"] for item in server.items(library)]
    assert len(served) == server.library(library).size
    created = [item["DateCreated"] for page in pages for item in page]
    assert created == sorted(created, key=lambda text: datetime.fromisoformat(text))


def test_total_record_count_and_start_index(server: FakeMediaServer, client: httpx.Client) -> None:
    page = get_items(client, server, "Movies", StartIndex=10, Limit=5)
    assert (page["TotalRecordCount"], page["StartIndex"], len(page["Items"])) == (60, 10, 5)
    explicit = get_items(client, server, "Movies", Limit=5, EnableTotalRecordCount="true")
    assert explicit["TotalRecordCount"] == 60
    uncounted = get_items(client, server, "Movies", Limit=5, EnableTotalRecordCount="false")
    assert uncounted["TotalRecordCount"] == 0
    assert len(uncounted["Items"]) == 5
    assert len(get_items(client, server, "Movies", StartIndex=55)["Items"]) == 5
    assert get_items(client, server, "Movies", StartIndex=60)["Items"] == []


def test_include_item_types_filters(server: FakeMediaServer, client: httpx.Client) -> None:
    series = get_items(client, server, "TV Shows", IncludeItemTypes="Series")
    assert series["TotalRecordCount"] == 4  # indexes 0, 11, 22, 33 of 40
    assert {item["Type"] for item in series["Items"]} == {"Series"}
    episodes = get_items(client, server, "TV Shows", IncludeItemTypes="Episode", StartIndex=30)
    assert episodes["TotalRecordCount"] == 36
    assert [item["Type"] for item in episodes["Items"]] == ["Episode"] * 6
    movies = get_items(client, server, "Movies", IncludeItemTypes="Movie,Series,Episode")
    assert movies["TotalRecordCount"] == 60
    assert get_items(client, server, "Movies", IncludeItemTypes="Series")["Items"] == []


def test_boundary_repeats_overlap_pages_by_one(
    server: FakeMediaServer, client: httpx.Client
) -> None:
    server.faults = Faults(boundary_repeats=True)
    pages = all_pages(client, server, "Movies", 10)
    ids = [item["Id"] for item in server.items("Movies")]
    assert [len(page) for page in pages] == [10] * 6 + [1]
    for number, page in enumerate(pages[1:], start=1):
        assert page[0]["Id"] == ids[number * 10 - 1]  # the item at StartIndex - 1
        assert [item["Id"] for item in page[1:]] == ids[number * 10 : number * 10 + 9]
    served = [item["Id"] for page in pages for item in page]
    assert set(served) == set(ids)  # every item at least once ...
    assert served.count(ids[9]) == 2  # ... and the first boundary item twice
    assert len(served) == len(ids) + 1


# -- items -----------------------------------------------------------------------------------


def test_items_have_no_nulls_and_the_real_shape(
    server: FakeMediaServer, client: httpx.Client
) -> None:
    for library in ("Movies", "TV Shows"):
        for item in get_items(client, server, library)["Items"]:
            assert None not in walk(item)
            assert item.get("HasSubtitles", True) is True
            assert HEX32.fullmatch(item["Id"])
            assert item["ServerId"] == server.server_id
            assert item["SortName"] == item["Name"].lower().removeprefix("the ")
            assert item["Type"] in ("Movie", "Series", "Episode")
            assert item["ImageTags"]["Primary"]
            assert item["LocationType"] == "FileSystem"


def test_episodes_belong_to_the_series_before_them(server: FakeMediaServer) -> None:
    items = list(server.items("TV Shows"))
    for index, item in enumerate(items):
        if index % 11 == 0:
            assert (item["Type"], item["IsFolder"]) == ("Series", True)
            series = item
            continue
        assert item["Type"] == "Episode"
        assert (item["SeriesId"], item["SeriesName"]) == (series["Id"], series["Name"])
        number = index % 11 - 1
        assert item["ParentIndexNumber"] == number // 5 + 1
        assert item["IndexNumber"] == number % 5 + 1
        assert item["MediaType"] == "Video"


def test_values_vary_like_a_real_server() -> None:
    fake = FakeMediaServer([FakeLibrary("Big", "movies", 2000)], seed=1)
    items = list(fake.items("Big"))
    assert all(None not in walk(item) for item in items)
    ratings = [item["CommunityRating"] for item in items if "CommunityRating" in item]
    assert any(isinstance(r, int) for r in ratings) and any(isinstance(r, float) for r in ratings)
    assert all(1 <= r <= 10 for r in ratings) and len(ratings) < len(items)
    premieres = [item["PremiereDate"] for item in items]
    assert 20 < premieres.count("0001-01-01T00:00:00.0000000Z") < 120  # about 3%
    created = [item["DateCreated"] for item in items]
    assert any(re.search(r"\.\d{7}Z$", c) for c in created)
    assert any(re.search(r"\.\d{1,6}Z$", c) for c in created)
    assert all(datetime.fromisoformat(c) for c in created)
    assert 50 < sum("Overview" not in item for item in items) < 160  # about 5%
    assert all(0 <= len(item["Tags"]) <= 8 and len(item["Genres"]) <= 3 for item in items)
    assert any(ord(ch) > 0x2E80 for item in items for ch in item["Name"])  # CJK or emoji
    assert all(item["RunTimeTicks"] % 10_000_000 == 0 for item in items)


def test_fixed_shape() -> None:
    fake = FakeMediaServer(shape=ItemShape(tags=5, genres=3, taglines=1, overview_chars=120))
    for item in fake.items("Movies"):
        assert (len(item["Tags"]), len(item["Genres"]), len(item["Taglines"])) == (5, 3, 1)
        assert len(set(item["Tags"])) == 5
        assert 100 <= len(item["Overview"]) <= 120


def test_same_seed_same_bytes_other_seed_other_items() -> None:
    bodies = []
    for seed in (3, 3, 4):
        with FakeMediaServer(seed=seed) as fake:
            parent = fake.library("TV Shows").id
            response = httpx.get(
                f"{fake.url}/Items", params={"ParentId": parent}, headers=jellyfin_auth()
            )
            bodies.append(response.content)
    assert bodies[0] == bodies[1]
    assert bodies[0] != bodies[2]


def test_a_large_library_is_generated_on_demand() -> None:
    with FakeMediaServer([FakeLibrary("Huge", "movies", 100_000)]) as fake:
        started = time.perf_counter()
        page = httpx.get(
            f"{fake.url}/Items",
            params={"ParentId": fake.library("Huge").id, "StartIndex": 99_990, "Limit": 50},
            headers=jellyfin_auth(),
        ).json()
        assert time.perf_counter() - started < 3
    assert page["TotalRecordCount"] == 100_000
    assert [item["Id"] for item in page["Items"]] == [
        fake.item_id("Huge", i) for i in range(99_990, 100_000)
    ]


# -- changes ---------------------------------------------------------------------------------


def test_min_date_last_saved_after_edit(server: FakeMediaServer, client: httpx.Client) -> None:
    since = iso_now(-1)
    assert get_items(client, server, "Movies", MinDateLastSaved=since)["Items"] == []
    server.edit("Movies", 5, Name="Renamed Ünïcode 🎬", Overview=None)
    changed = get_items(client, server, "Movies", MinDateLastSaved=since)
    assert changed["TotalRecordCount"] == 1
    [item] = changed["Items"]
    assert item == server.item("Movies", 5)
    assert item["Name"] == "Renamed Ünïcode 🎬"
    assert "Overview" not in item
    assert datetime.fromisoformat(item["DateLastSaved"]) > datetime.now(UTC) - timedelta(seconds=5)
    exact = get_items(client, server, "Movies", MinDateLastSaved=item["DateLastSaved"])
    assert [i["Id"] for i in exact["Items"]] == [item["Id"]]
    # A date inside the seeded range selects the items created from then on, plus edits.
    cutoff = server.item("Movies", 50)["DateCreated"]
    later = get_items(client, server, "Movies", MinDateLastSaved=cutoff)["Items"]
    assert [i["Id"] for i in later] == [server.item_id("Movies", i) for i in [5, *range(50, 60)]]


def test_remove_and_add(server: FakeMediaServer, client: httpx.Client) -> None:
    removed_id = server.item_id("Movies", 3)
    server.remove("Movies", 3)
    assert server.item("Movies", 3) is None
    assert client.get(f"/Items/{removed_id}").status_code == 404
    page = get_items(client, server, "Movies")
    assert page["TotalRecordCount"] == 59
    assert removed_id not in {item["Id"] for item in page["Items"]}
    since = iso_now(-1)
    server.add("Movies", 5)
    assert server.library("Movies").size == 65
    page = get_items(client, server, "Movies", StartIndex=55)
    assert page["TotalRecordCount"] == 64
    assert [item["Id"] for item in page["Items"]] == [
        server.item_id("Movies", i) for i in range(56, 65)
    ]
    new = get_items(client, server, "Movies", MinDateLastSaved=since)["Items"]
    assert [item["Id"] for item in new] == [server.item_id("Movies", i) for i in range(60, 65)]
    assert all(item["DateLastSaved"] > item["DateCreated"] for item in new)
    assert new[0]["DateCreated"] > server.item("Movies", 59)["DateCreated"]


# -- faults ----------------------------------------------------------------------------------


def statuses(client: httpx.Client, server: FakeMediaServer, count: int) -> list[int]:
    parent = server.library("Movies").id
    return [
        client.get("/Items", params={"ParentId": parent, "Limit": 2}).status_code
        for _ in range(count)
    ]


def test_error_rate_is_seeded(server: FakeMediaServer, client: httpx.Client) -> None:
    server.faults = Faults(error_rate=0.5)
    first = statuses(client, server, 40)
    assert set(first) == {200, 500}
    assert 8 < first.count(500) < 32
    server.faults = Faults(error_rate=0.5)  # a new Faults restarts the fault RNG
    assert statuses(client, server, 40) == first


def test_rate_limit_and_unavailable_send_retry_after(
    server: FakeMediaServer, client: httpx.Client
) -> None:
    server.faults = Faults(rate_limit_every=3, retry_after_s=0.2)
    parent = server.library("Movies").id
    responses = [client.get("/Items", params={"ParentId": parent}) for _ in range(6)]
    assert [r.status_code for r in responses] == [200, 200, 429, 200, 200, 429]
    assert responses[2].headers["retry-after"] == "0.2"
    server.faults = Faults(unavailable_every=2, retry_after_s=2.0)
    assert statuses(client, server, 4) == [200, 503, 200, 503]
    response = client.get("/Items", params={"ParentId": parent})
    assert response.status_code == 200
    assert client.get("/Items", params={"ParentId": parent}).headers["retry-after"] == "2"
    assert client.get("/Library/VirtualFolders").status_code == 200  # only /Items is affected


def test_drop_every_cuts_the_body_short(server: FakeMediaServer, client: httpx.Client) -> None:
    server.faults = Faults(drop_every=2)
    parent = server.library("Movies").id
    assert client.get("/Items", params={"ParentId": parent}).status_code == 200
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/Items", params={"ParentId": parent})
    assert client.get("/Items", params={"ParentId": parent}).status_code == 200


def test_malformed_items_cycle_through_reasons(
    server: FakeMediaServer, client: httpx.Client
) -> None:
    server.faults = Faults(malformed_every=4)
    assert server.malformed_indexes("Movies") == list(range(3, 60, 4))
    items = get_items(client, server, "Movies")["Items"]
    assert len(items) == 60
    assert items == list(server.items("Movies"))
    spoiled = [items[i] for i in server.malformed_indexes("Movies")[:5]]
    assert "Id" not in spoiled[0]
    assert "Name" not in spoiled[1]
    assert spoiled[2]["Type"] == "Banana"
    assert spoiled[3]["CommunityRating"] == 42.5
    assert spoiled[4]["PremiereDate"] == "not-a-date"
    assert all("Id" in item and "Name" in item for i, item in enumerate(items) if i % 4 != 3)


def test_fail_start_indexes(server: FakeMediaServer, client: httpx.Client) -> None:
    server.faults = Faults(fail_start_indexes=frozenset({20}))
    parent = server.library("Movies").id
    for _ in range(3):
        failing = client.get("/Items", params={"ParentId": parent, "StartIndex": 20, "Limit": 10})
        assert failing.status_code == 500
    assert get_items(client, server, "Movies", StartIndex=10, Limit=10)["StartIndex"] == 10


def test_oversize_pads_the_envelope(server: FakeMediaServer, client: httpx.Client) -> None:
    server.faults = Faults(oversize_bytes=300_000)
    response = client.get("/Items", params={"ParentId": server.library("Movies").id, "Limit": 1})
    assert len(response.content) >= 300_000
    body = response.json()
    assert len(body["Items"]) == 1
    assert body["Padding"]


def test_latency(server: FakeMediaServer, client: httpx.Client) -> None:
    server.faults = Faults(latency_s=0.2)
    started = time.perf_counter()
    get_items(client, server, "Movies", Limit=1)
    assert time.perf_counter() - started >= 0.2


# -- command line ----------------------------------------------------------------------------


def test_command_line_prints_url_and_serves() -> None:
    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "catalog.fakes.media_server", "--items", "50", "--port", "0"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            assert selector.select(timeout=10), "no URL line within 10 s"
        line = proc.stdout.readline()
        assert re.fullmatch(r"URL http://127\.0\.0\.1:\d+\n", line)
        url = line.split()[1]
        folders = httpx.get(f"{url}/Library/VirtualFolders", headers=jellyfin_auth()).json()
        assert [(f["Name"], f["CollectionType"]) for f in folders] == [("Movies", "movies")]
        params = {"ParentId": folders[0]["ItemId"]}
        page = httpx.get(f"{url}/Items", params=params, headers=jellyfin_auth()).json()
        assert page["TotalRecordCount"] == 50
        json.dumps(page)
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
