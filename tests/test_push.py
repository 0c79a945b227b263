"""`catalog push` end to end: the real command against the fake Jellyfin, Emby and Plex servers,
which behave as the real ones do when written to, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import TOKEN, hold_lock
from sqlalchemy import Engine, delete, select

from catalog.config import ServerConfig
from catalog.db.engine import recorded_statements
from catalog.db.models import MEDIA, MEDIA_TAG, TAG
from catalog.db.models import PUSHED_TAG as PUSHED
from catalog.db.writers import resolve_tags
from catalog.fakes.media_server import FakeLibrary, FakeMediaServer, Faults
from catalog.fakes.plex_server import FakePlexServer
from catalog.http import HttpStats, RetryPolicy
from catalog.push import (
    Candidate,
    PushOptions,
    PushReport,
    PushSelection,
    iter_candidates,
    plan_change,
    run_push,
)
from catalog.sources import PushItem
from catalog.sources.connect import open_writer
from catalog.tagging.flow import CircuitBreaker
from catalog.tags import clean_tag

LIBRARIES = [FakeLibrary("Movies", "movies", 8), FakeLibrary("TV Shows", "tvshows", 12)]
# What the catalog says of the first movies (index → tagger tags); movie 2 already carries one
# of its catalog tags on the server, under another spelling.
CATALOG_TAGS = {0: ["noir", "heist"], 1: ["slow_burn"], 2: ["cult_film", "kaiju"], 3: ["noir"]}
# The Jellyfin fake's own tags of those movies (its random ones might carry a catalog tag).
SERVER_TAGS = {0: ["Based on Novel"], 1: [], 2: ["Cult Film", "4K"], 3: ["4K", "remake"]}
# Fields the server itself moves on a write.
SERVER_STAMPS = {"DateLastSaved", "Etag"}


@pytest.fixture
def fake() -> Iterator[FakeMediaServer]:
    """A small Jellyfin library (the conftest `cli` runs against it)."""
    with FakeMediaServer(LIBRARIES, token=TOKEN) as server:
        for index, tags in SERVER_TAGS.items():
            server.edit("Movies", index, Tags=tags)
        yield server


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "push.toml"
    path.write_text(
        "[push]\nrate = 500\nconcurrency = 4\nbackoff_s = 0.01\nbackoff_max_s = 0.05\n"
        "retries = 3\nbatch_size = 2\n"
    )
    return path


@pytest.fixture
def push(cli: Any, config: Path) -> Any:
    """`catalog push ARGS` against the server the catalog was synced from."""

    def run(*args: str, env: dict[str, str] | None = None, url: str | None = None) -> Any:
        return cli("push", "--config", str(config), *args, env=env, url=url)

    return run


def synced(cli: Any, engine: Engine, server: Any, kind: str = "jellyfin") -> dict[str, str]:
    """Sync `server`, give the first movies their catalog tags; the env that reaches it."""
    env = {"CATALOG_SERVER_KIND": kind}
    assert cli("sync", "--json", env=env, url=server.url).exit_code == 0
    tags = {server.item_id("Movies", i): names for i, names in CATALOG_TAGS.items()}
    give_tags(engine, tags)
    return env


def give_tags(engine: Engine, tags: dict[str, list[str]], origin: str = "tagger") -> None:
    with engine.begin() as conn:
        ids = dict(
            conn.execute(
                select(MEDIA.c.external_id, MEDIA.c.id).where(MEDIA.c.external_id.in_(tags))
            ).all()
        )
        tag_ids = resolve_tags(conn, {t for names in tags.values() for t in names})
        rows = [
            {"media_id": ids[ext], "tag_id": tag_ids[t], "origin": origin}
            for ext, names in tags.items()
            for t in names
        ]
        conn.execute(MEDIA_TAG.insert(), rows)


def drop_tag(engine: Engine, external_id: str, name: str) -> None:
    with engine.begin() as conn:
        media_id = conn.execute(
            select(MEDIA.c.id).where(MEDIA.c.external_id == external_id)
        ).scalar_one()
        tag_id = conn.execute(select(TAG.c.id).where(TAG.c.name == name)).scalar_one()
        conn.execute(
            delete(MEDIA_TAG).where(MEDIA_TAG.c.media_id == media_id, MEDIA_TAG.c.tag_id == tag_id)
        )


def tags_by_origin(engine: Engine) -> dict[str, set[tuple[str, str]]]:
    """Every item's tags by origin: external id → {(origin, name)}."""
    query = (
        select(MEDIA.c.external_id, MEDIA_TAG.c.origin, TAG.c.name)
        .join(MEDIA_TAG, MEDIA_TAG.c.media_id == MEDIA.c.id)
        .join(TAG, TAG.c.id == MEDIA_TAG.c.tag_id)
    )
    found: dict[str, set[tuple[str, str]]] = {}
    with engine.connect() as conn:
        for ext, origin, name in conn.execute(query):
            found.setdefault(ext, set()).add((origin, name))
    return found


