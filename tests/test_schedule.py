"""Schedules: validation, next run times, the crontab / systemd / Kubernetes forms (parsed back),
and the foreground runner, on a fake clock and as a real process against both databases."""

from __future__ import annotations

import configparser
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from conftest import TOKEN, hold_lock
from croniter import croniter
from sqlalchemy import select
from typer.testing import CliRunner

from catalog.cli import app
from catalog.config import load_settings
from catalog.db.models import RUN
from catalog.errors import ConfigError, Untranslatable
from catalog.fakes.media_server import Faults
from catalog.schedule import (
    JOBS,
    ScheduleRunner,
    local_zone,
    next_run,
    on_calendar,
    previous_run,
)

# -- expressions and next runs ------------------------------------------------------------------


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=local_zone())


def test_next_run_is_strictly_after_and_in_local_time():
    assert next_run("0 3 * * *", at(2026, 1, 1, 2, 59)) == at(2026, 1, 1, 3, 0)
    assert next_run("0 3 * * *", at(2026, 1, 1, 3, 0)) == at(2026, 1, 2, 3, 0)
    assert next_run("*/15 * * * 1-5", at(2026, 1, 2, 23, 50)) == at(2026, 1, 5, 0, 0)  # Fri→Mon
    assert previous_run("0 3 * * *", at(2026, 1, 1, 3, 0)) == at(2025, 12, 31, 3, 0)


def test_a_sixth_field_counts_seconds():
    start = at(2026, 1, 1, 0, 0, 0)
    assert next_run("* * * * * */2", start) == start + timedelta(seconds=2)


def test_next_run_follows_daylight_saving_time(monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        first = next_run("0 3 * * *", datetime(2026, 3, 7, 17, 0, tzinfo=UTC))
        second = next_run("0 3 * * *", first)
        assert first.astimezone(UTC) == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)  # EDT from 2am
        assert second - first == timedelta(days=1)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalog.toml"
    path.write_text(text)
    return path


def test_schedule_table_is_read_and_validated(tmp_path):
    path = write_config(tmp_path, '[schedule]\nsync = "0 3 * * *"\nnormalize = "@daily"\n')
    settings = load_settings(path, env={})
    assert settings.schedule == {"sync": "0 3 * * *", "normalize": "@daily"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('sync = "0 25 * * *"', "schedule.sync: '0 25 * * *' is not a valid cron expression for "
         "job 'sync'"),
        ('retag = "every day"', "schedule.retag: 'every day' is not a valid cron expression"),
        ('backup = "0 3 * * *"', "schedule.backup: unknown key"),
        ("sync = 3", "schedule.sync: must be a string"),
    ],
    ids=["hour out of range", "words", "unknown job", "not a string"],
)  # fmt: skip
def test_invalid_schedule_names_the_job_and_the_expression(tmp_path, text, message):
    path = write_config(tmp_path, f"[schedule]\n{text}\n")
    with pytest.raises(ConfigError, match=message.replace("*", r"\*")):
        load_settings(path, env={})


def test_environment_overrides_a_schedule_and_is_validated(tmp_path):
    path = write_config(tmp_path, '[schedule]\nsync = "0 3 * * *"\n')
    settings = load_settings(path, env={"CATALOG_SCHEDULE_SYNC": "15 4 * * *"})
    assert settings.schedule["sync"] == "15 4 * * *"
    with pytest.raises(ConfigError, match="CATALOG_SCHEDULE_NORMALIZE: 'nope' is not a valid"):
        load_settings(path, env={"CATALOG_SCHEDULE_NORMALIZE": "nope"})


def test_bad_schedule_is_exit_2_for_every_command(tmp_path):
    path = write_config(tmp_path, '[schedule]\nnormalize = "61 * * * *"\n')
    for args in (["schedule"], ["sync"], ["status"]):
        out = CliRunner().invoke(app, [*args, "--config", str(path)])
        assert out.exit_code == 2, args
        assert "'61 * * * *' is not a valid cron expression for job 'normalize'" in out.stderr


def test_no_schedule_tells_how_to_write_one(tmp_path):
    out = CliRunner().invoke(
        app, ["schedule", "crontab", "--config", str(write_config(tmp_path, ""))]
    )
    assert out.exit_code == 2
    assert "add a [schedule] table" in out.stderr and "CATALOG_SCHEDULE_SYNC" in out.stderr


# -- catalog schedule ---------------------------------------------------------------------------


