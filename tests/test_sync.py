"""`catalog sync` end to end: the real command, the fake server on loopback, a real database."""

from __future__ import annotations

import gc
from typing import Any

import pytest
from conftest import TOKEN
from sqlalchemy import Engine, func, select, text, update

from catalog.db.models import GENRE, MEDIA, MEDIA_GENRE, MEDIA_TAG, MEDIA_TAGLINE, RUN, TAG
from catalog.db.seen import SeenIds
from catalog.fakes.media_server import FakeLibrary, FakeMediaServer, Faults
from catalog.heap import BULK_THRESHOLD
from catalog.runs import utcnow
from catalog.sources.jellyfin import parse_item


def media_rows(engine: Engine) -> dict[str, dict]:
    with engine.connect() as conn:
        return {r.external_id: dict(r._mapping) for r in conn.execute(select(MEDIA))}


def links_of(engine: Engine, external_id: str) -> tuple[set[str], set[str], list[str]]:
    """(server tags, genres, taglines in order) of one item, read back from the catalog."""
    with engine.connect() as conn:
        media_id = conn.execute(
            select(MEDIA.c.id).where(MEDIA.c.external_id == external_id)
        ).scalar_one()
        tags = conn.execute(
            select(TAG.c.name)
            .join(MEDIA_TAG, MEDIA_TAG.c.tag_id == TAG.c.id)
            .where(MEDIA_TAG.c.media_id == media_id, MEDIA_TAG.c.origin == "server")
        ).scalars()
        genres = conn.execute(
            select(GENRE.c.name)
            .join(MEDIA_GENRE, MEDIA_GENRE.c.genre_id == GENRE.c.id)
            .where(MEDIA_GENRE.c.media_id == media_id)
        ).scalars()
        taglines = conn.execute(
            select(MEDIA_TAGLINE.c.text)
            .where(MEDIA_TAGLINE.c.media_id == media_id)
            .order_by(MEDIA_TAGLINE.c.position)
        ).scalars()
        return set(tags), set(genres), list(taglines)


def expected_items(fake, library: str) -> dict[str, dict]:
    return {i["Id"]: i for i in fake.items(library) if "Id" in i}


def test_first_sync_writes_every_item_with_its_fields_and_links(cli, fake, engine):
    out = cli("sync", "--json")
    assert out.exit_code == 0, out.stderr
    summary = out.json()
    assert summary["status"] == "ok"
    by_name = {lib["name"]: lib for lib in summary["libraries"]}
    assert by_name["Movies"]["inserted"] == by_name["Movies"]["seen"] == 60
    assert by_name["TV Shows"]["inserted"] == 44
    rows = media_rows(engine)
    served = {**expected_items(fake, "Movies"), **expected_items(fake, "TV Shows")}
    assert set(rows) == set(served)
    for external_id, raw in served.items():
        parsed = parse_item(__import__("json").dumps(raw).encode())
        row = rows[external_id]
        assert (row["name"], row["kind"], row["year"]) == (parsed.name, parsed.kind, parsed.year)
        assert row["premiere"] == parsed.premiere
        assert row["community_rating"] == parsed.community_rating
        assert row["subtitles"] == parsed.subtitles
        assert row["parent_external_id"] == parsed.parent_external_id
        stored = ("sort_name", "overview", "critic_rating", "official_rating", "runtime_s",
                  "season", "episode", "provider_ids", "added_at")  # fmt: skip
        assert {c: row[c] for c in stored} == {c: getattr(parsed, c) for c in stored}
        assert row["missing_since"] is None
        tags, genres, taglines = links_of(engine, external_id)
        assert tags == set(parsed.tags)
        assert genres == set(parsed.genres)
        assert taglines == list(parsed.taglines)


def test_resync_of_unchanged_library_writes_nothing(cli, engine):
    assert cli("sync").exit_code == 0
    before = media_rows(engine)
    summary = cli("sync", "--json").json()
    assert [lib["unchanged"] for lib in summary["libraries"]] == [60, 44]
    assert all(
        lib["inserted"] == lib["updated"] == lib["missing"] == 0 for lib in summary["libraries"]
    )
    assert media_rows(engine) == before  # not even a last_seen_at stamp