def carries(server_tags: list[str], names: list[str]) -> bool:
    """The server carries every one of `names`, in some spelling, and nothing else."""
    return {clean_tag(t) for t in server_tags} == {clean_tag(n) for n in names}


def jellyfin_tags(fake: FakeMediaServer, index: int, library: str = "Movies") -> list[str]:
    return list(fake.full_item(library, index)["Tags"])  # type: ignore[index]


# -- the goal, as a function ---------------------------------------------------------------------


def test_goal_keeps_the_servers_own_tags_and_removes_only_what_push_added() -> None:
    item = PushItem("x", "movie", "lib")
    candidate = Candidate(1, "X", item, wanted=("noir", "sci_fi"), added=frozenset({"heist"}))
    change = plan_change(["Sci-Fi", "heist", "4K"], candidate)
    assert change.goal == ("Sci-Fi", "4K", "noir")  # sci_fi is already there as Sci-Fi
    assert change.add == ("noir",) and change.remove == ("heist",)
    assert change.record == {"noir": True, "sci_fi": False}
    unchanged = plan_change(["4K", "noir"], Candidate(1, "X", item, ("noir",), frozenset({"noir"})))
    assert not unchanged.needed


# -- Jellyfin ----------------------------------------------------------------------------------


def test_push_writes_the_goal_and_every_other_field_survives(
    push: Any, cli: Any, engine: Engine, fake: FakeMediaServer
) -> None:
    synced(cli, engine, fake)
    before = {i: fake.full_item("Movies", i) for i in CATALOG_TAGS}
    out = push("--allow-many", "--json")
    assert out.exit_code == 0, out.stderr
    summary = out.json()
    assert {k: summary[k] for k in ("status", "selected", "pushed", "unchanged", "failed")} == {
        "status": "ok", "selected": 4, "pushed": 4, "unchanged": 0, "failed": 0,
    }  # fmt: skip
    assert set(summary) >= {"duration_s", "run_id", "error"}
    for index, old in before.items():
        new = fake.full_item("Movies", index)
        for key in old.keys() - {"Tags", "LockedFields"} - SERVER_STAMPS:
            assert new[key] == old[key], (index, key)
        assert new.keys() - SERVER_STAMPS == old.keys() - SERVER_STAMPS
        assert "Tags" in new["LockedFields"] and new["LockData"] is old["LockData"]
        wanted = [t for t in CATALOG_TAGS[index] if not (index == 2 and t == "cult_film")]
        assert new["Tags"] == [*old["Tags"], *sorted(wanted)]
    assert fake.writes == {"POST /Items/{id}": 4}


def test_a_second_push_makes_no_write_call(
    push: Any, cli: Any, engine: Engine, fake: FakeMediaServer
) -> None:
    synced(cli, engine, fake)
    assert push("--allow-many").exit_code == 0
    writes, calls = sum(fake.writes.values()), len(fake.push_log.arrivals)
    out = push("--json")
    assert out.exit_code == 0 and out.json()["selected"] == 0
    assert sum(fake.writes.values()) == writes and len(fake.push_log.arrivals) == calls


def test_sync_after_push_leaves_tag_sets_unchanged_and_counts_the_write_once(
    push: Any, cli: Any, engine: Engine, fake: FakeMediaServer
) -> None:
    synced(cli, engine, fake)
    assert push("--allow-many").exit_code == 0
    before = tags_by_origin(engine)
    first = cli("sync", "--json").json()["libraries"]
    assert tags_by_origin(engine) == before
    movies = next(lib for lib in first if lib["name"] == "Movies")
    assert movies["updated"] == len(CATALOG_TAGS)  # the write's DateLastSaved bump, once
    again = cli("sync", "--json").json()["libraries"]
    assert all(lib["updated"] == 0 for lib in again)
    assert tags_by_origin(engine) == before
    shown = cli("media", "show", fake.item_id("Movies", 0), "--json").json()
    assert shown["tags_by_origin"]["tagger"] == ["heist", "noir"]
    assert not {"heist", "noir"} & set(shown["tags_by_origin"].get("server", []))


