"""Output that fits and reads well: every table at 80 columns with numbers and dates whole, one
timestamp form in machine output, CSV booleans, `media show` as text, the retag dry run's keys,
and progress lines with total, rate and ETA. Both databases where the catalog is read."""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import TOKEN
from rich.cells import cell_len
from sqlalchemy import Engine, insert, select

from catalog.cli import push as push_cli
from catalog.cli import retag as retag_cli
from catalog.cli import sync as sync_cli
from catalog.cli import tags as tags_cli
from catalog.db.models import (
    GENRE,
    LIBRARY,
    MEDIA,
    MEDIA_GENRE,
    MEDIA_TAG,
    MEDIA_TAGLINE,
    PROCESS_RUN,
    RUN,
    SERVER,
    TAG,
)
from catalog.progress import LogProgress
from catalog.push import PushReport
from catalog.retag import RetagReport
from catalog.sync import LibraryResult, SyncReport
from catalog.tags.plan import Change, Plan
from catalog.timefmt import iso_utc, local_minute, short_duration

README = Path(__file__).resolve().parent.parent / "README.md"
WIDTH = 80
ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
LOG_TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")  # the same, with ms
TABLE_MINUTE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}")
BIG = 1_234_567
ADDED = datetime(2024, 3, 9, 10, 20, 30, 654321, tzinfo=UTC)  # fractions the output drops
TITLE = "The Extraordinarily Long and Winding Road to Somewhere: A Director's Cut Edition"
TAGS = ["post-apocalyptic", "time travel", "based on comic", "cult film", "noir", "heist"]


# -- seeding ------------------------------------------------------------------------------------


def seed_catalog(engine: Engine, servers: list[str], first_id: int = BIG) -> list[int]:
    """A library "Movies" per server and two items in each (long titles, big ids, provider ids,
    tags, genres, a tagline, a tagging run; one with subtitles); their ids."""
    now = datetime.now(UTC)
    ids = []
    with engine.begin() as conn:
        tag_ids = _named(conn, TAG, TAGS)
        genre_ids = _named(conn, GENRE, ["Drama", "Film-Noir"])
        for n, server in enumerate(servers):
            server_id = conn.execute(
                insert(SERVER).returning(SERVER.c.id),
                {"name": server, "kind": "jellyfin", "url": "http://127.0.0.1:9"},
            ).scalar_one()
            library_id = conn.execute(
                insert(LIBRARY).returning(LIBRARY.c.id),
                {"server_id": server_id, "external_id": f"lib-{server}", "name": "Movies",
                 "kind": "movies"},
            ).scalar_one()  # fmt: skip
            for k in range(2):
                media_id = first_id + 2 * n + k
                ids.append(media_id)
                conn.execute(insert(MEDIA), {
                    "id": media_id, "library_id": library_id, "external_id": f"x{media_id}",
                    "kind": "movie", "name": f"{TITLE} {k}", "sort_name": f"{TITLE} {k}".lower(),
                    "year": 1990 + k, "premiere": date(1990 + k, 6, 25),
                    "community_rating": 7.5 + k, "subtitles": k == 0, "runtime_s": 7_260,
                    "provider_ids": {"Imdb": "tt0083658", "Tmdb": "78"}, "added_at": ADDED,
                    "content_hash": "x", "first_seen_at": now, "updated_at": now,
                    "last_seen_at": now, "missing_since": None,
                })  # fmt: skip
                conn.execute(insert(MEDIA_TAG), [
                    {"media_id": media_id, "tag_id": tag_ids[t], "origin": "server"} for t in TAGS
                ])  # fmt: skip
                conn.execute(insert(MEDIA_GENRE), [
                    {"media_id": media_id, "genre_id": genre_ids[g], "position": p}
                    for p, g in enumerate(["Drama", "Film-Noir"])
                ])  # fmt: skip
                conn.execute(insert(MEDIA_TAGLINE), {
                    "media_id": media_id, "origin": "server", "position": 0,
                    "text": "Man has made his match... now it's his problem.",
                })  # fmt: skip
                conn.execute(insert(PROCESS_RUN), {
                    "media_id": media_id, "process": "tagging", "last_run_at": ADDED,
                    "status": "ok", "last_success_at": ADDED,
                })  # fmt: skip
    return ids


