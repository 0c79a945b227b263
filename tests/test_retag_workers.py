"""Several `catalog retag` workers on one PostgreSQL catalog: they share the overdue items
(claims with a lease) and the tagging service's limits (shares re-divided at each heartbeat);
on SQLite a second retag still exits 75 (tests/test_retag.py)."""

from __future__ import annotations

import json
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
from conftest import TOKEN
from sqlalchemy import Engine, func, select, text, update
from test_retag import FAST, TAGGER_TOKEN, media_ids, runs_by_status, tagger_tags

from catalog.config import load_settings
from catalog.db.engine import in_transaction, recorded_statements
from catalog.db.locks import lock_key
from catalog.db.models import RETAG_CLAIM as CLAIM
from catalog.db.models import RETAG_WORKER as WORKER
from catalog.db.models import RUN
from catalog.errors import ConfigError
from catalog.fakes.media_server import FakeLibrary, FakeMediaServer
from catalog.fakes.tagger import FakeTagger
from catalog.jobs import PARTIAL_EXIT
from catalog.retag import Selection, claim_overdue, iter_claimed, select_overdue
from catalog.runs import utcnow
from catalog.tags.guard import NORMALIZE_SCOPE
from catalog.workers import (
    STANDBY,
    Limits,
    Share,
    Worker,
    beat,
    granted,
    held,
    leave,
    register,
    target_share,
)

ITEMS = 48
ON_POSTGRES = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
# Beats every second and leases of three: a dead worker's claims are free three seconds on.
# A burst of 2 splits evenly between two workers, each keeping one (a bucket needs one).
WORKERS = FAST + "heartbeat_s = 1\nlease_s = 3\nbatch_size = 10\nburst = 2\n"


@pytest.fixture
def fake() -> Iterator[FakeMediaServer]:
    with FakeMediaServer([FakeLibrary("Movies", "movies", ITEMS)], token=TOKEN) as server:
        yield server


@pytest.fixture
def tagger() -> Iterator[FakeTagger]:
    with FakeTagger(token=TAGGER_TOKEN) as fake:
        yield fake


@pytest.fixture
def synced(cli: Any) -> None:
    assert cli("sync", "--quiet").exit_code == 0


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "workers.toml"
    path.write_text(WORKERS)
    return path