def test_changed_item_is_rewritten_and_its_server_links_replaced(cli, fake, engine):
    cli("sync")
    target = fake.item_id("Movies", 5)
    with engine.begin() as conn:  # a tagger tag must survive a sync
        media_id = conn.execute(select(MEDIA.c.id).where(MEDIA.c.external_id == target)).scalar()
        tag_id = conn.execute(text("INSERT INTO tag (name) VALUES ('from-tagger') RETURNING id"))
        conn.execute(
            MEDIA_TAG.insert(),
            {"media_id": media_id, "tag_id": tag_id.scalar(), "origin": "tagger"},
        )
    fake.edit("Movies", 5, Name="Renamed", Tags=["brand new", "Sci-Fi"], Genres=["Drama"])
    summary = cli("sync", "--json").json()
    movies = summary["libraries"][0]
    assert (movies["updated"], movies["unchanged"]) == (1, 59)
    assert media_rows(engine)[target]["name"] == "Renamed"
    tags, genres, _ = links_of(engine, target)
    assert tags == {"brand new", "Sci-Fi"} and genres == {"Drama"}
    with engine.connect() as conn:
        origins = conn.execute(
            select(MEDIA_TAG.c.origin).where(MEDIA_TAG.c.media_id == media_id)
        ).scalars()
        assert sorted(origins) == ["server", "server", "tagger"]


def test_items_gone_from_the_server_are_marked_missing_then_back(cli, fake, engine):
    cli("sync")
    gone = fake.item_id("Movies", 7)
    fake.remove("Movies", 7)
    summary = cli("sync", "--json").json()
    assert summary["libraries"][0]["missing"] == 1
    assert media_rows(engine)[gone]["missing_since"] is not None
    assert links_of(engine, gone)[0], "soft delete keeps the links"


def test_an_unchanged_item_back_from_missing_is_stamped_not_rewritten(cli, fake, engine):
    cli("sync")
    back = fake.item_id("Movies", 4)
    with engine.begin() as conn:  # marked missing by an earlier sync, listed again since
        conn.execute(
            update(MEDIA).where(MEDIA.c.external_id == back).values(missing_since=utcnow())
        )
    before = media_rows(engine)[back]
    summary = cli("sync", "--json").json()
    assert summary["libraries"][0]["unchanged"] == 60
    row = media_rows(engine)[back]
    assert row["missing_since"] is None
    assert row["updated_at"] == before["updated_at"]
    assert row["last_seen_at"] > before["last_seen_at"]


def test_prune_deletes_missing_items_and_their_links(cli, fake, engine):
    cli("sync")
    gone = fake.item_id("Movies", 3)
    fake.remove("Movies", 3)
    summary = cli("sync", "--prune", "--json").json()
    assert summary["libraries"][0]["pruned"] == 1
    assert gone not in media_rows(engine)
    assert cli("db", "check", "--json").json() == {
        "status": "ok",
        "orphans": {
            "media_tag.media_id": 0, "media_genre.media_id": 0, "media_tagline.media_id": 0,
            "process_run.media_id": 0, "pushed_tag.media_id": 0, "media_tag.tag_id": 0,
            "media_genre.genre_id": 0,
        },
    }  # fmt: skip


def test_mass_delete_is_refused_unless_allowed(cli, fake, engine):
    cli("sync")
    for index in range(40):
        fake.remove("Movies", index)
    out = cli("sync", "--json")
    assert out.exit_code == 1
    assert "refusing to mark 40 of 60 items missing" in out.stderr
    assert out.json()["status"] == "failed"
    assert sum(r["missing_since"] is not None for r in media_rows(engine).values()) == 0
    out = cli("sync", "--allow-mass-delete", "--json")
    assert out.exit_code == 0
    assert sum(r["missing_since"] is not None for r in media_rows(engine).values()) == 40


def test_empty_server_answer_cannot_wipe_the_catalog(cli, fake, engine):
    cli("sync", "--library", "Movies")
    for index in range(60):
        fake.remove("Movies", index)
    out = cli("sync", "--library", "Movies")
    assert out.exit_code == 1
    assert all(r["missing_since"] is None for r in media_rows(engine).values())


def test_since_last_asks_only_for_items_saved_since(cli, fake, engine):
    cli("sync")
    fake.edit("Movies", 2, Overview="Now with a better overview.")
    fake.requests.clear()
    summary = cli("sync", "--since-last", "--json").json()
    movies, shows = summary["libraries"]
    assert (movies["seen"], movies["updated"], movies["full"]) == (1, 1, False)
    assert shows["seen"] == 0
    item_requests = [r for r in fake.requests if r.path == "/Items"]
    assert all("MinDateLastSaved" in r.query for r in item_requests)
    assert (
        media_rows(engine)[fake.item_id("Movies", 2)]["overview"] == "Now with a better overview."
    )