def _named(conn: Any, table: Any, names: list[str]) -> dict[str, int]:
    """name → id of the tags or genres named, created where missing (a sync may have them)."""
    known = dict(conn.execute(select(table.c.name, table.c.id)).all())
    new = [{"name": name} for name in names if name not in known]
    if new:
        conn.execute(insert(table), new)
    return dict(conn.execute(select(table.c.name, table.c.id)).all())


def seed_runs(engine: Engine, servers: list[str]) -> list[dict[str, Any]]:
    """Run records with big counts, a long error and every status width."""
    started = datetime(2026, 12, 2, 5, 31, 7, 250000, tzinfo=UTC)
    rows = [
        {"command": "sync", "server": servers[0], "status": "interrupted", "started_at": started,
         "finished_at": started + timedelta(seconds=3599),
         "counts": {"seen": BIG, "written": 9_876_543, "failed": 123_456}, "error": None},
        {"command": "normalize", "server": None, "status": "interrupted",
         "started_at": started + timedelta(hours=1), "finished_at": None,
         "counts": {"seen": 48_210, "written": 1_234, "failed": 0},
         "error": "interrupted; nothing was changed, and the run can be started again at once"},
        {"command": "retag", "server": servers[-1], "status": "partial",
         "started_at": started + timedelta(hours=2),
         "finished_at": started + timedelta(hours=2, seconds=1.9),
         "counts": {"seen": BIG, "written": BIG, "failed": 12_345}, "error": None},
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(RUN), rows)
    for row, took in zip(rows, ("59m59s", "-", "1.9 s"), strict=True):
        row["took"] = took  # as the table shows the duration
    return rows


# -- reading tables -----------------------------------------------------------------------------


def assert_fits(text: str) -> list[str]:
    """The table's lines, each checked to fit WIDTH columns and to hold no cut cell."""
    lines = text.splitlines()
    assert lines, "no table printed"
    for line in lines:
        assert cell_len(line.rstrip()) <= WIDTH, line
    assert "…" not in text, text
    return lines


def header(lines: list[str], first: str) -> list[str]:
    """The header of the table whose first column is `first`: its column names."""
    line = next(line for line in lines if line.split()[:1] == [first])
    return re.split(r"\s{2,}", line.strip())


def row_of(lines: list[str], first: str) -> list[str]:
    """The first line of the row whose first cell is `first`, split into its cells."""
    line = next(line for line in lines if line.strip().startswith(first + " "))
    return re.split(r"\s{2,}", line.strip())


def cell_text(lines: list[str], column: str, next_column: str, first: str, anchor: str) -> str:
    """The whole text of the `column` cell of the row whose first line starts with `first`,
    over every line it wraps to, spaces dropped. `next_column`: the header after it (both
    left-aligned, as text columns are); `anchor`: a fixed column, filled on a row's first line
    only, which tells where the next row begins."""
    head = next(
        line for line in lines
        if {column, next_column, anchor} <= set(re.split(r"\s{2,}", line.strip()))
    )  # fmt: skip
    start = head.index(column)
    end = head.index(next_column, start + len(column))
    at = head.index(anchor)
    row = next(i for i, line in enumerate(lines) if line.startswith(first))
    text = lines[row][start:end]
    for line in lines[row + 1 :]:
        if line[at : at + len(anchor)].strip():  # the next row
            break
        text += line[start:end]
    return text.replace(" ", "")


NARROW = {"COLUMNS": str(WIDTH)}