@pytest.fixture
def scheduled(tmp_path, database_url) -> Path:
    return write_config(
        tmp_path,
        f'database_url = "{database_url}"\n'
        '[schedule]\nsync = "0 3 * * *"\nnormalize = "*/15 * * * 1-5"\n',
    )


def test_schedule_shows_next_runs_and_the_last_run(scheduled, cli):
    assert cli("sync").exit_code == 0
    out = CliRunner().invoke(app, ["schedule", "--config", str(scheduled), "--json"])
    assert out.exit_code == 0, out.stderr
    rows = {row["job"]: row for row in json.loads(out.stdout)["jobs"]}
    now = datetime.now(UTC)
    for job, expression in (("sync", "0 3 * * *"), ("normalize", "*/15 * * * 1-5")):
        assert rows[job]["schedule"] == expression
        assert datetime.fromisoformat(rows[job]["next_run"]) == next_run(expression, now) or (
            datetime.fromisoformat(rows[job]["next_run"]) > now  # a slot passed meanwhile
        )
    assert rows["sync"]["last_run"]["status"] == "ok"
    assert rows["normalize"]["last_run"] is None
    table = CliRunner().invoke(app, ["schedule", "--config", str(scheduled)])
    assert "0 3 * * *" in table.stdout and "never" in table.stdout


CATALOG_EXE = str(Path(sys.executable).with_name("catalog"))


def test_percent_signs_are_escaped_for_cron(tmp_path):
    config = tmp_path / "100%"
    config.mkdir()
    path = write_config(config, '[schedule]\nsync = "0 3 * * *"\n')
    out = CliRunner().invoke(app, ["schedule", "crontab", "--config", str(path)])
    assert "100\\%/catalog.toml" in out.stdout and "100%" not in out.stdout


def test_schedule_is_shown_when_the_catalog_is_unreachable(tmp_path):
    url = "postgresql+psycopg://catalog:pw@127.0.0.1:9/catalog"
    path = write_config(tmp_path, f'database_url = "{url}"\n[schedule]\nsync = "0 3 * * *"\n')
    out = CliRunner().invoke(app, ["schedule", "--config", str(path), "--json"])
    assert out.exit_code == 0
    assert json.loads(out.stdout)["jobs"][0]["last_run"] is None


def test_crontab_lines_parse_and_run_catalog_by_absolute_path(scheduled, tmp_path):
    args = ["schedule", "crontab", "--config", str(scheduled), "--executable", CATALOG_EXE]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.stderr
    entries = [line for line in out.stdout.splitlines() if line and not line.startswith("#")]
    assert len(entries) == 2
    for entry, job in zip(entries, ("sync", "normalize"), strict=True):
        fields = entry.split(None, 5)
        expression, argv = " ".join(fields[:5]), shlex.split(fields[5])
        assert croniter.is_valid(expression)
        assert Path(argv[0]).is_absolute() and os.access(argv[0], os.X_OK)
        assert argv[1 : 1 + len(JOBS[job])] == list(JOBS[job])
        assert argv[argv.index("--config") + 1] == str(scheduled.resolve())
        assert "--quiet" in argv and "flock" not in entry
    logs = CliRunner().invoke(app, [*args, "--log-dir", str(tmp_path)])
    first = next(line for line in logs.stdout.splitlines() if line.startswith("0 3"))
    assert first.endswith(f">> {tmp_path}/catalog-sync.log 2>&1")
    assert "--log-format json" in first


def test_systemd_units_parse_and_their_calendar_is_the_schedule(scheduled, tmp_path):
    out_dir = tmp_path / "units"
    args = ["schedule", "systemd", "--config", str(scheduled), "--output-dir", str(out_dir)]
    out = CliRunner().invoke(app, [*args, "--executable", CATALOG_EXE])
    assert out.exit_code == 0, out.stderr
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == [
        "catalog-normalize.service", "catalog-normalize.timer",
        "catalog-sync.service", "catalog-sync.timer",
    ]  # fmt: skip
    units = {}
    for path in out_dir.iterdir():
        parser = configparser.ConfigParser(interpolation=None)
        parser.optionxform = str  # systemd keys are case-sensitive
        parser.read(path)
        units[path.name] = parser
    service = units["catalog-normalize.service"]["Service"]
    assert service["Type"] == "oneshot"
    argv = shlex.split(service["ExecStart"])
    assert Path(argv[0]).is_absolute() and argv[1:3] == ["tags", "normalize"]
    assert set(service["SuccessExitStatus"].split()) == {"3", "75"}
    timer = units["catalog-sync.timer"]["Timer"]
    assert timer["OnCalendar"] == "*-*-* 03:00:00"
    assert timer["Persistent"] == "true" and timer["Unit"] == "catalog-sync.service"
    assert units["catalog-normalize.timer"]["Timer"]["OnCalendar"] == "Mon..Fri *-*-* *:00/15:00"
    assert units["catalog-sync.timer"]["Install"]["WantedBy"] == "timers.target"


