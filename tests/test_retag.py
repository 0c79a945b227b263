"""`catalog retag` end to end: the real command against the fake media server's catalog and the
fake tagger on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text, update

from catalog.db.engine import recorded_statements
from catalog.db.locks import job_lock
from catalog.db.models import (
    MEDIA,
    MEDIA_TAG,
    PROCESS_RUN,
    RUN,
    TAG,
    TAG_ALIAS,
)
from catalog.db.models import MEDIA_TAGLINE as TAGLINE
from catalog.fakes.tagger import FakeTagger, TaggerFaults
from catalog.retag import (
    Outcome,
    Selection,
    count_overdue,
    iter_overdue,
    select_overdue,
    write_outcomes,
)
from catalog.tagging import TagAnswer, TagRequest

TAGGER_TOKEN = "tagger-s3cret"
# Fast failure for tests: tiny backoff, a breaker that opens quickly and cools down briefly.
FAST = """
[tagger]
rate = 500.0
concurrency = 8
retries = 2
backoff_s = 0.01
backoff_max_s = 0.05
breaker_failures = 3
breaker_cooldown_s = 0.1
breaker_max_opens = 2
flush_s = 0.2
"""
ITEMS = 104  # the `fake` media server fixture: 60 movies, 44 TV items


@pytest.fixture
def tagger() -> Iterator[FakeTagger]:
    with FakeTagger(token=TAGGER_TOKEN) as fake:
        yield fake


@pytest.fixture
def fast_config(tmp_path: Path) -> Path:
    path = tmp_path / "fast.toml"
    path.write_text(FAST)
    return path


@pytest.fixture
def retag(cli: Any, tagger: FakeTagger, fast_config: Path) -> Any:
    """Sync the fake media server once, then run `catalog retag ARGS` against the fake tagger."""
    assert cli("sync", "--quiet").exit_code == 0

    def run(*args: str, env: dict[str, str] | None = None) -> Any:
        base = {"CATALOG_TAGGER_URL": tagger.url, "CATALOG_TAGGER_TOKEN": TAGGER_TOKEN}
        return cli("retag", "--config", str(fast_config), *args, env={**base, **(env or {})})

    return run


def tagger_tags(engine: Engine) -> dict[int, set[str]]:
    query = (
        select(MEDIA_TAG.c.media_id, TAG.c.name)
        .join(TAG, TAG.c.id == MEDIA_TAG.c.tag_id)
        .where(MEDIA_TAG.c.origin == "tagger")
    )
    found: dict[int, set[str]] = {}
    with engine.connect() as conn:
        for media_id, name in conn.execute(query):
            found.setdefault(media_id, set()).add(name)
    return found


def server_tag_ids(engine: Engine, media_id: int) -> set[int]:
    where = (MEDIA_TAG.c.media_id == media_id, MEDIA_TAG.c.origin == "server")
    with engine.connect() as conn:
        return set(conn.execute(select(MEDIA_TAG.c.tag_id).where(*where)).scalars())


def runs_by_status(engine: Engine) -> dict[str, int]:
    query = select(PROCESS_RUN.c.status, PROCESS_RUN.c.media_id)
    counts: dict[str, int] = {}
    with engine.connect() as conn:
        for status, _ in conn.execute(query):
            counts[status] = counts.get(status, 0) + 1
    return counts


def media_ids(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(select(MEDIA.c.id).order_by(MEDIA.c.id)).scalars())


# -- selection ----------------------------------------------------------------------------------


def _set_run(engine: Engine, media_id: int, age_days: float, same_hash: bool = True) -> None:
    at = datetime.now(UTC) - timedelta(days=age_days)
    with engine.begin() as conn:
        content_hash = conn.execute(
            select(MEDIA.c.content_hash).where(MEDIA.c.id == media_id)
        ).scalar_one()
        conn.execute(
            PROCESS_RUN.insert(),
            {"media_id": media_id, "process": "tagging", "last_run_at": at, "last_success_at": at,
             "input_hash": content_hash if same_hash else "0" * 32, "status": "ok"},
        )  # fmt: skip


def _selected(engine: Engine, selection: Selection) -> set[int]:
    now = datetime.now(UTC)
    return {r.media_id for batch in iter_overdue(engine, selection, now, 7) for r in batch}


def test_selection_takes_never_and_long_ago_tagged_items_not_fresh_changed_or_missing(
    retag: Any, engine: Engine
) -> None:
    ids = media_ids(engine)
    never, old, fresh, changed, missing = ids[:5]
    _set_run(engine, old, age_days=40)
    _set_run(engine, fresh, age_days=5)
    _set_run(engine, changed, age_days=5, same_hash=False)
    with engine.begin() as conn:
        conn.execute(
            update(MEDIA).where(MEDIA.c.id == missing).values(missing_since=datetime.now(UTC))
        )
    untouched = set(ids[5:])
    default = _selected(engine, Selection())
    assert default == {never, old} | untouched
    assert _selected(engine, Selection(changed=True)) == default | {changed}
    assert _selected(engine, Selection(force=True)) == set(ids) - {missing}
    assert _selected(engine, Selection(older_than_s=3 * 86400)) == default | {fresh, changed}
    with engine.connect() as conn:
        assert count_overdue(conn, Selection(), datetime.now(UTC)) == len(default)


def test_selection_filters_by_library_and_stops_at_the_limit(retag: Any, engine: Engine) -> None:
    movies = _selected(engine, Selection(libraries=("movies",)))  # case-insensitive
    assert len(movies) == 60
    with engine.connect() as conn:
        kinds = set(conn.execute(select(MEDIA.c.kind).where(MEDIA.c.id.in_(movies))).scalars())
    assert kinds == {"movie"}
    limited = [r.media_id for b in iter_overdue(engine, Selection(limit=10), datetime.now(UTC), 4)
               for r in b]  # fmt: skip
    assert limited == media_ids(engine)[:10]


def test_selection_is_one_statement_per_batch_with_genres_and_tags(
    retag: Any, engine: Engine, fake: Any
) -> None:
    with recorded_statements(engine) as seen:
        batches = list(iter_overdue(engine, Selection(), datetime.now(UTC), batch=25))
    assert sum(len(b) for b in batches) == ITEMS
    assert len(seen) == len(batches) == 5  # 25+25+25+25+4: the short batch ends the stream
    with engine.connect() as conn:
        first = select_overdue(conn, Selection(), datetime.now(UTC), 0, 200)
        genre_rows = conn.execute(text("SELECT count(*) FROM media_genre")).scalar_one()
        tag_rows = conn.execute(text("SELECT count(*) FROM media_tag")).scalar_one()
    assert sum(len(r.genres) for r in first) == genre_rows > 0
    assert sum(len(r.current_tags) for r in first) == tag_rows > 0
    # Genres in the server's order (the first is the main genre), tags sorted.
    served = {i["Name"]: i["Genres"] for lib in ("Movies", "TV Shows") for i in fake.items(lib)}
    assert all(list(r.genres) == served[r.title] for r in first if r.title in served)
    assert any(list(r.genres) != sorted(r.genres) for r in first)
    assert all(list(r.current_tags) == sorted(r.current_tags) for r in first)


# -- write-back ---------------------------------------------------------------------------------


def _outcomes(engine: Engine, count: int) -> list[Outcome]:
    with engine.connect() as conn:
        requests = select_overdue(conn, Selection(), datetime.now(UTC), 0, count)
    return [
        Outcome(r, TagAnswer((f"t{r.media_id % 7}", "shared"), (f"line {r.media_id}",)))
        for r in requests
    ]


def test_write_back_statements_do_not_grow_with_the_batch(retag: Any, engine: Engine) -> None:
    counts = []
    for size in (5, 80):
        outcomes = _outcomes(engine, size)
        with recorded_statements(engine) as seen, engine.begin() as conn:
            result = write_outcomes(conn, outcomes, datetime.now(UTC))
        assert result.tagged == size
        counts.append(len(seen))
    assert counts[0] == counts[1]


def test_write_back_replaces_tagger_links_only_and_goes_through_aliases(
    retag: Any, engine: Engine
) -> None:
    request = _outcomes(engine, 1)[0].request
    server_before = server_tag_ids(engine, request.media_id)
    with engine.begin() as conn:
        conn.execute(TAG.insert(), [{"name": "film_noir"}])
        noir = conn.execute(select(TAG.c.id).where(TAG.c.name == "film_noir")).scalar_one()
        conn.execute(
            TAG_ALIAS.insert(),
            [{"raw_name": "Noir", "tag_id": noir}, {"raw_name": "junk", "tag_id": None}],
        )
    first = Outcome(request, TagAnswer(("old tag",), ("first line",)))
    second = Outcome(request, TagAnswer(("Noir", "junk", "Heist"), ("second line",)))
    for outcome in (first, second):
        with engine.begin() as conn:
            write_outcomes(conn, [outcome], datetime.now(UTC))
    assert tagger_tags(engine)[request.media_id] == {"film_noir", "Heist"}
    server_after = server_tag_ids(engine, request.media_id)
    with engine.connect() as conn:
        lines = conn.execute(
            select(TAGLINE.c.text).where(
                TAGLINE.c.media_id == request.media_id, TAGLINE.c.origin == "tagger"
            )
        ).scalars()
        assert list(lines) == ["second line"]
        row = conn.execute(
            select(PROCESS_RUN).where(PROCESS_RUN.c.media_id == request.media_id)
        ).one()
    assert server_after == server_before
    assert (row.status, row.input_hash, row.error) == ("ok", request.input_hash, None)


def test_a_failure_keeps_the_last_success_and_an_item_deleted_meanwhile_is_skipped(
    retag: Any, engine: Engine
) -> None:
    ok, gone = _outcomes(engine, 2)
    with engine.begin() as conn:
        write_outcomes(conn, [ok], datetime.now(UTC))
        conn.execute(MEDIA.delete().where(MEDIA.c.id == gone.request.media_id))
    with engine.connect() as conn:
        success = conn.execute(select(PROCESS_RUN.c.last_success_at)).scalar_one()
    with engine.begin() as conn:
        failed = Outcome(ok.request, error="HTTP 500 after 3 attempts")
        counts = write_outcomes(conn, [failed, gone], datetime.now(UTC))
    assert (counts.tagged, counts.failed, counts.gone) == (0, 1, 1)
    with engine.connect() as conn:
        rows = conn.execute(select(PROCESS_RUN)).all()
        links = conn.execute(
            select(MEDIA_TAG).where(MEDIA_TAG.c.media_id == gone.request.media_id)
        ).all()
    assert len(rows) == 1 and links == []  # nothing written for the deleted item
    assert (rows[0].status, rows[0].error) == ("failed", "HTTP 500 after 3 attempts")
    assert rows[0].last_success_at == success
    assert tagger_tags(engine)[ok.request.media_id] == set(ok.answer.tags)  # kept


# -- the command --------------------------------------------------------------------------------


def test_retag_tags_every_item_once_and_a_rerun_tags_nothing(
    retag: Any, engine: Engine, tagger: FakeTagger
) -> None:
    out = retag("--json", "--rate", "500", "--concurrency", "8")
    assert out.exit_code == 0, out.stderr
    summary = out.json()
    assert {k: summary[k] for k in ("status", "selected", "tagged", "failed", "skipped")} == {
        "status": "ok", "selected": ITEMS, "tagged": ITEMS, "failed": 0, "skipped": 0,
    }  # fmt: skip
    assert set(summary) >= {"retries", "rate_limited", "duration_s"}
    written = tagger_tags(engine)
    assert {m: names for m, names in written.items()} == {
        m: set(FakeTagger.tags_for(str(m))) for m in media_ids(engine)
    }
    assert runs_by_status(engine) == {"ok": ITEMS}
    again = retag("--json")
    assert again.exit_code == 0 and again.json()["selected"] == 0
    assert set(tagger.log.answered.values()) == {1}
    assert len(tagger.log.answered) == ITEMS
    body = tagger.log.bodies[-1]
    assert set(body["media"]) >= {"id", "title", "genres", "current_tags", "duration_minutes"}
    with engine.connect() as conn:
        run = conn.execute(select(RUN).where(RUN.c.command == "retag").order_by(RUN.c.id)).first()
    assert run.status == "ok" and run.counts["tagged"] == ITEMS


def test_dry_run_counts_and_calls_nothing(retag: Any, engine: Engine, tagger: FakeTagger) -> None:
    out = retag("--dry-run", "--json", "--library", "Movies", "--limit", "7")
    assert out.exit_code == 0, out.stderr
    data = out.json()
    assert data["selected"] == 7 and len(data["first"]) == 7
    assert tagger.log.arrivals == [] and runs_by_status(engine) == {}


def test_force_retags_fresh_items_and_changed_catches_edits(
    retag: Any, cli: Any, engine: Engine, tagger: FakeTagger, fake: Any
) -> None:
    assert retag("--library", "Movies", "--json").json()["tagged"] == 60
    assert retag("--library", "Movies", "--json").json()["selected"] == 0
    fake.edit("Movies", 3, Name="A New Title")
    assert cli("sync", "--quiet").exit_code == 0
    assert retag("--library", "Movies", "--json").json()["selected"] == 0
    changed = retag("--library", "Movies", "--changed", "--json").json()
    assert changed["tagged"] == 1
    assert retag("--library", "Movies", "--force", "--json").json()["tagged"] == 60


def test_rate_and_concurrency_hold_at_the_server(retag: Any, tagger: FakeTagger) -> None:
    tagger.latency_s = 0.05  # 8 workers could send 160/s: the rate is what binds
    out = retag("--json", "--library", "Movies", "--rate", "20", "--concurrency", "8")
    assert out.exit_code == 0, out.stderr
    burst = 2  # a tenth of a second's worth at 20/s
    assert tagger.log.max_in_window(1.0) <= 20 + burst
    span = max(tagger.log.arrivals) - min(tagger.log.arrivals)
    assert span >= (60 - burst) / 20 * 0.95  # paced, not sent in one go
    tagger.latency_s, tagger.log = 0.2, type(tagger.log)()  # now the concurrency binds
    out = retag("--json", "--library", "TV Shows", "--rate", "1000", "--concurrency", "3")
    assert out.exit_code == 0, out.stderr
    assert tagger.log.max_in_flight == 3  # reached, never exceeded


def test_retry_after_pauses_every_worker(retag: Any, tagger: FakeTagger) -> None:
    tagger.latency_s = 0.02
    tagger.faults = TaggerFaults(rate_limit_requests=frozenset({10}), retry_after_s=1)
    out = retag("--json", "--library", "Movies", "--rate", "200", "--concurrency", "4")
    assert out.exit_code == 0, out.stderr
    summary = out.json()
    assert summary["tagged"] == 60 and summary["rate_limited"] == 1 and summary["retries"] == 1
    (sent,) = tagger.log.rate_limited_at
    # Requests already on their way may land just after the 429; then nothing for a second.
    during = [t for t in tagger.log.arrivals if sent + 0.1 < t < sent + 0.95]
    assert during == []
    assert set(tagger.log.answered.values()) == {1}


def test_a_service_that_goes_down_trips_the_breaker_and_the_run_is_partial(
    retag: Any, engine: Engine, tagger: FakeTagger
) -> None:
    tagger.faults = TaggerFaults(down_after=20)
    out = retag("--json", "--concurrency", "2", "--rate", "500")
    assert out.exit_code == 3, out.stderr
    summary = out.json()
    answered = sum(tagger.log.answered.values())
    assert summary["status"] == "partial" and summary["tagged"] == answered >= 20
    assert "stopped calling it" in summary["error"] and "HTTP 500" in summary["error"]
    assert summary["skipped"] > 0
    assert summary["tagged"] + summary["failed"] + summary["skipped"] == summary["selected"]
    # Alone, a retag selects every overdue item; a worker (PostgreSQL) what it claimed so far.
    claimed_all = summary["selected"] == ITEMS
    assert claimed_all if engine.dialect.name == "sqlite" else summary["selected"] < ITEMS
    assert len(tagger_tags(engine)) == answered  # what was tagged is kept
    assert runs_by_status(engine).get("ok") == answered
    # The failed items stay overdue: a later run, once the service is back, takes them all.
    tagger.faults = TaggerFaults()
    again = retag("--json", "--rate", "500")
    assert again.json()["tagged"] == ITEMS - answered
    assert set(tagger.log.answered.values()) == {1}


def test_malformed_answers_fail_their_items_only(
    retag: Any, engine: Engine, tagger: FakeTagger
) -> None:
    bad = media_ids(engine)[:3]
    tagger.faults = TaggerFaults(malformed_ids=frozenset(str(i) for i in bad))
    out = retag("--json", "--rate", "500")
    assert out.exit_code == 3
    summary = out.json()
    assert (summary["tagged"], summary["failed"], summary["status"]) == (ITEMS - 3, 3, "partial")
    with engine.connect() as conn:
        failed = conn.execute(
            select(PROCESS_RUN.c.media_id, PROCESS_RUN.c.error).where(
                PROCESS_RUN.c.status == "failed"
            )
        ).all()
    assert sorted(m for m, _ in failed) == bad
    assert all("not tags" in error for _, error in failed)
    assert "item(s) failed" in out.stderr
    retry = retag("--dry-run", "--json").json()
    assert retry["selected"] == 3  # failed items stay overdue


def test_oversized_answer_is_refused(retag: Any, engine: Engine, tagger: FakeTagger) -> None:
    tagger.faults = TaggerFaults(oversized_bytes=2 * 1024 * 1024)
    out = retag("--json", "--limit", "2")
    assert out.exit_code == 1  # every call failed: nothing was answered, the run failed
    assert out.json()["failed"] == 2
    with engine.connect() as conn:
        errors = conn.execute(select(PROCESS_RUN.c.error)).scalars().all()
    assert all("refused" in e for e in errors)


def test_openai_compatible_backend(retag: Any, engine: Engine, tagger: FakeTagger) -> None:
    env = {"CATALOG_TAGGER_KIND": "openai", "CATALOG_TAGGER_MODEL": "local-model"}
    out = retag("--json", "--limit", "5", env=env)
    assert out.exit_code == 0, out.stderr
    first = media_ids(engine)[:5]
    assert tagger_tags(engine) == {m: set(FakeTagger.tags_for(str(m))) for m in first}


def test_a_refused_token_stops_the_run_with_one_line(
    retag: Any, engine: Engine, tagger: FakeTagger
) -> None:
    out = retag("--limit", "5", env={"CATALOG_TAGGER_TOKEN": "wrong"})
    assert out.exit_code == 1
    assert "refused the token" in out.stderr and "wrong" not in out.stderr
    assert "Traceback" not in out.stderr
    assert tagger_tags(engine) == {} and runs_by_status(engine) == {}
    with engine.connect() as conn:
        assert conn.execute(select(RUN.c.status).where(RUN.c.command == "retag")).scalar() == (
            "failed"
        )


def test_wrong_url_and_missing_config_are_clear_errors(retag: Any, tagger: FakeTagger) -> None:
    wrong = retag("--limit", "1", env={"CATALOG_TAGGER_URL": tagger.url + "/nope"})
    assert (
        wrong.exit_code == 1
        and "HTTP 404" in wrong.stderr
        and "CATALOG_TAGGER_URL" in (wrong.stderr)
    )
    unset = retag(env={"CATALOG_TAGGER_URL": ""})
    assert unset.exit_code == 2 and "no tagging service is configured" in unset.stderr
    bad = retag("--older-than", "soon")
    assert bad.exit_code == 2 and "--older-than" in bad.stderr


def test_interrupted_run_keeps_what_was_answered_and_a_rerun_finishes_exactly_once(
    retag: Any, database_url: str, engine: Engine, tagger: FakeTagger, fast_config: Path
) -> None:
    tagger.latency_s = 0.2
    env = {
        **os.environ, "CATALOG_DATABASE_URL": database_url, "CATALOG_TAGGER_URL": tagger.url,
        "CATALOG_TAGGER_TOKEN": TAGGER_TOKEN,
    }  # fmt: skip
    cmd = [sys.executable, "-m", "catalog", "retag", "--config", str(fast_config), "--json",
           "--rate", "40", "--concurrency", "4"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while sum(tagger.log.answered.values()) < 12 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr.decode()
    assert b"interrupted" in stderr
    first = tagger_tags(engine)
    answered = sum(tagger.log.answered.values())
    # Every answer that reached us was written; a call cut off in flight may have been
    # answered by the service without us ever reading it.
    assert 12 <= len(first) <= answered <= len(first) + 4
    with engine.connect() as conn:
        status = conn.execute(select(RUN.c.status).where(RUN.c.command == "retag")).scalar()
    assert status == "interrupted"
    again = retag("--json", "--rate", "500")
    assert again.json()["tagged"] == ITEMS - len(first)
    assert runs_by_status(engine) == {"ok": ITEMS}
    assert all(tagger.log.answered[str(m)] == 1 for m in first)  # none tagged twice


def test_request_carries_what_the_contract_names(retag: Any, engine: Engine) -> None:
    with engine.connect() as conn:
        (request,) = select_overdue(conn, Selection(), datetime.now(UTC), 0, 1)
    assert isinstance(request, TagRequest)
    assert request.title and request.input_hash


def test_a_second_retag_while_one_runs_exits_75(retag: Any, engine: Engine) -> None:
    """On SQLite only; on PostgreSQL retags share the work instead (test_retag_workers.py)."""
    with job_lock(engine, "retag", "catalog"):
        out = retag("--limit", "1", "--json")
    if engine.dialect.name == "sqlite":
        assert out.exit_code == 75 and "retag" in out.stderr
        assert runs_by_status(engine) == {}
    else:
        assert out.exit_code == 0 and out.json()["tagged"] == 1
        assert out.json()["worker"]


def test_metrics_file_carries_the_retag_counts_and_a_partial_run_is_still_a_success(
    retag: Any, engine: Engine, tagger: FakeTagger, tmp_path: Path
) -> None:
    metrics = tmp_path / "catalog.prom"
    bad = media_ids(engine)[:2]
    tagger.faults = TaggerFaults(malformed_ids=frozenset(str(i) for i in bad))
    out = retag("--quiet", "--metrics-file", str(metrics))
    assert out.exit_code == 3
    text = metrics.read_text()
    for kind, count in (("seen", ITEMS), ("written", ITEMS - 2), ("failed", 2)):
        assert f'catalog_job_items{{job="retag",server="",kind="{kind}"}} {count}' in text
    assert 'catalog_job_exit_code{job="retag",server=""} 3' in text
    assert 'catalog_job_last_success_timestamp_seconds{job="retag",server=""}' in text


def _batches_written(engine: Engine) -> list[int]:
    """Items per write-back transaction: each batch stamps its rows with one time."""
    query = (
        select(func.count())
        .select_from(PROCESS_RUN)
        .group_by(PROCESS_RUN.c.last_run_at)
        .order_by(func.min(PROCESS_RUN.c.media_id))
    )
    with engine.connect() as conn:
        return list(conn.execute(query).scalars())


@pytest.mark.parametrize(
    ("settings", "expect"),
    [("batch_size = 40\nflush_s = 60", "by size"), ("batch_size = 1000\nflush_s = 0.3", "by time")],
    ids=["by-size", "by-time"],
)
def test_answers_are_written_in_batches_by_size_or_by_time(
    retag: Any, engine: Engine, tagger: FakeTagger, tmp_path: Path, settings: str, expect: str
) -> None:
    config = tmp_path / "batches.toml"
    config.write_text(FAST.replace("flush_s = 0.2", settings))
    if expect == "by time":
        tagger.latency_s = 0.05  # one worker: about 20 answers a second, 6 per 0.3 s
    workers = "1" if expect == "by time" else "8"
    out = retag("--config", str(config), "--concurrency", workers, "--json")
    assert out.exit_code == 0 and out.json()["tagged"] == ITEMS
    sizes = _batches_written(engine)
    assert sum(sizes) == ITEMS
    if expect == "by size":
        assert sorted(sizes) == [24, 40, 40]
    else:
        assert len(sizes) >= 10 and max(sizes) <= 12