@pytest.fixture
def narrow(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables rendered straight from their functions, at WIDTH columns."""
    monkeypatch.setenv("COLUMNS", str(WIDTH))


# -- tables -------------------------------------------------------------------------------------


@pytest.mark.parametrize("servers", [["home"], ["home", "cabin"]], ids=["one server", "two"])
def test_media_list_table_fits_80_columns_and_keeps_numbers_whole(cli, engine, servers):
    ids = seed_catalog(engine, servers)
    out = cli("media", "list", "--format", "table", env=NARROW)
    assert out.exit_code == 0, out.stderr
    lines = assert_fits(out.stdout)
    columns = header(lines, "id")
    expected = ["id", "name", "year", "kind", "library", "rating", "genres", "tags"]
    assert columns == ([*expected[:4], "server", *expected[4:]] if len(servers) > 1 else expected)
    for media_id in ids:
        cells = row_of(lines, str(media_id))
        assert cells[0] == str(media_id)
        assert {"1990", "1991"} & set(cells) and {"7.5", "8.5"} & set(cells), cells
    # Titles wrap (a long word folds) rather than get cut.
    assert cell_text(lines, "name", "year", f"{ids[0]} ", "kind") == f"{TITLE} 0".replace(" ", "")


def test_media_show_is_text_not_python_reprs(cli, engine):
    [media_id, _] = seed_catalog(engine, ["home"])
    out = cli("media", "show", str(media_id), env=NARROW)
    assert out.exit_code == 0, out.stderr
    lines = assert_fits(out.stdout)
    fields = {}
    first_field = next(i for i, line in enumerate(lines) if line.startswith("id "))
    for line in lines[first_field:]:
        if not line.startswith(" "):  # a field's first line (its value may wrap onto more)
            key, *value = re.split(r"\s{2,}", line.strip(), maxsplit=1)
            fields[key] = "".join(value)
    assert fields["provider_ids"] == "Imdb tt0083658, Tmdb 78"
    assert fields["genres"] == "Drama, Film-Noir"
    assert fields["subtitles"] == "yes" and fields["premiere"] == "1990-06-25"
    assert fields["added_at"] == local_minute(ADDED)
    assert fields["tags (server)"].startswith("based on comic, cult film, heist")
    assert fields["run tagging"] == f"{local_minute(ADDED)} ok"
    for repr_mark in ("{'", "['", "True", "False", "datetime"):
        assert repr_mark not in out.stdout


@pytest.mark.parametrize("servers", [["home"], ["home", "cabin"]], ids=["one server", "two"])
def test_status_table_fits_80_columns_with_big_counts(cli, engine, servers):
    seed_catalog(engine, servers)
    runs = seed_runs(engine, servers)
    out = cli("status", env=NARROW)
    assert out.exit_code == 0, out.stderr
    *table, errors = re.split(r"\n(?=\S+ at \d{4}-)", out.stdout, maxsplit=1)
    lines = assert_fits("".join(table))  # the errors below it are lines of their own
    columns = header(lines, "job")
    assert columns == ["job", "started", "took", "status", "seen", "written", "failed"]
    for run in runs:
        job = run["command"]
        if len(servers) > 1 and run["server"]:
            job += f" {run['server']}"
        cells = row_of(lines, job.split()[0])
        counts = run["counts"]
        assert cells[1:] == [
            local_minute(run["started_at"]), run["took"], run["status"],
            *(f"{counts[k]:,}" for k in ("seen", "written", "failed")),
        ]  # fmt: skip
        assert cell_text(lines, "job", "started", job.split()[0], "started") == job.replace(" ", "")
    error = f"normalize at {local_minute(runs[1]['started_at'])}: {runs[1]['error']}"
    assert errors.splitlines() == [error]  # whole, under the table


def test_job_summary_tables_fit_80_columns_with_big_counts(narrow, capsys):
    report = SyncReport(server="home", status="partial", duration_s=4321.0)
    report.libraries = [
        LibraryResult("Movies", seen=BIG, inserted=BIG, updated=BIG, unchanged=BIG, skipped=BIG,
                      missing=BIG),
        LibraryResult("Home Videos of the Family Holidays 1998-2024", seen=9_876_543),
    ]  # fmt: skip
    sync_cli.sync_table(report)
    retag_cli.retag_table(
        RetagReport(status="ok", selected=BIG, tagged=BIG, failed=BIG, skipped=BIG,
                    retries=BIG, rate_limited=BIG)
    )  # fmt: skip
    push_cli.push_table(
        PushReport(server="home", status="ok", selected=BIG, pushed=BIG, unchanged=BIG,
                   failed=BIG, retries=BIG, rate_limited=BIG)
    )  # fmt: skip
    lines = assert_fits(capsys.readouterr().err)
    assert header(lines, "library") == [
        "library", "seen", "inserted", "updated", "unchanged", "skipped", "missing"
    ]  # fmt: skip
    assert row_of(lines, "Movies") == ["Movies", *[f"{BIG:,}"] * 6]
    assert f"{9_876_543:,}" in row_of(lines, "Home Videos")
    titles = [line.strip() for line in lines]
    assert "sync of 'home': partial in 1h12m" in titles and "retag: ok in 0.0 s" in titles
    headers = [re.split(r"\s{2,}", line.strip()) for line in lines if "selected" in line.split()]
    assert headers == [
        ["selected", "tagged", "failed", "skipped", "retries", "rate limited"],
        ["selected", "pushed", "unchanged", "failed", "retries", "rate limited"],
    ]
    counts = [line for line in lines if line.split() == [f"{BIG:,}"] * 6]
    assert len(counts) == 2, lines  # the retag row and the push row, every count whole


def test_tag_tables_fit_80_columns(cli, engine, narrow, capsys):
    long_tag = "a_very_long_tag_name_that_some_tagging_service_made_up_for_this_one_film"
    seed_catalog(engine, ["home"])
    with engine.begin() as conn:
        conn.execute(insert(TAG), {"name": long_tag})
    out = cli("tags", "--order", "name", env=NARROW)
    lines = assert_fits(out.stdout)
    assert header(lines, "tag") == ["tag", "items"]
    assert row_of(lines, "noir") == ["noir", "2"]
    plan = Plan(changes=[
        Change(long_tag, "a_shorter_name", "rename", "rules file line 12: rename it please"),
        Change("Sci-Fi", None, "drop", "rules file line 13"),
        Change("[sci-fi]", "sci_fi", "rename", "clean"),  # text, not rich markup
    ])  # fmt: skip
    tags_cli._render_plan(plan, json_out=False)
    lines = assert_fits(capsys.readouterr().out)
    assert header(lines, "tag") == ["tag", "action", "new name", "why"]
    assert row_of(lines, "Sci-Fi") == ["Sci-Fi", "drop", "rules file line 13"]
    assert row_of(lines, "[sci-fi]") == ["[sci-fi]", "rename", "sci_fi", "clean"]
    assert cell_text(lines, "tag", "action", long_tag[:10], "action") == long_tag  # folded, not cut


def two_servers(tmp_path: Path, url: str) -> dict[str, str | None]:
    """The environment of a catalog fed by two configured servers (both the fake one)."""
    config = tmp_path / "two.toml"
    config.write_text(
        "".join(f'[servers.{name}]\nurl = "{url}"\ntoken = "{TOKEN}"\n' for name in ("a", "b"))
    )
    config.chmod(0o600)
    return {"CATALOG_CONFIG": str(config), "CATALOG_SERVER_URL": None,
            "CATALOG_SERVER_TOKEN": None, **NARROW}  # fmt: skip


def test_sync_and_libraries_tables_fit_80_columns(cli, fake, tmp_path):
    out = cli("sync", env=NARROW)
    lines = assert_fits(out.stderr[out.stderr.index("sync of") :])
    assert row_of(lines, "Movies") == ["Movies", "60", "60", "0", "0", "0", "0"]
    out = cli("libraries", env=NARROW)
    lines = assert_fits(out.stdout)
    assert header(lines, "name") == ["name", "kind", "id", "items", "missing", "last sync"]
    cells = row_of(lines, "Movies")
    assert cells[-3:-1] == ["60", "0"] and TABLE_MINUTE.fullmatch(cells[-1])
    out = cli("libraries", env=two_servers(tmp_path, fake.url))
    lines = assert_fits(out.stdout)
    assert header(lines, "server") == [
        "server", "name", "kind", "id", "items", "missing", "last sync"
    ]  # fmt: skip
    assert row_of(lines, "a")[-1] == "never"  # the catalog's server is "default"


def test_schedule_table_fits_80_columns(cli, database_url, tmp_path):
    config = tmp_path / "schedule.toml"
    config.write_text(
        f'database_url = "{database_url}"\n[schedule]\nsync = "0 3 * * *"\n'
        'normalize = "*/15 * * * 1-5"\nretag = "0 5 * * *"\npush = "0 6 * * *"\n'
    )
    assert cli("sync").exit_code == 0
    out = cli("schedule", "--config", str(config), env=NARROW)
    assert out.exit_code == 0, out.stderr
    lines = assert_fits(out.stdout)
    assert header(lines, "job") == ["job", "schedule", "next run", "last run", "status"]
    sync_row = row_of(lines, "sync")
    assert re.fullmatch(TABLE_MINUTE.pattern + r" \S+", sync_row[2]), sync_row
    assert TABLE_MINUTE.fullmatch(sync_row[3]) and sync_row[4] == "ok"
    assert row_of(lines, "retag")[3] == "never"


# -- machine output -----------------------------------------------------------------------------


def moments(value: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    """Every (key, value) of a JSON document whose key names a moment."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from moments(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from moments(v, key)
    elif key.endswith(("_at", "_since")) or key == "next_run":
        yield key, value


def test_every_machine_timestamp_has_one_form(cli, engine, database_url, tmp_path):
    synced = cli("sync", "--library", "Movies", "--log-format", "json")
    assert synced.exit_code == 0, synced.stderr
    log_times = [json.loads(line)["ts"] for line in synced.stderr.splitlines()]
    assert log_times and all(LOG_TS.match(ts) for ts in log_times), log_times
    [media_id, *_] = seed_catalog(engine, ["cabin"])
    seed_runs(engine, ["cabin"])
    config = tmp_path / "schedule.toml"
    config.write_text(f'database_url = "{database_url}"\n[schedule]\nsync = "0 3 * * *"\n')
    listed = cli("media", "list", "--format", "json", "--server", "cabin").json()
    documents = {
        "media list json": listed,
        "media list ndjson": [
            json.loads(line)
            for line in cli(
                "media", "list", "--format", "ndjson", "--limit", "500"
            ).stdout.splitlines()
        ],
        "media show": cli("media", "show", str(media_id), "--json").json(),
        "status": cli("status", "--json").json(),
        "libraries": cli("libraries", "--json").json(),
        "schedule": cli("schedule", "--config", str(config), "--json").json(),
    }
    csv_rows = list(csv.DictReader(io.StringIO(cli("media", "list", "--format", "csv").stdout)))
    documents["media list csv"] = [
        {k: v or None for k, v in row.items() if k in ("added_at", "missing_since")}
        for row in csv_rows
    ]
    for name, document in documents.items():
        found = [(k, v) for k, v in moments(document) if v is not None]
        assert found, name
        for key, value in found:
            assert ISO_UTC.match(value), (name, key, value)
    assert listed["items"][0]["added_at"] == "2024-03-09T10:20:30Z"
    shown = documents["media show"]
    assert shown["added_at"] == shown["runs"][0]["last_run_at"] == "2024-03-09T10:20:30Z"
    assert shown["premiere"] == "1990-06-25"  # a day stays a day
    started = [run["started_at"] for run in documents["status"]["runs"]]
    assert "2026-12-02T05:31:07Z" in started  # a seeded run, its fraction of a second dropped


def test_csv_booleans_are_true_and_false(cli, engine):
    seed_catalog(engine, ["home"])
    listed = cli("media", "list", "--format", "json").json()["items"]
    rows = list(csv.DictReader(io.StringIO(cli("media", "list", "--format", "csv").stdout)))
    assert [row["subtitles"] for row in rows] == [
        "true" if item["subtitles"] else "false" for item in listed
    ]
    assert {row["subtitles"] for row in rows} == {"true", "false"}


def test_retag_dry_run_json_keys_are_a_retags_summary_and_the_first_items(cli):
    assert cli("sync").exit_code == 0
    out = cli("retag", "--dry-run", "--json", "--limit", "3")
    assert out.exit_code == 0, out.stderr
    data = out.json()
    assert list(data) == [*RetagReport.json_keys(), "first"]
    assert set(data) == {
        "status", "duration_s", "run_id", "error", "selected", "tagged", "failed", "skipped",
        "retries", "rate_limited", "worker", "first",
    }  # fmt: skip
    assert data["status"] == "dry_run" and data["selected"] == 3 and data["tagged"] == 0
    assert [set(item) for item in data["first"]] == [{"id", "name", "tags"}] * 3
    readme = README.read_text(encoding="utf-8")
    assert "`--dry-run --json` prints the keys of a retag's summary" in readme
    assert '`first`: the first 10 items, `{"id", "name", "tags"}`' in readme


@pytest.mark.parametrize(
    ("moment", "milliseconds", "written"),
    [
        (datetime(2026, 12, 2, 5, 31, 7, 999_999, tzinfo=UTC), False, "2026-12-02T05:31:07Z"),
        (datetime(2026, 12, 2, 6, 31, 7, 250_000, tzinfo=timezone(timedelta(hours=1))), True,
         "2026-12-02T05:31:07.250Z"),
        (datetime(2026, 12, 1, 23, 0, tzinfo=timezone(timedelta(hours=-5))), False,
         "2026-12-02T04:00:00Z"),
    ],
    ids=["fraction dropped", "milliseconds", "offset to UTC"],
)  # fmt: skip
def test_iso_utc_writes_utc_with_z(moment, milliseconds, written):
    assert iso_utc(moment, milliseconds=milliseconds) == written


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.04, "0.0 s"), (1.94, "1.9 s"), (9.96, "10 s"), (59.4, "59 s"), (59.6, "1m00s"),
     (185, "3m05s"), (3599, "59m59s"), (7620, "2h07m"), (86400 * 3 + 3600 * 4, "3d04h")],
)  # fmt: skip
def test_short_durations_stay_within_six_characters(seconds, shown):
    assert short_duration(seconds) == shown and len(shown) <= 6