def test_without_catalog_on_the_path_jobs_run_through_this_python(scheduled, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    out = CliRunner().invoke(app, ["schedule", "crontab", "--config", str(scheduled)])
    entry = out.stdout.splitlines()[3]
    assert shlex.split(entry.split(None, 5)[5])[:4] == [sys.executable, "-m", "catalog", "sync"]


CALENDARS = [
    ("0 3 * * *", "*-*-* 03:00:00"),
    ("*/5 * * * *", "*-*-* *:00/5:00"),
    ("0 9-17 * * 1-5", "Mon..Fri *-*-* 09..17:00:00"),
    ("15,45 */2 1 jan,jul *", "*-01,07-01 00/2:15,45:00"),
    ("30 2 */3 * *", "*-*-01/3 02:30:00"),
    ("0 3 * * 0,6", "Sun,Sat *-*-* 03:00:00"),
    ("5 4 * * 7", "Sun *-*-* 04:05:00"),
    ("@weekly", "Sun *-*-* 00:00:00"),
    ("* * * * * */2", "*-*-* *:*:00/2"),
]


@pytest.mark.parametrize(("cron", "calendar"), CALENDARS, ids=[c for c, _ in CALENDARS])
def test_cron_expressions_translate_to_systemd_calendars(cron, calendar):
    assert on_calendar(cron) == calendar


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd-analyze")
def test_systemd_accepts_every_translated_calendar():
    calendars = [calendar for _, calendar in CALENDARS]
    result = subprocess.run(
        ["systemd-analyze", "calendar", *calendars], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("Next elapse") == len(calendars)


@pytest.mark.parametrize(
    ("cron", "reason"),
    [("0 0 1-7 * 1", "day of month OR the weekday"), ("0 0 L * *", "'l' cannot be translated")],
    ids=["day-of-month and weekday", "last day"],
)
def test_untranslatable_expressions_say_why(cron, reason):
    with pytest.raises(Untranslatable, match=reason):
        on_calendar(cron)


def test_seconds_schedules_are_refused_by_cron_and_kubernetes(tmp_path):
    path = write_config(tmp_path, '[schedule]\nsync = "* * * * * */10"\n')
    for command in (["crontab"], ["kubernetes", "--image", "x"]):
        out = CliRunner().invoke(app, ["schedule", *command, "--config", str(path)])
        assert out.exit_code == 2
        assert "has a seconds field" in out.stderr


def test_kubernetes_cronjobs_parse_and_forbid_overlap(scheduled):
    args = ["schedule", "kubernetes", "--config", str(scheduled), "--image", "ghcr.io/me/catalog:1",
            "--namespace", "media", "--config-map", "catalog-config"]  # fmt: skip
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.stderr
    docs = [doc for doc in yaml.safe_load_all(out.stdout) if doc]
    assert [d["metadata"]["name"] for d in docs] == ["catalog-sync", "catalog-normalize"]
    sync = docs[0]
    assert sync["apiVersion"] == "batch/v1" and sync["kind"] == "CronJob"
    assert sync["metadata"]["namespace"] == "media"
    spec = sync["spec"]
    assert spec["schedule"] == "0 3 * * *"
    assert spec["concurrencyPolicy"] == "Forbid" and spec["startingDeadlineSeconds"] > 0
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    container = pod["containers"][0]
    assert container["image"] == "ghcr.io/me/catalog:1"
    assert container["args"][:1] == ["sync"]
    assert docs[1]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"][
        :2
    ] == ["tags", "normalize"]
    assert container["envFrom"] == [{"secretRef": {"name": "catalog"}}]
    assert "TOKEN" not in out.stdout.upper().replace("CATALOG_SERVER_TOKEN", "")
    assert pod["volumes"][0]["configMap"]["name"] == "catalog-config"


# -- the runner on a fake clock -----------------------------------------------------------------


class FakeClock:
    """A clock that moves only when the runner waits or a job takes time."""

    def __init__(self, start: datetime) -> None:
        self.time = start

    def now(self) -> datetime:
        return self.time

    def wait(self, seconds: float) -> bool:
        self.time += timedelta(seconds=seconds)
        return False


def fake_runner(clock: FakeClock, schedule, durations=None, codes=None, **kwargs):
    """A runner whose jobs take `durations[job]` minutes on the fake clock and exit `codes[job]`."""
    ran: list[tuple[str, datetime]] = []

    def launch(job: str) -> int:
        ran.append((job, clock.now()))
        clock.time += timedelta(minutes=(durations or {}).get(job, 0))
        code = (codes or {}).get(job, 0)
        if isinstance(code, Exception):
            raise code
        return code

    runner = ScheduleRunner(schedule, launch, now=clock.now, wait=clock.wait, **kwargs)
    return runner, ran


def test_runner_runs_a_job_at_each_due_time():
    clock = FakeClock(at(2026, 1, 1, 0, 0, 30))
    runner, ran = fake_runner(clock, {"sync": "*/5 * * * *"})
    assert runner.run(max_runs=3) == 0
    assert ran == [("sync", at(2026, 1, 1, 0, m)) for m in (5, 10, 15)]


def test_slots_missed_while_busy_run_once_not_once_each():
    clock = FakeClock(at(2026, 1, 1, 0, 0, 30))
    runner, ran = fake_runner(clock, {"sync": "*/5 * * * *"}, durations={"sync": 12})
    runner.run(max_runs=3)
    # 00:05 took until 00:17: the 00:10 and 00:15 slots become ONE run at 00:17.
    assert [when for _, when in ran] == [at(2026, 1, 1, 0, 5), at(2026, 1, 1, 0, 17),
                                         at(2026, 1, 1, 0, 29)]  # fmt: skip


def test_jobs_run_one_at_a_time_and_a_late_one_runs_when_the_other_ends():
    clock = FakeClock(at(2026, 1, 1, 2, 59))
    schedule = {"sync": "0 3 * * *", "normalize": "5 3 * * *"}
    runner, ran = fake_runner(clock, schedule, durations={"sync": 20})
    runner.run(max_runs=2)
    assert ran == [("sync", at(2026, 1, 1, 3, 0)), ("normalize", at(2026, 1, 1, 3, 20))]


def test_a_run_missed_during_downtime_runs_once_at_start():
    clock = FakeClock(at(2026, 1, 10, 12, 0))
    last = {"sync": at(2026, 1, 7, 3, 0), "normalize": at(2026, 1, 10, 4, 0)}
    schedule = {"sync": "0 3 * * *", "normalize": "0 4 * * *"}
    runner, ran = fake_runner(clock, schedule, last_started=last)
    runner.run(max_runs=3)
    # sync missed three slots: one run now, then its next slot; normalize missed nothing.
    assert ran == [("sync", at(2026, 1, 10, 12, 0)), ("sync", at(2026, 1, 11, 3, 0)),
                   ("normalize", at(2026, 1, 11, 4, 0))]  # fmt: skip


def test_a_job_that_never_ran_waits_for_its_slot():
    clock = FakeClock(at(2026, 1, 10, 12, 0))
    runner, ran = fake_runner(clock, {"sync": "0 3 * * *"}, last_started={"sync": None})
    runner.run(max_runs=1)
    assert ran == [("sync", at(2026, 1, 11, 3, 0))]


def test_runner_survives_failing_and_locked_jobs(caplog):
    caplog.set_level("INFO", logger="catalog.schedule")
    clock = FakeClock(at(2026, 1, 1, 0, 0))
    schedule = {"sync": "*/10 * * * *", "normalize": "5-59/10 * * * *", "retag": "7 * * * *"}
    codes = {"sync": 1, "normalize": 75, "retag": OSError("no such file")}
    runner, ran = fake_runner(clock, schedule, codes=codes)
    runner.run(max_runs=5)
    assert [job for job, _ in ran] == ["normalize", "retag", "sync", "normalize", "sync"]
    assert runner.history[:3] == [("normalize", 75), ("retag", 1), ("sync", 1)]
    messages = caplog.messages
    assert any("normalize: skipped: previous run still holds the lock" in m for m in messages)
    assert any("sync: failed (exit 1); carrying on" in m for m in messages)
    assert any("retag: could not be started" in m for m in messages)


def test_runner_stops_when_asked_and_reports_the_signal():
    clock = FakeClock(at(2026, 1, 1, 0, 0))

    def wait(seconds: float) -> bool:
        runner.stop(signal.SIGTERM)
        return True

    runner = ScheduleRunner({"sync": "0 3 * * *"}, lambda job: 0, now=clock.now, wait=wait)
    assert runner.run() == 143
    assert runner.history == []


# -- the runner as a process, running real jobs -------------------------------------------------


def runner_process(database_url: str, fake_url: str, config: Path, *args: str):
    env = {
        **os.environ,
        "CATALOG_DATABASE_URL": database_url,
        "CATALOG_SERVER_URL": fake_url,
        "CATALOG_SERVER_TOKEN": TOKEN,
        "CATALOG_PAGE_SIZE": "25",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "catalog", "schedule", "run", "--config", str(config),
         "--log-format", "json", *args],
        env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    proc.reader = reader  # joined by finish(), so every line is in `lines`
    return proc, lines


def finish(proc: subprocess.Popen, signum: int | None = signal.SIGTERM) -> int:
    if signum is not None:
        proc.send_signal(signum)
    proc.wait(timeout=90)
    proc.reader.join(timeout=10)
    return proc.returncode


def runner_messages(lines: list[str]) -> list[str]:
    """The runner's own log messages (children log to the same stderr)."""
    out = []
    for line in list(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("logger") == "catalog.schedule":
            out.append(entry["message"])
    return out


def wait_until(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def runs(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(select(RUN).order_by(RUN.c.id)).all()


@pytest.mark.slow
def test_runner_runs_due_jobs_skips_a_locked_one_and_stops_on_sigterm(
    database_url, fake, engine, tmp_path
):
    config = write_config(tmp_path, '[schedule]\nsync = "* * * * * *"\nnormalize = "* * * * * *"\n')
    holder = hold_lock(database_url, "sync", "default")
    proc, lines = runner_process(database_url, fake.url, config)
    try:
        wait_until(lambda: any("sync: skipped: previous run still holds the lock" in m
                               for m in runner_messages(lines)))  # fmt: skip
        wait_until(lambda: any(r.command == "normalize" and r.status == "ok" for r in runs(engine)))
        holder.communicate("")  # the other run ends: the next slot syncs
        wait_until(lambda: any("sync: finished" in m for m in runner_messages(lines)))
    finally:
        holder.kill()
        code = finish(proc)
    assert code == 143
    statuses = {(r.command, r.status) for r in runs(engine)}
    assert ("sync", "ok") in statuses and ("normalize", "ok") in statuses
    # The run in flight at SIGTERM, if any, stopped cleanly; none failed.
    assert statuses <= {("sync", "ok"), ("normalize", "ok"), ("sync", "interrupted"),
                        ("normalize", "interrupted")}, statuses  # fmt: skip


@pytest.mark.slow
def test_runner_carries_on_after_a_failing_job(database_url, fake, engine, tmp_path):
    config = write_config(
        tmp_path,
        '[schedule]\nsync = "* * * * * *"\nnormalize = "* * * * * *"\n'
        "[sync]\nretries = 0\ntimeout_s = 2\n",
    )
    fake.faults = Faults(fail_start_indexes=frozenset({0}))  # every library's first page: 500
    proc, lines = runner_process(database_url, fake.url, config, "--max-runs", "3")
    code = finish(proc, None)
    messages = runner_messages(lines)
    assert code == 0, lines
    assert any("sync: failed (exit 1); carrying on with the schedule" in m for m in messages)
    recorded = [(r.command, r.status) for r in runs(engine)]
    assert recorded[:3] == [("sync", "failed"), ("normalize", "ok"), ("sync", "failed")]


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_reaches_the_job_in_flight_which_records_the_interruption(
    database_url, fake, engine, tmp_path, signum
):
    config = write_config(tmp_path, '[schedule]\nsync = "* * * * * *"\n')
    fake.faults = Faults(latency_s=0.3)
    proc, lines = runner_process(database_url, fake.url, config)
    try:
        wait_until(lambda: any(r.command == "sync" for r in runs(engine)))
        time.sleep(0.5)
    finally:
        code = finish(proc, signum)
    assert code == 128 + signum
    assert [r.status for r in runs(engine)] == ["interrupted"]
    assert any(f"sync: interrupted (exit {128 + signum})" in m for m in runner_messages(lines))