def test_total_is_counted_once_per_library(cli, fake):
    cli("sync")
    counted = [
        r
        for r in fake.requests
        if r.path == "/Items" and r.query["EnableTotalRecordCount"] == "true"
    ]
    assert len(counted) == 2


def test_malformed_items_are_skipped_counted_and_named(cli, fake, engine):
    fake.faults = Faults(malformed_every=10)
    out = cli("sync", "--json")
    assert out.exit_code == 3, "partial: some items were skipped"
    summary = out.json()
    assert summary["status"] == "partial"
    assert [lib["skipped"] for lib in summary["libraries"]] == [6, 4]
    bad = fake.malformed_indexes("Movies")
    assert len(media_rows(engine)) == 104 - 10
    with_id = [fake.item("Movies", i) for i in bad if "Id" in fake.item("Movies", i)]
    assert any(raw["Id"] in out.stderr for raw in with_id), "the log names the item"


def test_invalid_item_still_on_the_server_is_not_marked_missing(cli, fake, engine):
    cli("sync")
    target = fake.item_id("Movies", 9)
    fake.edit("Movies", 9, CommunityRating=99)
    out = cli("sync", "--json")
    assert out.json()["libraries"][0]["skipped"] == 1
    assert media_rows(engine)[target]["missing_since"] is None


def test_item_repeated_across_pages_is_written_once(cli, fake, engine):
    fake.faults = Faults(boundary_repeats=True)
    summary = cli(
        "sync", "--json", env={"CATALOG_PAGE_SIZE": "7", "CATALOG_CHUNK_SIZE": "5"}
    ).json()
    movies = summary["libraries"][0]
    assert movies["seen"] == movies["inserted"] == 60
    assert len(media_rows(engine)) == 104