def test_a_tag_the_catalog_drops_is_removed_and_the_servers_own_stay(
    push: Any, cli: Any, engine: Engine, fake: FakeMediaServer
) -> None:
    synced(cli, engine, fake)
    original = jellyfin_tags(fake, 0)
    assert push("--allow-many").exit_code == 0
    drop_tag(engine, fake.item_id("Movies", 0), "heist")
    out = push("--json")
    assert out.json()["pushed"] == 1
    assert jellyfin_tags(fake, 0) == [*original, "noir"]


def test_dry_run_prints_the_diff_and_makes_no_write_call(
    push: Any, cli: Any, engine: Engine, fake: FakeMediaServer
) -> None:
    synced(cli, engine, fake)
    out = push("--allow-many", "--dry-run")
    assert out.exit_code == 0
    assert fake.writes == {}
    line = next(x for x in out.stdout.splitlines() if fake.full_item("Movies", 0)["Name"] in x)
    assert "+heist" in line and "+noir" in line
    as_json = push("--allow-many", "--dry-run", "--json").json()
    assert as_json["status"] == "dry_run" and len(as_json["changes"]) == 4
    assert fake.writes == {}
    with engine.connect() as conn:
        assert conn.execute(select(PUSHED)).all() == []


def test_undo_restores_the_servers_original_tags(
    push: Any, cli: Any, engine: Engine, fake: FakeMediaServer
) -> None:
    synced(cli, engine, fake)
    original = {i: jellyfin_tags(fake, i) for i in CATALOG_TAGS}
    assert push("--allow-many").exit_code == 0
    assert push("--undo", "--library", "Movies").exit_code == 0
    assert {i: jellyfin_tags(fake, i) for i in CATALOG_TAGS} == original
    with engine.connect() as conn:
        assert conn.execute(select(PUSHED)).all() == []


def test_series_are_left_alone_on_jellyfin(
    push: Any, cli: Any, engine: Engine, fake: FakeMediaServer
) -> None:
    synced(cli, engine, fake)
    series, episode = fake.item_id("TV Shows", 0), fake.item_id("TV Shows", 1)
    give_tags(engine, {series: ["anthology"], episode: ["whodunit"]}, origin="manual")
    assert push("--allow-many", "--library", "TV Shows").exit_code == 0
    assert "anthology" not in jellyfin_tags(fake, 0, "TV Shows")
    assert jellyfin_tags(fake, 1, "TV Shows")[-1] == "whodunit"


def test_the_guard_refuses_a_mass_change_without_allow_many(
    push: Any, cli: Any, engine: Engine, fake: FakeMediaServer
) -> None:
    synced(cli, engine, fake)
    out = push("--library", "Movies", env={"CATALOG_PUSH_MAX_ITEMS": "2"})
    assert out.exit_code == 1 and "--allow-many" in out.stderr and "max_items = 2" in out.stderr
    assert fake.writes == {}
    assert push("--limit", "2", env={"CATALOG_PUSH_MAX_ITEMS": "2"}).exit_code == 0
    assert sum(fake.writes.values()) == 2


def test_an_unknown_library_is_an_error_naming_what_the_catalog_has(
    push: Any, cli: Any, engine: Engine, fake: FakeMediaServer
) -> None:
    synced(cli, engine, fake)
    out = push("--library", "Films")
    assert out.exit_code == 2
    assert "no library named 'Films'" in out.stderr and "'Movies'" in out.stderr
    assert fake.writes == {}


def test_a_push_never_overlaps_a_sync_of_the_same_server(
    push: Any, cli: Any, engine: Engine, fake: FakeMediaServer, database_url: str
) -> None:
    synced(cli, engine, fake)
    holder = hold_lock(database_url, "sync", "default")
    try:
        out = push("--allow-many")
    finally:
        holder.stdin.close()
        holder.wait()
    assert out.exit_code == 75 and "sync" in out.stderr
    assert fake.writes == {}
    # The refused push let go of its own lock at once (it used to hold it, from a generator
    # kept alive by the error, until that was collected): another process takes it now.
    other = hold_lock(database_url, "push", "default")
    other.stdin.close()
    assert other.wait() == 0
    assert push("--allow-many").exit_code == 0 and fake.writes


