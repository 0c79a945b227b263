"""Unattended operation: metrics textfile, healthcheck pings, JSON logs with secrets redacted,
`catalog status`, run retention, locks across processes, and the exit code of each outcome."""

from __future__ import annotations

import json
import logging
import socket
import stat
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import TOKEN, hold_lock
from sqlalchemy import insert, select

from catalog.db.models import RUN
from catalog.fakes.media_server import Faults
from catalog.logs import REDACTOR, JsonFormatter, RedactingFormatter, add_secrets
from catalog.ops import JobOutcome, ping_healthcheck, read_metrics
from catalog.runs import OK, utcnow


def runs(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(select(RUN).order_by(RUN.c.id)).all()


def samples(path: Path, job: str = "sync", server: str = "default") -> dict[str, float]:
    """This job's samples, keyed by metric name (plus :kind for items)."""
    out = {}
    for (name, labels), value in read_metrics(path).items():
        found = dict(labels)
        if found["job"] == job and found["server"] == server:
            out[name + (f":{found['kind']}" if "kind" in found else "")] = value
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def fast_retries(tmp_path) -> str:
    path = tmp_path / "fast.toml"
    path.write_text("[sync]\nbackoff_s = 0.01\nbackoff_max_s = 0.05\nretries = 1\ntimeout_s = 2\n")
    return str(path)


# -- metrics ------------------------------------------------------------------------------------


def test_metrics_file_holds_the_runs_duration_items_and_last_success(cli, tmp_path):
    path = tmp_path / "textfile" / "catalog.prom"
    before = time.time()
    out = cli("sync", "--metrics-file", str(path))
    assert out.exit_code == 0, out.stderr
    got = samples(path)
    assert got["catalog_job_items:seen"] == 104
    assert got["catalog_job_items:written"] == 104
    assert got["catalog_job_items:failed"] == 0
    assert got["catalog_job_exit_code"] == 0
    assert 0 < got["catalog_job_duration_seconds"] < 60
    assert before <= got["catalog_job_last_success_timestamp_seconds"] <= time.time()
    text = path.read_text()
    assert "# TYPE catalog_job_items gauge" in text
    assert 'catalog_job_items{job="sync",server="default",kind="seen"} 104' in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in path.parent.iterdir() if not p.name.endswith(".lock")) == [
        "catalog.prom"
    ], "no temporary file is left behind"


def test_last_success_survives_a_failing_run(cli, tmp_path, fast_retries):
    path = tmp_path / "catalog.prom"
    assert cli("sync", "--metrics-file", str(path)).exit_code == 0
    success = samples(path)["catalog_job_last_success_timestamp_seconds"]
    url = f"http://127.0.0.1:{free_port()}"
    out = cli("sync", "--metrics-file", str(path), "--config", fast_retries, url=url)
    assert out.exit_code == 1
    got = samples(path)
    assert got["catalog_job_exit_code"] == 1
    assert got["catalog_job_last_success_timestamp_seconds"] == success
    assert got["catalog_job_last_run_timestamp_seconds"] > success


def test_without_a_previous_file_last_success_comes_from_the_run_table(
    cli, engine, tmp_path, fast_retries
):
    assert cli("sync").exit_code == 0
    finished = runs(engine)[-1].finished_at
    path = tmp_path / "catalog.prom"
    url = f"http://127.0.0.1:{free_port()}"
    assert cli("sync", "--metrics-file", str(path), "--config", fast_retries, url=url).exit_code
    got = samples(path)
    assert got["catalog_job_last_success_timestamp_seconds"] == pytest.approx(
        finished.timestamp(), abs=0.001
    )


def test_each_job_keeps_its_samples_in_a_shared_file(cli, tmp_path):
    path = tmp_path / "catalog.prom"
    assert cli("sync", "--metrics-file", str(path)).exit_code == 0
    out = cli("tags", "normalize", "--metrics-file", str(path))
    assert out.exit_code == 0, out.stderr
    assert samples(path)["catalog_job_items:seen"] == 104
    normalize = samples(path, "normalize", "")
    assert normalize["catalog_job_exit_code"] == 0
    assert {"catalog_job_items:seen", "catalog_job_items:written"} <= normalize.keys()
    text = path.read_text()
    assert text.count("# TYPE catalog_job_exit_code gauge") == 1


def test_partial_sync_counts_failed_items_and_still_succeeds(cli, fake, tmp_path):
    fake.faults = Faults(malformed_every=10)
    path = tmp_path / "catalog.prom"
    out = cli("sync", "--metrics-file", str(path))
    assert out.exit_code == 3
    got = samples(path)
    assert got["catalog_job_exit_code"] == 3
    assert got["catalog_job_items:failed"] > 0
    assert got["catalog_job_items:seen"] == 104
    assert "catalog_job_last_success_timestamp_seconds" in got


