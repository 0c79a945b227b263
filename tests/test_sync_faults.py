"""Faults and bad input during a sync: each ends with a clear line, the right exit code, and
nothing already written lost."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import TOKEN, hold_lock
from sqlalchemy import func, select

from catalog.db.models import MEDIA, RUN
from catalog.fakes.media_server import Faults


@pytest.fixture
def fast_retries(tmp_path):
    """A config whose retries wait milliseconds, not seconds."""
    path = tmp_path / "fast.toml"
    path.write_text("[sync]\nbackoff_s = 0.01\nbackoff_max_s = 0.05\nretries = 4\ntimeout_s = 2\n")
    return str(path)


def count_media(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(MEDIA)).scalar_one()


def runs(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(select(RUN).order_by(RUN.c.id)).all()


def test_server_errors_are_retried_until_the_sync_completes(cli, fake, engine, fast_retries):
    fake.faults = Faults(error_rate=0.3)
    out = cli("sync", "--config", fast_retries, "--json", "--page-size", "5")
    assert out.exit_code == 0, out.stderr
    assert out.json()["http"]["retries"] > 0
    assert count_media(engine) == 104


def test_retry_after_is_honoured_on_429_and_503(cli, fake, engine, fast_retries):
    fake.faults = Faults(rate_limit_every=2, unavailable_every=3, retry_after_s=0.3)
    started = time.monotonic()
    out = cli("sync", "--config", fast_retries, "--json")
    elapsed = time.monotonic() - started
    assert out.exit_code == 0, out.stderr
    waits = out.json()["http"]["rate_limited"]
    assert waits >= 2
    assert elapsed >= waits * 0.3 * 0.9, "each 429/503 waited for its Retry-After"
    assert count_media(engine) == 104


def test_dropped_connection_mid_page_is_retried(cli, fake, engine, fast_retries):
    fake.faults = Faults(drop_every=3)
    out = cli("sync", "--config", fast_retries, "--json")
    assert out.exit_code == 0, out.stderr
    assert count_media(engine) == 104


def test_page_that_keeps_failing_fails_the_run_and_keeps_committed_chunks(
    cli, fake, engine, fast_retries
):
    fake.faults = Faults(fail_start_indexes=frozenset({50}))
    env = {"CATALOG_PAGE_SIZE": "10", "CATALOG_CHUNK_SIZE": "10"}
    out = cli("sync", "--library", "Movies", "--config", fast_retries, "--json", env=env)
    assert out.exit_code == 1
    assert "answered HTTP 500 to GET /Items" in out.stderr
    assert out.json()["status"] == "failed"
    assert count_media(engine) == 50, "the five chunks before the failing page stay"
    assert runs(engine)[-1].status == "failed"
    fake.faults = Faults()
    out = cli("sync", "--library", "Movies", "--json", env=env)
    assert out.exit_code == 0
    assert out.json()["libraries"][0]["inserted"] == 10
    assert count_media(engine) == 60


def test_refused_token_is_one_line_without_the_token(cli, engine):
    out = cli("sync", env={"CATALOG_SERVER_TOKEN": "wrong-and-secret"})
    assert out.exit_code == 1
    assert "refused the token (HTTP 401)" in out.stderr
    assert "wrong-and-secret" not in out.stderr + out.stdout
    assert "Traceback" not in out.stderr
    assert count_media(engine) == 0


def test_token_travels_in_the_header_never_the_url(cli, fake):
    cli("sync")
    assert fake.requests
    for request in fake.requests:
        assert TOKEN not in request.path and TOKEN not in json.dumps(request.query)
        assert f'Token="{TOKEN}"' in request.headers["authorization"]


def test_emby_server_gets_its_own_header(cli, fake, engine):
    fake.kind = "emby"
    out = cli("sync", env={"CATALOG_SERVER_KIND": "emby"})
    assert out.exit_code == 0, out.stderr
    assert all(r.headers.get("x-emby-token") == TOKEN for r in fake.requests)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_server_names_the_url(cli, fast_retries):
    url = f"http://127.0.0.1:{free_port()}"
    out = cli("sync", "--config", fast_retries, url=url)
    assert out.exit_code == 1
    assert f"jellyfin server at {url} did not answer" in out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and url in errors[0]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_unreachable_database_names_the_url_with_password_masked(cli):
    url = f"postgresql+psycopg://catalog:hunter2@127.0.0.1:{free_port()}/catalog"
    out = cli("sync", env={"CATALOG_DATABASE_URL": url})
    assert out.exit_code == 1
    assert "cannot open the catalog database postgresql+psycopg://catalog:***@127.0.0.1" in (
        out.stderr
    )
    assert "hunter2" not in out.stderr


def test_oversized_page_is_refused(cli, fake, engine, tmp_path):
    config = tmp_path / "small.toml"
    config.write_text("[sync]\nmax_page_bytes = 200000\n")
    fake.faults = Faults(oversize_bytes=300_000)
    out = cli("sync", "--config", str(config))
    assert out.exit_code == 1
    assert "sent more than 0 MiB" in out.stderr or "refused" in out.stderr
    assert count_media(engine) == 0


def cli_process(database_url: str, fake_url: str, *args: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "CATALOG_DATABASE_URL": database_url,
        "CATALOG_SERVER_URL": fake_url,
        "CATALOG_SERVER_TOKEN": TOKEN,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "catalog", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_for_rows(engine, at_least: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while count_media(engine) < at_least:
        assert time.monotonic() < deadline, "the sync never committed a chunk"
        time.sleep(0.05)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_commits_or_rolls_back_the_chunk_and_records_the_run(
    database_url, fake, engine, signum
):
    fake.faults = Faults(latency_s=0.15)
    proc = cli_process(
        database_url, fake.url, "sync", "--json", "--page-size", "10", "--chunk-size", "10"
    )
    wait_for_rows(engine, 20)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signum, stderr
    assert json.loads(stdout)["status"] == "interrupted"
    committed = count_media(engine)
    assert committed % 10 == 0 and 20 <= committed < 104, "whole chunks only"
    assert runs(engine)[-1].status == "interrupted"
    fake.faults = Faults()
    proc = cli_process(database_url, fake.url, "sync", "--json")
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    summary = json.loads(stdout)
    assert sum(lib["inserted"] for lib in summary["libraries"]) == 104 - committed
    assert count_media(engine) == 104


def test_second_sync_of_the_same_server_exits_75_at_once(cli, database_url, engine):
    holder = hold_lock(database_url, "sync", "default")
    try:
        started = time.monotonic()
        out = cli("sync")
        assert out.exit_code == 75
        assert "another `catalog sync` of server 'default' is running" in out.stderr
        assert time.monotonic() - started < 5
        assert count_media(engine) == 0
    finally:
        holder.communicate("")
    assert cli("sync").exit_code == 0


def test_lock_of_a_killed_run_does_not_block_the_next(database_url, fake, engine, cli):
    fake.faults = Faults(latency_s=0.2)
    proc = cli_process(database_url, fake.url, "sync", "--page-size", "10", "--chunk-size", "10")
    wait_for_rows(engine, 10)
    proc.kill()
    proc.wait()
    fake.faults = Faults()
    out = cli("sync", "--json")
    assert out.exit_code == 0, out.stderr
    assert count_media(engine) == 104
    statuses = [r.status for r in runs(engine)]
    assert statuses == ["abandoned", "ok"], "the killed run is marked, not left running"


def test_slow_server_times_out_and_is_retried_then_named(cli, fake, engine, tmp_path):
    config = tmp_path / "impatient.toml"
    config.write_text("[sync]\ntimeout_s = 0.2\nretries = 1\nbackoff_s = 0.01\n")
    fake.faults = Faults(latency_s=0.5)
    out = cli("sync", "--config", str(config))
    assert out.exit_code == 1
    assert "did not answer GET /Items after 2 attempts: ReadTimeout" in out.stderr
    assert count_media(engine) == 0
    fake.faults = Faults(latency_s=0.05)  # slow, but inside the timeout: completes
    assert cli("sync", "--config", str(config)).exit_code == 0
    assert count_media(engine) == 104