def test_rate_and_concurrency_hold_at_the_server(
    push: Any, cli: Any, engine: Engine, fake: FakeMediaServer
) -> None:
    synced(cli, engine, fake)
    fake.faults = Faults(push_latency_s=0.05)
    env = {"CATALOG_PUSH_RATE": "20", "CATALOG_PUSH_CONCURRENCY": "2"}
    assert push("--allow-many", env=env).exit_code == 0
    assert len(fake.push_log.arrivals) == 8  # a GET and a POST per item
    assert fake.push_log.max_in_flight <= 2
    assert fake.push_log.max_in_window(1.0) <= 20 + 2  # rate + burst


def test_a_503_and_429_storm_loses_nothing_and_a_rerun_finishes(
    push: Any, cli: Any, engine: Engine, fake: FakeMediaServer
) -> None:
    synced(cli, engine, fake)
    fake.faults = Faults(push_rate_limit_every=2, push_unavailable_every=3, retry_after_s=0.05)
    first = push("--allow-many", "--json", env={"CATALOG_PUSH_CONCURRENCY": "4"})
    assert first.exit_code in (0, 3), first.stderr
    assert first.json()["pushed"] + first.json()["failed"] == 4
    fake.faults = Faults()
    second = push("--allow-many", "--json")
    assert second.exit_code == 0
    assert first.json()["pushed"] + second.json()["pushed"] == 4
    for index, names in CATALOG_TAGS.items():
        assert set(names) - {"cult_film"} <= set(jellyfin_tags(fake, index))
    assert push("--json").json()["selected"] == 0


# -- the fake Jellyfin behaves as 10.11 does -----------------------------------------------------


def test_fake_jellyfin_blanks_missing_fields_and_throws_without_genres() -> None:
    with FakeMediaServer(LIBRARIES, token=TOKEN) as server:
        auth = {"Authorization": f'MediaBrowser Token="{TOKEN}"'}
        item_id = server.item_id("Movies", 0)
        full = server.full_item("Movies", 0)
        with httpx.Client(base_url=server.url, headers=auth) as http:
            no_genres = {"Tags": [], "ProviderIds": {}}
            assert http.post(f"/Items/{item_id}", json=no_genres).status_code == 500
            body = {k: v for k, v in full.items() if k not in ("Overview", "LockData")}
            assert http.post(f"/Items/{item_id}", json=body).status_code == 204
        after = server.full_item("Movies", 0)
        assert "Overview" not in after and after["LockData"] is False
        assert after["Name"] == full["Name"]


def test_fake_jellyfin_spreads_series_tags_to_episodes_not_locking_them() -> None:
    with FakeMediaServer(LIBRARIES, token=TOKEN) as server:
        server.edit("TV Shows", 2, LockedFields=["Tags"], Tags=["own"])
        auth = {"Authorization": f'MediaBrowser Token="{TOKEN}"'}
        series = server.full_item("TV Shows", 0)
        with httpx.Client(base_url=server.url, headers=auth) as http:
            body = {**series, "Tags": ["anthology"]}
            assert http.post(f"/Items/{series['Id']}", json=body).status_code == 204
        assert server.full_item("TV Shows", 1)["Tags"] == ["anthology"]
        assert server.full_item("TV Shows", 2)["Tags"] == ["own"]


# -- Emby and Plex -----------------------------------------------------------------------------


@pytest.fixture
def emby() -> Iterator[FakeMediaServer]:
    with FakeMediaServer(LIBRARIES, kind="emby", token=TOKEN) as server:
        yield server


def emby_tags(item: dict[str, Any]) -> list[str]:
    """Emby sends an item's tags as TagItems [{"Name", "Id"}], never as Tags."""
    assert "Tags" not in item
    return [tag["Name"] for tag in item.get("TagItems") or ()]


def test_emby_uses_tags_add_and_delete_only(push: Any, cli: Any, engine: Engine, emby: Any) -> None:
    env = synced(cli, engine, emby, kind="emby")
    original = {i: list(emby_tags(emby.full_item("Movies", i))) for i in CATALOG_TAGS}
    assert push("--allow-many", env=env, url=emby.url).exit_code == 0
    assert set(emby.writes) == {"Tags/Add"} and emby.writes["Tags/Add"] == 4
    for index, names in CATALOG_TAGS.items():
        assert carries(emby_tags(emby.full_item("Movies", index)), [*original[index], *names])
    drop_tag(engine, emby.item_id("Movies", 0), "heist")
    assert push(env=env, url=emby.url).exit_code == 0
    assert emby.writes["Tags/Delete"] == 1
    assert push("--undo", env=env, url=emby.url).exit_code == 0
    assert {i: list(emby_tags(emby.full_item("Movies", i))) for i in CATALOG_TAGS} == original
    posts = [r.path for r in emby.requests if r.method == "POST"]
    assert posts and all(p.endswith(("/Tags/Add", "/Tags/Delete")) for p in posts)