def test_unwritable_metrics_file_never_fails_the_run(cli, tmp_path, engine):
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = cli("sync", "--metrics-file", str(blocker / "catalog.prom"))
    assert out.exit_code == 0
    assert "could not write the metrics file" in out.stderr
    assert [r.status for r in runs(engine)] == [OK]


# -- healthcheck --------------------------------------------------------------------------------


class PingServer:
    """A loopback HTTP server that records the paths it was asked for."""

    def __init__(self, delay_s: float = 0.0) -> None:
        paths = self.paths = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                paths.append(self.path)
                time.sleep(delay_s)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> PingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_healthcheck_pinged_on_success_and_fail_suffix_on_failure(cli, fast_retries):
    with PingServer() as pings:
        assert cli("sync", "--healthcheck-url", f"{pings.url}/ping/abc").exit_code == 0
        url = f"http://127.0.0.1:{free_port()}"
        out = cli("sync", "--healthcheck-url", f"{pings.url}/ping/abc/", "--config", fast_retries,
                  url=url)  # fmt: skip
        assert out.exit_code == 1
        # The URL from the environment, with the job name filled in.
        env = {"CATALOG_HEALTHCHECK_URL": f"{pings.url}/ping/key/catalog-{{job}}"}
        assert cli("tags", "normalize", env=env).exit_code == 0
    assert pings.paths == ["/ping/abc", "/ping/abc/fail", "/ping/key/catalog-normalize"]


def test_unreachable_healthcheck_never_fails_the_job(cli):
    out = cli("sync", "--healthcheck-url", f"http://127.0.0.1:{free_port()}/secret-uuid")
    assert out.exit_code == 0
    assert "healthcheck ping to 127.0.0.1" in out.stderr and "secret-uuid" not in out.stderr


def test_slow_healthcheck_is_cut_short_by_its_timeout(caplog):
    with PingServer(delay_s=2) as slow:
        started = time.monotonic()
        ping_healthcheck(slow.url, JobOutcome("sync"), timeout=0.2)
        assert time.monotonic() - started < 1.5
    assert "healthcheck ping to" in caplog.text


# -- logs ---------------------------------------------------------------------------------------


def test_json_logs_are_one_object_per_line_without_secrets(cli):
    out = cli("sync", "--log-format", "json", "--debug")
    assert out.exit_code == 0
    entries = [json.loads(line) for line in out.stderr.splitlines() if line.startswith("{")]
    assert entries, out.stderr
    assert all({"ts", "level", "logger", "message"} <= entry.keys() for entry in entries)
    assert any(entry["logger"].startswith("catalog") for entry in entries)
    assert TOKEN not in out.stderr


@pytest.mark.parametrize(
    ("message", "secret"),
    [
        ('Authorization: MediaBrowser Client="catalog", Token="abcdef123456"', "abcdef123456"),
        ("GET /Items?api_key=abcdef123456&Limit=5", "abcdef123456"),
        ("X-Emby-Token: abcdef123456", "abcdef123456"),
        ("postgresql+psycopg://catalog:hunter2hunter@db/catalog", "hunter2hunter"),
        ("the configured value registered-secret-42 leaked", "registered-secret-42"),
    ],
    ids=["mediabrowser header", "api_key", "emby header", "url password", "known value"],
)
def test_secrets_are_redacted_in_text_and_json_logs(message, secret):
    add_secrets("registered-secret-42")
    record = logging.makeLogRecord({"msg": "%s", "args": (message,), "levelname": "INFO",
                                    "name": "catalog.test", "url": message})  # fmt: skip
    text = RedactingFormatter("%(message)s").format(record)
    entry = json.loads(JsonFormatter().format(record))
    assert secret not in text and "***" in text
    assert secret not in entry["message"] and secret not in entry["url"]


def test_short_or_empty_secrets_do_not_blank_the_logs():
    add_secrets("", None, "ab")
    assert REDACTOR("a tab and a cab") == "a tab and a cab"


def test_settings_tokens_are_redacted_once_loaded(cli, caplog):
    from catalog.config import load_settings

    load_settings(env={"CATALOG_SERVER_URL": "http://x", "CATALOG_SERVER_TOKEN": "tok-9876543"})
    assert "tok-9876543" not in REDACTOR("sent tok-9876543 to the server")


# -- status -------------------------------------------------------------------------------------


def test_status_lists_the_last_runs_newest_first(cli, fast_retries):
    assert cli("sync").exit_code == 0
    assert cli("tags", "normalize").exit_code == 0
    url = f"http://127.0.0.1:{free_port()}"
    assert cli("sync", "--config", fast_retries, url=url).exit_code == 1
    data = cli("status", "--json").json()["runs"]
    assert [(r["command"], r["status"]) for r in data] == [
        ("sync", "failed"), ("normalize", "ok"), ("sync", "ok"),
    ]  # fmt: skip
    failed, _, ok = data
    assert ok["server"] == "default" and ok["duration_s"] > 0
    assert ok["items"] == {"seen": 104, "written": 104, "failed": 0}
    assert "did not answer" in failed["error"]
    only_sync = cli("status", "--json", "--job", "sync", "--limit", "1").json()["runs"]
    assert [r["status"] for r in only_sync] == ["failed"]
    table = cli("status", env={"COLUMNS": "200"}).stdout
    assert "normalize" in table and "failed" in table