# -- progress -----------------------------------------------------------------------------------


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_log_progress_shows_total_share_rate_and_eta(caplog):
    clock = Clock()
    progress = LogProgress(every_s=10, clock=clock)
    with caplog.at_level(logging.INFO, logger="catalog.progress"):
        progress.started("Movies", 100_000)
        clock.now += 5
        progress.advanced("Movies", 9_000)  # before 10 s: no line
        clock.now += 6.89
        progress.advanced("Movies", 13_000)
        progress.started("TV Shows", None)
        clock.now += 10
        progress.advanced("TV Shows", 18_500)
        progress.finished("Movies", 100_000, "100,000 seen, 3 new")
    assert [r.getMessage() for r in caplog.records] == [
        "'Movies': 100,000 items to go",
        "'Movies': 22,000/100,000 items done (22 %), 1,850 items/s, ETA 42 s",
        "'TV Shows': ? items to go",
        "'TV Shows': 18,500 items done, 1,850 items/s",
        "'Movies': 100,000/100,000 items done (100 %), 4,568 items/s; 100,000 seen, 3 new",
    ]


PROGRESS_LINE = re.compile(
    r"'(?P<task>[^']+)': (?P<done>[\d,]+)/(?P<total>[\d,]+) items done \((?P<share>\d+) %\), "
    r"(?P<rate>[\d,]+) items/s; (?P<summary>.*)$"
)


def test_a_sync_off_a_terminal_logs_progress_lines_with_total_and_rate(cli):
    out = cli("sync")
    assert out.exit_code == 0, out.stderr
    lines = [m for line in out.stderr.splitlines() if (m := PROGRESS_LINE.search(line))]
    assert {m["task"]: (m["done"], m["total"], m["share"]) for m in lines} == {
        "Movies": ("60", "60", "100"), "TV Shows": ("44", "44", "100"),
    }  # fmt: skip
    assert all(int(m["rate"].replace(",", "")) > 0 for m in lines)
    assert lines[0]["summary"].startswith("60 seen, 60 new")