def test_an_item_repeated_pages_later_is_written_once(cli, fake, engine):
    """Ties sorted unstably can bring an item back pages later, into another chunk: it is
    written once, found unchanged the second time, and nothing is skipped."""
    fake.faults = Faults(far_repeat=(15, 1))
    env = {"CATALOG_PAGE_SIZE": "5", "CATALOG_CHUNK_SIZE": "10"}
    summary = cli("sync", "--library", "Movies", "--json", env=env).json()
    movies = summary["libraries"][0]
    assert summary["status"] == "ok"
    assert (movies["seen"], movies["inserted"], movies["unchanged"], movies["skipped"]) == (
        61, 60, 1, 0,
    )  # fmt: skip
    assert len(media_rows(engine)) == 60


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_new_item_in_two_chunks_written_side_by_side_is_written_once(cli, fake, engine):
    """PostgreSQL writes chunks side by side. A new item in two of them is inserted by the
    first; the second, kept waiting on it, is sorted again once the first commits and finds
    it held: nothing is skipped as refused. Here the first chunk is held back (another
    transaction is inserting one of its tags) until the second waits."""
    import threading

    from sqlalchemy import insert

    repeated = served_movies(fake)[1].external_id  # in chunk one, and again in chunk two
    index = next(i for i in range(60) if fake.item_id("Movies", i) == repeated)
    fake.edit("Movies", index, Tags=["held back"])
    fake.faults = Faults(far_repeat=(15, 1))
    holder = engine.connect()
    holder.execute(insert(TAG).values(name="held back"))
    release = threading.Timer(2.0, holder.commit)
    release.start()
    try:
        env = {"CATALOG_PAGE_SIZE": "5", "CATALOG_CHUNK_SIZE": "10"}
        summary = cli("sync", "--library", "Movies", "--json", env=env).json()
    finally:
        release.join()
        holder.close()
    movies = summary["libraries"][0]
    assert summary["status"] == "ok", summary
    assert (movies["inserted"], movies["unchanged"], movies["skipped"]) == (60, 1, 0)
    assert media_rows(engine)[repeated]["name"] == fake.item("Movies", index)["Name"]
    with engine.connect() as conn:
        tagged = conn.execute(
            select(MEDIA.c.external_id)
            .join(MEDIA_TAG, MEDIA_TAG.c.media_id == MEDIA.c.id)
            .join(TAG, TAG.c.id == MEDIA_TAG.c.tag_id)
            .where(TAG.c.name == "held back")
        ).scalars()
        assert list(tagged) == [repeated]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_chunks_that_cross_are_told_from_refused_ones(engine):
    """Two chunks written side by side that hold the same new items cross: the second waits
    on the first's key, then fails on it, or both wait on each other (a deadlock). Either is
    written again; a violation of another key is the data's fault, refused as before."""
    import threading

    from sqlalchemy import exc as sa_exc
    from sqlalchemy import insert

    from catalog.db.models import LIBRARY, SERVER
    from catalog.db.refused import crossed

    with engine.begin() as conn:
        server = conn.execute(insert(SERVER).values(name="s", kind="jellyfin", url="http://x"))
        library = conn.execute(
            insert(LIBRARY).values(
                server_id=server.inserted_primary_key[0], external_id="l", name="l"
            )
        ).inserted_primary_key[0]

    def item(external_id: str) -> Any:
        return insert(MEDIA).values(
            library_id=library, external_id=external_id, kind="movie", name="n", sort_name="n",
            content_hash="h", first_seen_at=utcnow(), updated_at=utcnow(), last_seen_at=utcnow(),
        )  # fmt: skip

    first, second = engine.connect(), engine.connect()
    first.execute(item("x"))
    second.execute(item("y"))
    failures: list[BaseException] = []

    def first_takes_y() -> None:
        try:
            first.execute(item("y"))
        except sa_exc.DBAPIError as exc:
            failures.append(exc)
            first.rollback()

    waiting = threading.Thread(target=first_takes_y)
    waiting.start()
    try:
        second.execute(item("x"))
    except sa_exc.DBAPIError as exc:
        failures.append(exc)
        second.rollback()
    waiting.join()
    first.commit()
    second.commit()
    assert len(failures) == 1 and crossed(failures[0]), failures  # the deadlock's victim
    with pytest.raises(sa_exc.IntegrityError) as held, engine.begin() as conn:
        conn.execute(item("x"))  # the survivor committed both
    assert crossed(held.value)
    with pytest.raises(sa_exc.IntegrityError) as other, engine.begin() as conn:
        conn.execute(insert(TAG).values(name="t"))
        conn.execute(insert(TAG).values(name="t"))
    assert not crossed(other.value)
    first.close()
    second.close()


def test_sync_of_named_library_only(cli, engine):
    summary = cli("sync", "--library", "tv shows", "--json").json()
    assert [lib["name"] for lib in summary["libraries"]] == ["TV Shows"]
    assert len(media_rows(engine)) == 44


def test_unknown_library_is_a_config_error_naming_the_choices(cli):
    out = cli("sync", "--library", "Cartoons")
    assert out.exit_code == 2
    assert "no library named 'Cartoons'" in out.stderr and "'Movies'" in out.stderr


def test_every_run_is_recorded_with_its_counts(cli, engine):
    cli("sync")
    cli("sync", "--library", "Nope")
    with engine.connect() as conn:
        runs = conn.execute(select(RUN).order_by(RUN.c.id)).all()
    assert [r.status for r in runs] == ["ok", "failed"]
    assert runs[0].counts["libraries"][0]["inserted"] == 60
    assert "no library named 'Nope'" in runs[1].error
    assert runs[0].finished_at >= runs[0].started_at


def test_run_history_is_bounded(cli, engine, tmp_path):
    config = tmp_path / "catalog.toml"
    config.write_text("[runs]\nkeep = 3\n")
    for _ in range(5):
        assert cli("sync", "--config", str(config)).exit_code == 0
    with engine.connect() as conn:
        ids = conn.execute(select(RUN.c.id).order_by(RUN.c.id)).scalars().all()
    assert len(ids) == 3 and ids[-1] - ids[0] == 2