# -- retention ----------------------------------------------------------------------------------


def add_old_runs(engine, days_ago: list[int]) -> None:
    rows = [
        {"command": "sync", "server": "default", "status": OK,
         "started_at": utcnow() - timedelta(days=d), "finished_at": utcnow() - timedelta(days=d)}
        for d in days_ago
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(RUN), rows)


def test_runs_older_than_keep_days_are_dropped(cli, engine, tmp_path):
    add_old_runs(engine, [400, 100, 40, 10])
    config = tmp_path / "catalog.toml"
    config.write_text("[runs]\nkeep = 100\nkeep_days = 30\n")
    assert cli("sync", "--config", str(config)).exit_code == 0
    ages = [(utcnow() - r.started_at).days for r in runs(engine)]
    assert ages == [10, 0], "older than 30 days: gone; newer: kept"


def test_keep_days_zero_keeps_runs_of_any_age_within_the_count(cli, engine, tmp_path):
    add_old_runs(engine, [400, 100])
    config = tmp_path / "catalog.toml"
    config.write_text("[runs]\nkeep = 2\nkeep_days = 0\n")
    assert cli("sync", "--config", str(config)).exit_code == 0
    assert [(utcnow() - r.started_at).days for r in runs(engine)] == [100, 0]


def test_default_retention_is_90_days(cli, engine):
    add_old_runs(engine, [91, 89])
    assert cli("tags", "normalize").exit_code == 0
    assert [(utcnow() - r.started_at).days for r in runs(engine)] == [89, 0]


# -- locks across processes ---------------------------------------------------------------------


def test_locked_job_exits_75_naming_it_and_a_killed_holder_never_blocks(
    cli, database_url, engine, tmp_path
):
    path = tmp_path / "catalog.prom"
    holder = hold_lock(database_url, "normalize", "catalog")
    with PingServer() as pings:
        out = cli("tags", "normalize", "--metrics-file", str(path),
                  "--healthcheck-url", pings.url)  # fmt: skip
        assert out.exit_code == 75
        assert "another `catalog normalize`" in out.stderr
        assert samples(path, "normalize", "")["catalog_job_exit_code"] == 75
        assert pings.paths == [], "the run holding the lock reports, not this one"
        holder.kill()  # SIGKILL: no chance to release anything
        holder.wait()
        assert cli("tags", "normalize", "--healthcheck-url", pings.url).exit_code == 0
    assert pings.paths == ["/"]
    assert [r.status for r in runs(engine)] == [OK]


# -- exit codes ---------------------------------------------------------------------------------


def test_exit_code_of_each_outcome(cli, fake, tmp_path, fast_retries):
    path = tmp_path / "catalog.prom"
    bad = tmp_path / "bad.toml"
    bad.write_text('[schedule]\nsync = "0 3 * *"\n')
    unreachable = f"http://127.0.0.1:{free_port()}"
    assert cli("sync", "--metrics-file", str(path)).exit_code == 0
    assert cli("sync", "--metrics-file", str(path), "--config", str(bad)).exit_code == 2
    assert cli("sync", "--chunk-size", "0").exit_code == 2  # usage
    failed = cli("sync", "--metrics-file", str(path), "--config", fast_retries, url=unreachable)
    assert failed.exit_code == 1
    fake.faults = Faults(malformed_every=7)
    assert cli("sync", "--metrics-file", str(path)).exit_code == 3
    assert samples(path)["catalog_job_exit_code"] == 3
    # 75 and 130/143: test_locked_job_exits_75..., test_sync_faults and the runner's SIGTERM test.


def test_config_error_is_in_the_metrics_before_any_server_is_known(cli, tmp_path):
    path = tmp_path / "catalog.prom"
    bad = tmp_path / "bad.toml"
    bad.write_text('[schedule]\nsync = "0 3 * *"\n')
    assert cli("sync", "--metrics-file", str(path), "--config", str(bad)).exit_code == 2
    assert samples(path, "sync", "")["catalog_job_exit_code"] == 2


def test_runner_help_documents_how_it_exits():
    from typer.testing import CliRunner

    from catalog.cli import app

    for command in (["schedule", "run"], ["status"], ["schedule"]):
        out = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
        assert out.exit_code == 0
    out = CliRunner().invoke(app, ["schedule", "run", "--help"], env={"COLUMNS": "200"})
    assert "143/130" in out.stdout


def test_json_logs_carry_the_sync_summary_instead_of_a_table(cli):
    out = cli("sync", "--log-format", "json")
    assert out.exit_code == 0
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is JSON: no table
    summary = next(e["summary"] for e in entries if "summary" in e)
    assert summary["status"] == "ok"
    assert sum(lib["inserted"] for lib in summary["libraries"]) == 104
