"""What every job shares: a held lock reported as locked, signals at any moment leaving the run
interrupted, a tagger that answered nothing failing the run, the final error as a JSON line,
and the README's tables kept to the one exit-code table and the reports' keys."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import TOKEN, hold_lock
from sqlalchemy import Engine, select, text
from sqlalchemy.engine import make_url
from test_ops import PingServer, free_port, samples

from catalog.db.models import RUN
from catalog.fakes.media_server import Faults
from catalog.fakes.tagger import FakeTagger, TaggerFaults
from catalog.jobs import (
    EXIT_CODES,
    ServerRuns,
    exit_code_table,
    json_keys_table,
    status_rules_table,
)
from catalog.push import PushReport
from catalog.retag import RetagReport
from catalog.sync import SyncReport
from catalog.tags import ChangeReport

README = Path(__file__).resolve().parent.parent / "README.md"
JOBS = {"sync": SyncReport, "retag": RetagReport, "tags normalize / rename / merge / drop": (
    ChangeReport
), "push": PushReport}  # fmt: skip
# Their --json keys; a sync of several servers wraps the summaries of single syncs.
JSON_JOBS = {"sync": SyncReport, "sync of several servers (no `--server`)": ServerRuns, **{
    job: report for job, report in JOBS.items() if job != "sync"
}}  # fmt: skip
FAST_TAGGER = """
[tagger]
rate = 500.0
concurrency = 4
retries = 1
backoff_s = 0.01
backoff_max_s = 0.02
breaker_failures = 3
breaker_cooldown_s = 0.05
breaker_max_opens = 1
flush_s = 0.1
"""


@pytest.fixture
def tagger() -> Iterator[FakeTagger]:
    with FakeTagger(token="tagger-token") as fake:
        yield fake


@pytest.fixture
def tagger_config(tmp_path: Path, tagger: FakeTagger) -> dict[str, str]:
    path = tmp_path / "tagger.toml"
    path.write_text(FAST_TAGGER)
    return {
        "CATALOG_CONFIG": str(path), "CATALOG_TAGGER_URL": tagger.url,
        "CATALOG_TAGGER_TOKEN": "tagger-token",
    }  # fmt: skip


def runs(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(select(RUN).order_by(RUN.c.id)).all()


# -- a held lock --------------------------------------------------------------------------------

LOCKED_JOBS = {
    "sync": (("sync",), "sync", "default", "another `catalog sync` of server 'default'"),
    "retag": (("retag",), "retag", "catalog", "another `catalog retag` is running on this catalog"),
    "normalize": (("tags", "normalize"), "normalize", "catalog", "another `catalog normalize`"),
    "rename": (("tags", "rename", "a", "b"), "normalize", "catalog", "another `catalog normalize`"),
}


@pytest.mark.parametrize("job", list(LOCKED_JOBS))
def test_a_run_that_finds_its_lock_held_says_locked_and_exits_75(
    cli, database_url, engine, tagger_config, job
):
    command, lock_job, scope, message = LOCKED_JOBS[job]
    holder = hold_lock(database_url, lock_job, scope)
    try:
        out = cli(*command, "--json", env=tagger_config)
    finally:
        holder.communicate("")
    if job == "retag" and database_url.startswith("postgresql"):
        # On PostgreSQL a retag takes no lock: it joins the other workers (test_retag_workers).
        assert out.exit_code == 0, out.stderr
        assert out.json()["status"] == "ok" and [r.status for r in runs(engine)] == ["ok"]
        return
    assert out.exit_code == 75, out.stderr
    summary = out.json()
    assert summary["status"] == "locked" and summary["run_id"] is None
    assert message in summary["error"] and message in out.stderr
    assert "'catalog'" not in out.stderr  # a catalog-wide job names no server
    assert runs(engine) == []  # a locked run records nothing


# -- signals ------------------------------------------------------------------------------------


@contextmanager
def run_table_blocked(database_url: str) -> Iterator[Callable[[], None]]:
    """Writes to the `run` table wait until the returned release() (or the block's end)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        conn = sqlite3.connect(url.database, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        release = conn.rollback
    else:
        from catalog.db.engine import create_catalog_engine

        engine = create_catalog_engine(database_url)
        holder = engine.connect()
        holder.execute(text("LOCK TABLE run IN EXCLUSIVE MODE"))
        release = holder.rollback
    try:
        yield release
    finally:
        release()
        if url.get_backend_name() == "sqlite":
            conn.close()
        else:
            holder.close()
            engine.dispose()


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


def waiting_on_the_run_table(
    engine: Engine, database_url: str, proc: subprocess.Popen, job: str, scope: str
) -> bool:
    """Whether the job took its lock and now waits to write its run record."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        lock = Path(url.database).with_name(f"{Path(url.database).name}.{job}-{scope}.lock")
        return lock.exists() and idle(proc)  # SQLite's busy handler sleeps
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND query ILIKE '%run%'"
    )
    with engine.connect() as conn:
        return conn.execute(query).scalar() > 0


def idle(proc: subprocess.Popen, for_s: float = 0.3) -> bool:
    """Whether the process used no CPU for a while (Linux: utime + stime in /proc)."""

    def cpu() -> int:
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    before = cpu()
    time.sleep(for_s)
    return cpu() == before


def started_process(database_url: str, env: dict[str, str], *args: str) -> subprocess.Popen:
    full_env = {**os.environ, "CATALOG_DATABASE_URL": database_url, **env}
    return subprocess.Popen(
        [sys.executable, "-m", "catalog", *args, "--json"],
        env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


SIGNAL_JOBS = {
    "sync": (("sync",), "sync", "default"),
    "retag": (("retag",), "retag", "catalog"),
    "normalize": (("tags", "normalize"), "normalize", "catalog"),
}
MOMENTS = [
    ("sync", "while the record is written", signal.SIGTERM),
    ("sync", "while the record is written", signal.SIGINT),
    ("sync", "just after the record exists", signal.SIGTERM),
    ("sync", "mid-run", signal.SIGTERM),
    ("retag", "while the record is written", signal.SIGTERM),
    ("retag", "just after the record exists", signal.SIGINT),
    ("normalize", "while the record is written", signal.SIGTERM),
]


@pytest.mark.parametrize(
    ("job", "moment", "signum"), MOMENTS, ids=[f"{j}-{m}-{s.name}" for j, m, s in MOMENTS]
)
def test_a_signal_at_any_moment_after_the_run_record_exists_leaves_it_interrupted(
    cli, fake, database_url, engine, tagger, tagger_config, job, moment, signum
):
    if job == "retag":
        assert cli("sync", "--quiet").exit_code == 0
        tagger.latency_s = 0.3
    env = {"CATALOG_SERVER_URL": fake.url, "CATALOG_SERVER_TOKEN": TOKEN, **tagger_config}
    command, lock_job, scope = SIGNAL_JOBS[job]
    before = len(runs(engine))
    fake.faults = Faults(latency_s=0.1)
    with run_table_blocked(database_url) as release:
        if moment != "while the record is written":
            release()
        paging = ("--page-size", "10", "--chunk-size", "10") if job == "sync" else ()
        proc = started_process(database_url, env, *command, *paging)
        if moment == "while the record is written":
            wait_until(
                lambda: waiting_on_the_run_table(engine, database_url, proc, lock_job, scope),
                "the job waiting to record its run",
            )
        elif moment == "just after the record exists":
            wait_until(lambda: len(runs(engine)) > before, "a run record")
        else:
            wait_until(lambda: _media_count(engine) >= 10, "a committed chunk")
        proc.send_signal(signum)
        time.sleep(0.2)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, stderr
    summary = json.loads(stdout)
    recorded = runs(engine)[-1]
    assert summary["status"] == "interrupted" and summary["run_id"] == recorded.id, stderr
    assert recorded.status == "interrupted" and recorded.finished_at is not None


def _media_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM media")).scalar()


def test_under_json_logs_the_final_error_is_a_json_line(cli):
    out = cli("sync", "--log-format", "json", url=f"http://127.0.0.1:{free_port()}",
              env={"CATALOG_CONFIG": ""})  # fmt: skip
    assert out.exit_code == 1
    entries = [json.loads(line) for line in out.stderr.splitlines() if line.strip()]
    assert entries[-1]["level"] in ("error", "ERROR") and "127.0.0.1" in entries[-1]["message"]


# -- a tagger that answered nothing ---------------------------------------------------------------


@pytest.mark.parametrize(
    "faults", [TaggerFaults(down=True), TaggerFaults(malformed=1.0)], ids=["down", "all-malformed"]
)
def test_a_tagger_that_answered_nothing_fails_the_run(
    cli, engine, tagger, tagger_config, tmp_path, faults
):
    assert cli("sync", "--quiet").exit_code == 0
    path = tmp_path / "catalog.prom"
    with PingServer() as pings:
        args = ("retag", "--json", "--metrics-file", str(path), "--healthcheck-url", pings.url)
        assert cli(*args, "--limit", "5", env=tagger_config).exit_code == 0
        success = samples(path, "retag", "")["catalog_job_last_success_timestamp_seconds"]
        tagger.faults = faults
        out = cli(*args, env=tagger_config)
    assert out.exit_code == 1, out.stderr
    summary = out.json()
    assert summary["status"] == "failed" and summary["tagged"] == 0 and summary["error"]
    assert pings.paths == ["/", "/fail"]  # no success ping for the failed run
    got = samples(path, "retag", "")
    assert got["catalog_job_exit_code"] == 1
    assert got["catalog_job_last_success_timestamp_seconds"] == success
    assert [r.status for r in runs(engine) if r.command == "retag"] == ["ok", "failed"]


def test_a_tagger_that_answered_some_makes_a_partial_run(cli, engine, tagger, tagger_config):
    assert cli("sync", "--quiet").exit_code == 0
    tagger.faults = TaggerFaults(down_after=10)
    out = cli("retag", "--json", "--concurrency", "1", env=tagger_config)
    assert out.exit_code == 3, out.stderr
    summary = out.json()
    assert summary["status"] == "partial" and summary["tagged"] >= 10


# -- the one table ------------------------------------------------------------------------------


def test_the_readme_shows_the_one_exit_code_table_and_the_status_rules():
    readme = README.read_text(encoding="utf-8")
    assert exit_code_table() in readme
    assert status_rules_table(JOBS) in readme
    assert json_keys_table(JSON_JOBS) in readme
    assert {e.code for e in EXIT_CODES} == {0, 1, 2, 3, 75, 130, 143}


def test_every_job_commands_json_keys_are_its_reports(cli, tagger_config, fake, tmp_path):
    two = tmp_path / "two.toml"
    two.write_text("".join(
        f'[servers.{name}]\nurl = "{fake.url}"\ntoken = "{TOKEN}"\n' for name in ("a", "b")
    ))  # fmt: skip
    two.chmod(0o600)
    several = {"CATALOG_CONFIG": str(two), "CATALOG_SERVER_URL": None, "CATALOG_SERVER_TOKEN": None}
    produced = [
        (SyncReport, cli("sync", "--json")),
        (ServerRuns, cli("sync", "--json", env=several)),
        (RetagReport, cli("retag", "--json", env=tagger_config)),
        (ChangeReport, cli("tags", "normalize", "--json")),
        (ChangeReport, cli("tags", "rename", "nosuch", "other", "--json")),  # a failed change
        (PushReport, cli("push", "--json")),
    ]
    for report, out in produced:
        assert list(out.json()) == report.json_keys(), (report.__name__, out.stderr)
    assert [list(each) for each in produced[1][1].json()["servers"]] == [
        SyncReport.json_keys(), SyncReport.json_keys(),
    ]  # fmt: skip


def test_job_commands_are_short_recipes_over_one_skeleton():
    import ast
    import inspect

    from catalog.cli import push, retag, sync, tags

    for command in (sync.sync, retag.retag, tags.normalize, push.push):
        (node,) = ast.parse(inspect.cleandoc("\n" + inspect.getsource(command))).body
        lines = node.body[-1].end_lineno - node.body[0].lineno + 1
        assert lines <= 15, f"{command.__name__}: {lines} lines"
        assert "run_job(" in inspect.getsource(command)


class RecordedProgress:
    """Every call a job made to its progress."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int | None]] = []

    def started(self, task: str, total: int | None) -> None:
        self.calls.append(("started", task, total))

    def advanced(self, task: str, count: int = 1) -> None:
        self.calls.append(("advanced", task, count))

    def item_skipped(self, task: str, item: str | None, reason: str) -> None:
        self.calls.append(("skipped", task, None))

    def finished(self, task: str, done: int, summary: str) -> None:
        self.calls.append(("finished", task, done))


def test_retag_progress_advances_per_answer_not_per_written_batch(cli, engine, tagger):
    import asyncio

    from catalog.config import TaggerConfig
    from catalog.retag import Selection, WriteBatching, run_retag
    from catalog.tagging.client import TaggerClient

    assert cli("sync", "--quiet").exit_code == 0
    config = TaggerConfig(url=tagger.url, token="tagger-token", rate=500.0, concurrency=4)
    progress = RecordedProgress()

    async def go() -> RetagReport:
        async with TaggerClient(config) as client:
            batching = WriteBatching(size=1000, every_s=60)  # one batch written, at the end
            selection = Selection(limit=30)
            return await run_retag(engine, client, selection, RetagReport(), progress, batching)

    report = asyncio.run(go())
    assert report.tagged == 30 and report.status == "ok"
    assert progress.calls == [("started", "tagging", 30)] + [("advanced", "tagging", 1)] * 30


def test_sync_progress_counts_every_item_of_each_library(cli, engine, fake):
    import asyncio

    from catalog.config import ServerConfig, SyncConfig
    from catalog.sources.connect import open_source
    from catalog.sync import SyncOptions, run_sync

    server = ServerConfig(name="default", url=fake.url, token=TOKEN)
    progress = RecordedProgress()

    async def go() -> SyncReport:
        async with open_source(server, SyncConfig(page_size=25)) as source:
            return await run_sync(engine, source, server, SyncOptions(), progress, SyncReport("x"))

    assert asyncio.run(go()).status == "ok"
    for library, items in (("Movies", 60), ("TV Shows", 44)):
        advanced = [n for kind, task, n in progress.calls if kind == "advanced" and task == library]
        assert sum(advanced) == items
        assert ("finished", library, items) in progress.calls