def test_statements_per_chunk_do_not_grow_with_items(database_url, fake, engine):
    """Set-based writes: the statements a sync issues grow with pages and chunks only."""
    import asyncio

    from sqlalchemy import event

    from catalog.config import ServerConfig, SyncConfig
    from catalog.progress import QuietProgress
    from catalog.sources.connect import open_source
    from catalog.sync import SyncOptions, SyncReport, run_sync

    def count_statements(size: int) -> int:
        fake.add("Movies", size)
        server = ServerConfig("fake", fake.url, token="s3cret-test-token")
        statements = []
        listener = lambda *args: statements.append(1)  # noqa: E731
        event.listen(engine, "before_cursor_execute", listener)

        async def go() -> None:
            async with open_source(server, SyncConfig(page_size=100)) as source:
                options = SyncOptions(libraries=("Movies",), chunk_size=100)
                await run_sync(engine, source, server, options, QuietProgress(), SyncReport("x"))

        asyncio.run(go())
        event.remove(engine, "before_cursor_execute", listener)
        return len(statements)

    first = count_statements(0)  # 60 items: one chunk
    grown = count_statements(940)  # 1000 items: ten chunks
    assert grown <= first * 10, (first, grown)
    assert grown / 1000 < 25, "per 1,000 items"


def _analyzed(engine: Engine, table: str = "media") -> bool:
    query = "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relname = :table"
    with engine.connect() as conn:
        return bool(conn.execute(text(query), {"table": table}).scalar())


def _assert_analyzed_for_the_planner(engine: Engine) -> None:
    for table in ("media", "media_tag", "media_genre", "media_tagline"):
        assert _analyzed(engine, table), table
    with engine.connect() as conn:
        query = "SELECT attname FROM pg_stats WHERE tablename = 'media'"
        columns = set(conn.execute(text(query)).scalars())
    assert {"library_id", "year", "sort_name", "missing_since", "name", "kind"} <= columns
    unqueried = {"overview", "provider_ids", "season", "first_seen_at", "last_seen_at"}
    assert not columns & unqueried, "columns no query filters on"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_pass_that_writes_many_items_refreshes_the_planners_statistics(fake, engine):
    """Until autovacuum gets to a catalog just filled, PostgreSQL plans it as empty (a page of
    `media list` then scanned every tag link): a big pass ANALYZEs what it wrote, a small one
    leaves it to autovacuum. Here the big pass writes on one connection (one chunk), and the
    statements run one after the other."""
    # 60 items written: below the threshold
    _sync_movies(engine, fake, page_size=10, chunk_size=1000, analyze_after=61)
    assert not _analyzed(engine)
    fake.add("Movies", 1)
    with engine.begin() as conn:  # a full rewrite: 61 written
        conn.execute(update(MEDIA).values(content_hash="stale"))
    _sync_movies(engine, fake, page_size=10, chunk_size=1000, analyze_after=61)
    _assert_analyzed_for_the_planner(engine)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_first_sync_on_two_connections_analyzes_media_and_its_links_side_by_side(fake, engine):
    """A first sync in chunks of 20 writes on two connections from its first full chunk; its
    statistics statements then run one on each."""
    _sync_movies(engine, fake, page_size=10, chunk_size=20, analyze_after=60)
    _assert_analyzed_for_the_planner(engine)


def test_catalog_has_no_orphans_after_changes(cli, fake, engine):
    cli("sync")
    for index in range(0, 20, 2):
        fake.edit("Movies", index, Tags=["x"], Genres=[], Taglines=["new"])
    fake.remove("TV Shows", 1)
    cli("sync", "--prune")
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(MEDIA_TAG)).scalar()
    assert count > 0
    assert cli("db", "check").exit_code == 0


def test_unchanged_items_are_not_even_parsed(cli, fake, engine):
    """The digest of the item as served is compared before parsing: a re-sync parses only
    what changed."""
    from datetime import UTC, datetime

    from catalog.db.writers import writer_for
    from catalog.sources.jellyfin import parse_item

    cli("sync", "--library", "Movies")
    fake.edit("Movies", 4, Name="Changed")
    raws = served_movies(fake)
    parsed = []

    def counting_parse(raw):
        parsed.append(raw.external_id)
        return parse_item(raw.raw)

    with engine.begin() as conn:
        library_id = conn.execute(select(MEDIA.c.library_id).limit(1)).scalar_one()
        counts = writer_for(engine.dialect.name).upsert_chunk(
            conn, library_id, raws, counting_parse, datetime.now(UTC)
        )
    assert parsed == [fake.item_id("Movies", 4)]
    assert (counts.updated, counts.unchanged) == (1, 59)