def start_worker(
    database_url: str, tagger: FakeTagger, config: Path, *args: str
) -> subprocess.Popen[str]:
    """A real `catalog retag --json` in a process of its own."""
    env = {
        **os.environ, "CATALOG_DATABASE_URL": database_url, "CATALOG_TAGGER_URL": tagger.url,
        "CATALOG_TAGGER_TOKEN": TAGGER_TOKEN,
    }  # fmt: skip
    cmd = [sys.executable, "-m", "catalog", "retag", "--config", str(config), "--json", *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def summaries(workers: list[subprocess.Popen[str]]) -> list[dict[str, Any]]:
    """Each worker's `--json` summary, once it has ended (successfully)."""
    found = []
    for proc in workers:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        found.append(json.loads(out))
    return found


def wait_for(condition: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def retag_runs(engine: Engine) -> list[Any]:
    query = select(RUN).where(RUN.c.command == "retag").order_by(RUN.c.id)
    with engine.connect() as conn:
        return conn.execute(query).all()


# -- shares -------------------------------------------------------------------------------------


@pytest.mark.parametrize("live", [1, 2, 3, 4, 7])
def test_shares_add_up_to_the_limits_whatever_the_number_of_workers(live: int) -> None:
    limits = Limits(rate=10, burst=1, concurrency=4)
    shares = [target_share(limits, rank, live) for rank in range(live)]
    assert sum(s.slots for s in shares) == limits.concurrency
    assert sum(s.starts for s in shares) == limits.window == 11
    active = [s for s in shares if s.active]
    assert len(active) == min(live, 4)  # past the calls in flight allowed, the youngest wait
    assert sum(s.rate for s in active) == pytest.approx(10)
    assert all(s == STANDBY for s in shares[len(active) :])


def test_a_share_is_cut_to_what_the_others_leave_and_a_lowered_one_is_held_a_beat() -> None:
    limits = Limits(rate=10, burst=1, concurrency=4)
    alone = target_share(limits, 0, 1)
    half = target_share(limits, 1, 2)
    # The newcomer finds the first worker holding everything: it stands by.
    assert granted(half, limits, others_slots=4, others_starts=11) == STANDBY
    # The first worker lowers its share, but still holds the old one until its next beat...
    first = granted(target_share(limits, 0, 2), limits, 0, 0)
    assert held(first, alone, in_flight=4) == (4, 11)
    # ... and then only the new one, or its calls in flight if more.
    assert held(first, first, in_flight=0) == (2, 6)
    assert held(first, first, in_flight=3) == (3, 6)
    # Then the newcomer's share fits.
    assert granted(half, limits, others_slots=2, others_starts=6) == half
    assert granted(half, limits, 3, 6) == Share(half.rate, half.burst, half.starts, 1)


@ON_POSTGRES
def test_beats_divide_the_limits_without_ever_exceeding_them(engine: Engine) -> None:
    limits = Limits(rate=10, burst=1, concurrency=4)
    a, b = (Worker(name, utcnow(), 30, 1) for name in ("a", "b"))
    shares = {"a": STANDBY, "b": STANDBY}

    def step(worker: Worker, in_flight: int = 0) -> None:
        found = in_transaction(engine, beat, worker, limits, shares[worker.id], in_flight)
        shares[worker.id] = found.share
        with engine.connect() as conn:
            rows = conn.execute(select(WORKER.c.slots, WORKER.c.starts)).all()
        assert sum(r.slots for r in rows) <= 4 and sum(r.starts for r in rows) <= 11

    in_transaction(engine, register, a, None)
    step(a)
    assert shares["a"] == target_share(limits, 0, 1)
    in_transaction(engine, register, b, None)
    step(b)
    assert shares["b"] == STANDBY  # a still holds it all
    step(a, in_flight=4)  # a lowers, holding the old share for one more beat
    step(b)
    assert shares["b"] == STANDBY
    step(a, in_flight=1)
    step(b)
    assert shares["a"].slots + shares["b"].slots == 4 and shares["b"].active
    in_transaction(engine, leave, b)
    step(a)
    assert shares["a"] == target_share(limits, 0, 1)  # b's share is given back at once


# -- claims -------------------------------------------------------------------------------------


@ON_POSTGRES
def test_claims_are_exclusive_one_statement_each_and_taken_over_once_expired(
    synced: None, engine: Engine
) -> None:
    now = datetime.now(UTC)
    first, second = (Worker(name, utcnow(), 30, 1) for name in ("first", "second"))
    with engine.connect() as conn:
        unclaimed = select_overdue(conn, Selection(), now, 0, 10)
    with recorded_statements(engine) as seen:
        mine = in_transaction(engine, claim_overdue, Selection(), now, first, 0, 10)
    assert len(seen) == 1 and mine == unclaimed  # the full requests, in that one statement
    theirs = in_transaction(engine, claim_overdue, Selection(), now, second, 0, 10)
    assert {r.media_id for r in mine}.isdisjoint(r.media_id for r in theirs)
    with engine.begin() as conn:  # the first worker died: its lease runs out
        past = datetime.now(UTC) - timedelta(seconds=1)
        conn.execute(update(CLAIM).where(CLAIM.c.worker_id == "first").values(lease_until=past))
    with recorded_statements(engine) as seen:
        rest = [r.media_id for b in iter_claimed(engine, Selection(), now, second, lambda: 7)
                for r in b]  # fmt: skip
    assert sorted(rest) == sorted(set(media_ids(engine)) - {r.media_id for r in theirs})
    # 38 items in batches of 7: 6 batches, the empty claim past the end, the pass from the start
    assert len(seen) == 6 + 2
    with engine.connect() as conn:
        owners = set(conn.execute(select(CLAIM.c.worker_id)).scalars())
    assert owners == {"second"}


# -- workers as processes ---------------------------------------------------------------------


@pytest.mark.slow
@ON_POSTGRES
def test_workers_share_the_overdue_items_and_the_rate_holds_for_them_together(
    synced: None, database_url: str, engine: Engine, tagger: FakeTagger, config: Path
) -> None:
    tagger.latency_s = 0.05  # the callers could send 8 / 0.05 = 160 a second: the rate binds
    workers = [start_worker(database_url, tagger, config, "--rate", "8", "--concurrency", "8")
               for _ in range(3)]  # fmt: skip
    done = summaries(workers)
    # Every overdue item answered exactly once, and tagged in the catalog.
    assert len(tagger.log.answered) == ITEMS and set(tagger.log.answered.values()) == {1}
    assert len(tagger_tags(engine)) == ITEMS and runs_by_status(engine) == {"ok": ITEMS}
    # They shared it (a newcomer waits a beat or two for its share, so the last may find little
    # left), each under its own run record and summary.
    assert all(d["status"] == "ok" for d in done) and sum(d["tagged"] > 0 for d in done) >= 2, done
    assert sum(d["tagged"] for d in done) == ITEMS
    assert all(d["selected"] == d["tagged"] for d in done)
    assert len({d["worker"] for d in done}) == 3
    runs = retag_runs(engine)
    assert sorted(r.id for r in runs) == sorted(d["run_id"] for d in done)
    assert sorted(r.counts["tagged"] for r in runs) == sorted(d["tagged"] for d in done)
    assert {r.status for r in runs} == {"ok"}
    # The rate held at the service for the three together: 8 a second, and the burst.
    assert tagger.log.max_in_window(1.0) <= 8 + 2
    with engine.connect() as conn:  # each left: no claim and no registration remains
        assert conn.execute(select(CLAIM)).all() == [] == conn.execute(select(WORKER)).all()


@pytest.mark.slow
@ON_POSTGRES
def test_concurrency_holds_for_three_workers_together(
    synced: None, database_url: str, engine: Engine, tagger: FakeTagger, config: Path
) -> None:
    tagger.latency_s = 0.25  # now the calls in flight are what binds
    args = ("--rate", "100", "--concurrency", "3")
    done = summaries([start_worker(database_url, tagger, config, *args) for _ in range(3)])
    assert tagger.log.max_in_flight <= 3
    assert set(tagger.log.answered.values()) == {1} and len(tagger.log.answered) == ITEMS
    assert sum(d["tagged"] for d in done) == ITEMS
    assert sum(1 for d in done if d["tagged"]) >= 2


@pytest.mark.slow
@ON_POSTGRES
def test_a_worker_killed_with_sigkill_loses_nothing_once_its_lease_expires(
    synced: None, database_url: str, engine: Engine, tagger: FakeTagger, config: Path, cli: Any
) -> None:
    """The rule: an item the killed worker had claimed but whose answer it had not committed
    (its call in flight, or answered and waiting for the write) may be called once more; no
    other item is called twice, and every item ends up tagged."""
    tagger.latency_s = 0.2
    args = ("--rate", "10", "--concurrency", "4")
    doomed = start_worker(database_url, tagger, config, *args)
    wait_for(lambda: sum(tagger.log.answered.values()) >= 6)
    survivor = start_worker(database_url, tagger, config, *args)
    wait_for(lambda: sum(tagger.log.answered.values()) >= 16)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=10)
    time.sleep(0.5)  # the server has rolled back what the killed worker had not committed
    dead_id = _worker_id(engine, doomed.pid)
    with engine.connect() as conn:
        left_claimed = set(
            conn.execute(select(CLAIM.c.media_id).where(CLAIM.c.worker_id == dead_id)).scalars()
        )
    assert left_claimed  # it died holding claims
    (survived,) = summaries([survivor])
    assert survived["status"] == "ok" and survived["tagged"] > 0
    time.sleep(3.2)  # the dead worker's lease runs out (if it had not during the survivor's run)
    tagger_env = {"CATALOG_TAGGER_URL": tagger.url, "CATALOG_TAGGER_TOKEN": TAGGER_TOKEN}
    after = cli("retag", "--config", str(config), "--json", env=tagger_env)
    assert after.exit_code == 0, after.stderr
    assert runs_by_status(engine) == {"ok": ITEMS} and len(tagger_tags(engine)) == ITEMS
    answered = tagger.log.answered
    assert len(answered) == ITEMS
    twice = {int(m) for m, n in answered.items() if n > 1}
    assert twice <= left_claimed and max(answered.values()) <= 2
    statuses = {r.id: r.status for r in retag_runs(engine)}
    assert statuses[survived["run_id"]] == statuses[after.json()["run_id"]] == "ok"
    assert sorted(statuses.values()) == ["abandoned", "ok", "ok"]  # the killed one's record


@pytest.mark.slow
@ON_POSTGRES
def test_a_worker_whose_writes_wait_keeps_its_claims_and_none_is_called_twice(
    synced: None, database_url: str, engine: Engine, tagger: FakeTagger, config: Path
) -> None:
    """A `tags normalize` holds the vocabulary for longer than a lease: every answer's write
    waits for it, and with it the worker's database thread. Its beats must go on regardless,
    or its claims lapse and a second worker calls the same items again."""
    tagger.latency_s = 0.05
    args = ("--rate", "100", "--concurrency", "4")
    vocabulary = lock_key("normalize", NORMALIZE_SCOPE)
    with engine.connect() as holder:
        holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": vocabulary})
        holder.commit()
        first = start_worker(database_url, tagger, config, *args)
        wait_for(lambda: sum(tagger.log.answered.values()) >= 4)
        first_id = _worker_id(engine, first.pid)
        for _ in range(10):  # 5 s: well past the 3 s lease, with beats due every second
            time.sleep(0.5)
            assert _claims_live(engine, first_id), "a waiting worker's claims lapsed"
        second = start_worker(database_url, tagger, config, *args)
        wait_for(lambda: _worker_id(engine, second.pid) is not None)
        time.sleep(3)  # the second worker takes its share and claims what is free
        holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": vocabulary})
        holder.commit()
    done = summaries([first, second])
    assert len(tagger.log.answered) == ITEMS and set(tagger.log.answered.values()) == {1}
    assert sum(d["tagged"] for d in done) == ITEMS and runs_by_status(engine) == {"ok": ITEMS}


@pytest.mark.slow
@ON_POSTGRES
def test_a_worker_calls_no_item_whose_claim_another_worker_took_over(
    synced: None, database_url: str, engine: Engine, tagger: FakeTagger, config: Path
) -> None:
    """Its claims taken over (as another worker would once they had lapsed), a worker learns
    so at its next beat and leaves those items alone: they are not called a second time."""
    tagger.latency_s = 2.5  # one call at a time: the claimed items wait their turn
    args = ("--rate", "100", "--concurrency", "1", "--limit", "6")
    worker = start_worker(database_url, tagger, config, *args)
    wait_for(lambda: len(tagger.log.arrivals) >= 1)
    worker_id = _worker_id(engine, worker.pid)
    with engine.begin() as conn:
        taken = set(
            conn.execute(
                update(CLAIM)
                .where(CLAIM.c.worker_id == worker_id)
                .values(worker_id="another", lease_until=datetime.now(UTC) + timedelta(hours=1))
                .returning(CLAIM.c.media_id)
            ).scalars()
        )
    out, err = worker.communicate(timeout=60)
    assert worker.returncode == PARTIAL_EXIT, err
    summary = json.loads(out)
    called = {int(m) for m in tagger.log.answered}
    in_flight = len(tagger.log.arrivals) and min(called)  # the first call was already out
    assert len(taken) == 4 and in_flight in taken  # claims of four: the one called, three waiting
    assert called.isdisjoint(taken - {in_flight})
    assert set(tagger.log.answered.values()) == {1} and len(called) == 3
    assert (summary["selected"], summary["tagged"], summary["skipped"]) == (6, 3, 3)


def _worker_id(engine: Engine, pid: int) -> str | None:
    query = select(WORKER.c.id).where(WORKER.c.id.like(f"%:{pid}:%"))
    with engine.connect() as conn:
        return conn.execute(query).scalar_one_or_none()


def _claims_live(engine: Engine, worker_id: str | None) -> bool:
    """Whether `worker_id` holds claims and every one of them is still leased."""
    live = CLAIM.c.lease_until >= func.now()
    query = select(func.count(), func.count().filter(live)).where(CLAIM.c.worker_id == worker_id)
    with engine.connect() as conn:
        total, leased = conn.execute(query).one()
    return total > 0 and total == leased


@pytest.mark.slow
@ON_POSTGRES
def test_a_worker_past_the_concurrency_stands_by_and_ends_when_nothing_is_left(
    synced: None, database_url: str, engine: Engine, tagger: FakeTagger, config: Path
) -> None:
    tagger.latency_s = 0.02
    args = ("--rate", "100", "--concurrency", "1")
    done = summaries([start_worker(database_url, tagger, config, *args) for _ in range(2)])
    assert tagger.log.max_in_flight == 1  # one call at a time, for both together
    assert set(tagger.log.answered.values()) == {1} and len(tagger.log.answered) == ITEMS
    assert sorted(d["tagged"] for d in done)[0] < ITEMS / 2  # the younger mostly waited
    assert sum(d["tagged"] for d in done) == ITEMS and {d["status"] for d in done} == {"ok"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CATALOG_RETAG_LEASE_S": "9"}, "tagger.lease_s: must be at least twice"),
        ({"CATALOG_RETAG_HEARTBEAT_S": "0.5"}, "CATALOG_RETAG_HEARTBEAT_S: must be at least 1"),
    ],
    ids=["lease-too-short", "heartbeat-too-fast"],
)
def test_worker_timing_settings_are_checked(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env=env)