@pytest.fixture
def plex() -> Iterator[FakePlexServer]:
    with FakePlexServer(LIBRARIES, token=TOKEN) as server:
        server.edit_labels("Movies", 1, [])  # undo must then remove with label[].tag.tag-=
        yield server


def plex_labels(plex: FakePlexServer, index: int) -> list[str]:
    return [t["tag"] for t in plex.item("Movies", index).get("Label") or []]


def test_plex_sets_labels_with_the_label_put_and_undo_restores_them(
    push: Any, cli: Any, engine: Engine, plex: FakePlexServer
) -> None:
    env = synced(cli, engine, plex, kind="plex")
    original = {i: plex_labels(plex, i) for i in CATALOG_TAGS}
    assert push("--allow-many", env=env, url=plex.url).exit_code == 0
    assert plex.writes == {"PUT labels": 4}
    assert plex_labels(plex, 1) == ["slow_burn"]
    puts = [r for r in plex.requests if r.method == "PUT"]
    assert all(r.query["label.locked"] == "1" and "label[0].tag.tag" in r.query for r in puts)
    for index, names in CATALOG_TAGS.items():
        assert carries(plex_labels(plex, index), [*original[index], *names])
    assert push("--json", env=env, url=plex.url).json()["selected"] == 0
    assert push("--undo", env=env, url=plex.url).exit_code == 0
    assert {i: plex_labels(plex, i) for i in CATALOG_TAGS} == original
    removal = [r for r in plex.requests if r.method == "PUT"][-4:]
    assert any(r.query.get("label[].tag.tag-") == "slow_burn" for r in removal)


# -- selection and interruption, through the library ---------------------------------------------


def test_selection_is_one_statement_per_batch(
    cli: Any, engine: Engine, fake: FakeMediaServer
) -> None:
    synced(cli, engine, fake)
    selection = PushSelection("default")
    with recorded_statements(engine) as seen:
        batches = list(iter_candidates(engine, selection, batch=3))
    assert [len(b) for b in batches] == [3, 1] and len(seen) == 2
    first = batches[0][0]
    assert first.item.external_id == fake.item_id("Movies", 0)
    assert first.wanted == ("heist", "noir") and first.added == frozenset()


def test_an_interrupted_push_records_what_it_wrote_and_the_next_completes_the_rest(
    push: Any, cli: Any, engine: Engine, fake: FakeMediaServer
) -> None:
    synced(cli, engine, fake)
    fake.faults = Faults(push_latency_s=0.05)
    report = PushReport()

    async def interrupted() -> None:
        server = ServerConfig("default", fake.url, token=TOKEN)
        policy = RetryPolicy(retries=0)
        async with open_writer(server, policy, concurrency=1) as writer:
            options = PushOptions(concurrency=1, batch_size=100, allow_many=True)
            job = run_push(
                engine, writer, CircuitBreaker(5, 1, 3), PushSelection("default"), report,
                HttpStats(), options,
            )  # fmt: skip
            task = asyncio.create_task(job)
            # Cancel while the second write is at the server, before it answers.
            while sum(r.method == "POST" for r in list(fake.requests)) < 2:
                await asyncio.sleep(0.005)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(interrupted())
    assert report.status == "interrupted" and report.pushed == 2
    with engine.connect() as conn:
        query = select(MEDIA.c.external_id).where(MEDIA.c.id.in_(select(PUSHED.c.media_id)))
        recorded = set(conn.execute(query).scalars())
    assert len(recorded) == report.pushed
    written = {  # a write in flight when the run was cancelled finished, and was recorded
        fake.item_id("Movies", i)
        for i, names in CATALOG_TAGS.items()
        if set(names) - {"cult_film"} <= set(jellyfin_tags(fake, i))
    }
    assert written == recorded
    fake.faults = Faults()
    rest = push("--allow-many", "--json").json()
    assert rest["selected"] == len(CATALOG_TAGS) - report.pushed
    for index, names in CATALOG_TAGS.items():
        assert set(names) - {"cult_film"} <= set(jellyfin_tags(fake, index))
    assert push("--json").json()["selected"] == 0