def served_movies(fake) -> list:
    """The Movies library's items as the server serves them now (RawItems, in order)."""
    import asyncio

    from catalog.config import ServerConfig, SyncConfig
    from catalog.sources.connect import open_source

    async def read() -> list:
        server = ServerConfig("fake", fake.url, token=TOKEN)
        async with open_source(server, SyncConfig()) as source:
            movies = next(lib for lib in await source.libraries() if lib.name == "Movies")
            return [raw async for page in source.pages(movies) for raw in page.items]

    return asyncio.run(read())


def test_a_catalog_of_earlier_digests_is_redigested_without_rewrites_or_retags(cli, fake, engine):
    """A catalog written before holds blake2b digests. The first sync after finds its items
    unchanged all the same, and gives them (and their tagging) today's digest in place: no
    item rewritten, none taken for changed by `retag --changed`, and a changed one still is."""
    import hashlib
    from datetime import timedelta

    from catalog.db.models import PROCESS_RUN

    cli("sync", "--library", "Movies")
    raws = {raw.external_id: raw for raw in served_movies(fake)}
    earlier = {ext: hashlib.blake2b(r.raw, digest_size=16).hexdigest() for ext, r in raws.items()}
    back, changed = fake.item_id("Movies", 3), fake.item_id("Movies", 4)
    now = utcnow()
    with engine.begin() as conn:
        ids = {r.external_id: r.id for r in conn.execute(select(MEDIA.c.external_id, MEDIA.c.id))}
        for ext, digest in earlier.items():
            gone = now - timedelta(days=1) if ext == back else None
            where = MEDIA.c.external_id == ext
            conn.execute(update(MEDIA).where(where).values(content_hash=digest, missing_since=gone))
        conn.execute(PROCESS_RUN.insert(), [
            {"media_id": ids[ext], "process": "tagging", "last_run_at": now,
             "last_success_at": now, "input_hash": digest, "status": "ok"}
            for ext, digest in earlier.items()
        ])  # fmt: skip
    assert cli("retag", "--changed", "--dry-run", "--json").json()["selected"] == 0
    fake.edit("Movies", 4, Name="Changed")
    before = media_rows(engine)

    movies = cli("sync", "--library", "Movies", "--json").json()["libraries"][0]

    assert (movies["inserted"], movies["updated"], movies["unchanged"]) == (0, 1, 59)
    after = media_rows(engine)
    assert after[back]["missing_since"] is None
    for ext, row in after.items():
        if ext != changed:
            assert row["content_hash"] == raws[ext].digest != earlier[ext]
            assert row["updated_at"] == before[ext]["updated_at"]
    with engine.connect() as conn:
        query = select(PROCESS_RUN.c.media_id, PROCESS_RUN.c.input_hash)
        tagged = {r.media_id: r.input_hash for r in conn.execute(query)}
    assert {ext: tagged[ids[ext]] for ext in raws if ext != changed} == {
        ext: raws[ext].digest for ext in raws if ext != changed
    }
    assert cli("retag", "--changed", "--dry-run", "--json").json()["selected"] == 1
    again = cli("sync", "--library", "Movies", "--json").json()["libraries"][0]
    assert (again["updated"], again["unchanged"]) == (0, 60)


def _sync_movies(engine: Engine, fake, page_size: int = 500, **options: Any) -> list[str]:
    """One full sync of Movies through run_sync (in chunks of 20 unless `options` say
    otherwise): the statements it sent."""
    import asyncio

    from catalog.config import ServerConfig, SyncConfig
    from catalog.db.engine import recorded_statements
    from catalog.progress import QuietProgress
    from catalog.sources.connect import open_source
    from catalog.sync import SyncOptions, SyncReport, run_sync

    server = ServerConfig("fake", fake.url, token=TOKEN)

    async def go() -> None:
        async with open_source(server, SyncConfig(page_size=page_size)) as source:
            wanted = SyncOptions(libraries=("Movies",), **{"chunk_size": 20, **options})
            await run_sync(engine, source, server, wanted, QuietProgress(), SyncReport("x"))

    with recorded_statements(engine) as statements:
        asyncio.run(go())
    return statements


def test_an_unchanged_resync_writes_nothing_for_its_items_and_still_finds_the_gone(fake, engine):
    """Read, hash and compare only: the unchanged items' chunks send one read each, no
    scratch rows and no transaction setup, and the item gone from the server is still marked
    missing (the seen ones are remembered in memory)."""
    _sync_movies(engine, fake)
    gone, last = fake.item_id("Movies", 7), fake.item_id("Movies", 59)
    fake.remove("Movies", 59)  # the highest catalog id: past the end of what was seen
    fake.remove("Movies", 7)
    before = media_rows(engine)
    statements = _sync_movies(engine, fake)
    after = media_rows(engine)
    assert after[gone]["missing_since"] is not None
    assert after[last]["missing_since"] is not None
    assert {k: v for k, v in after.items() if k not in (gone, last)} == {
        k: v for k, v in before.items() if k not in (gone, last)
    }
    assert [s for s in statements if "synchronous_commit" in s] == []
    media_writes = [s for s in statements if s.lstrip().upper().startswith(("INSERT", "COPY"))]
    assert not [s for s in media_writes if "media" in s.split("(")[0]]


def test_seen_ids_hold_one_bit_per_catalog_id():
    seen = SeenIds()
    seen.add([3, 64, 10_000])
    seen.add([])
    seen.add([5])
    assert [i for i in range(20_000) if i in seen] == [3, 5, 64, 10_000]
    assert len(seen.bits) <= 2 * (10_000 // 8 + 1)


def test_the_next_page_is_asked_for_while_this_one_is_digested(fake):
    """The server prepares the next page while the client digests this one: one request
    ahead, never more."""
    import asyncio

    from catalog.config import ServerConfig, SyncConfig
    from catalog.sources.connect import open_source

    async def first_page_then_wait() -> tuple[int, list[str]]:
        server = ServerConfig("fake", fake.url, token=TOKEN)
        async with open_source(server, SyncConfig(page_size=10)) as source:
            movies = next(lib for lib in await source.libraries() if lib.name == "Movies")
            pages = source.pages(movies)
            first = await anext(pages)
            await asyncio.sleep(0.3)  # time for the request ahead, and for any further one
            asked = [r.query.get("StartIndex") for r in fake.requests if r.path == "/Items"]
            await pages.aclose()
            return len(first.items), asked

    count, asked = asyncio.run(first_page_then_wait())
    assert count == 10
    assert asked == ["0", "10"]


@pytest.mark.parametrize("change", ["shrinks", "grows"])
def test_a_library_that_changes_during_a_read_is_read_whole(fake, change):
    """Pages end at the first short one, not at the count: a library that shrank or grew
    since the count (60 here) is read whole, and no page is asked for past the end."""
    import asyncio

    from catalog.config import ServerConfig, SyncConfig
    from catalog.sources.connect import open_source

    async def read_after_first_page() -> list[str]:
        server = ServerConfig("fake", fake.url, token=TOKEN)
        async with open_source(server, SyncConfig(page_size=10)) as source:
            movies = next(lib for lib in await source.libraries() if lib.name == "Movies")
            pages = source.pages(movies)
            first = await anext(pages)
            assert first.total == 60
            if change == "shrinks":
                for index in range(20, 60):
                    fake.remove("Movies", index)
            else:
                fake.add("Movies", 15)
            rest = [raw.external_id async for page in pages for raw in page.items]
            return [raw.external_id for raw in first.items] + rest

    read = asyncio.run(read_after_first_page())
    served = [i["Id"] for i in fake.items("Movies")]
    assert read == served
    assert len(read) == (20 if change == "shrinks" else 75)
    asked = [int(r.query["StartIndex"]) for r in fake.requests if r.path == "/Items"]
    assert asked == ([0, 10, 20] if change == "shrinks" else [0, 10, 20, 30, 40, 50, 60, 70])


class _CollectorWatch(FakeMediaServer):
    """Notes the collector's settings whenever an /Items page is asked for: in-process, they
    are those of the sync reading it."""

    def respond(self, method, path, query, headers, body):
        if path == "/Items":
            self.settings.append((gc.get_threshold()[0], gc.get_freeze_count() > 0))
        return super().respond(method, path, query, headers, body)


def test_a_sync_pass_runs_with_the_start_up_heap_frozen_and_the_collector_eased(cli, engine):
    before = gc.get_threshold()
    with _CollectorWatch([FakeLibrary("Movies", "movies", 60)], token=TOKEN) as server:
        server.settings = []
        out = cli("sync", url=server.url)
    assert out.exit_code == 0, out.stderr
    assert len(server.settings) == 60 // 25 + 1
    assert set(server.settings) == {(BULK_THRESHOLD, True)}
    assert gc.get_threshold() == before
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(MEDIA)).scalar_one() == 60
