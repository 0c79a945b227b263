"""`catalog schedule`: the configured jobs' schedules; crontab, systemd and Kubernetes forms of
them; and `catalog schedule run`, the foreground runner for containers."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from catalog.cli.common import (
    ConfigOpt,
    DatabaseOpt,
    DebugOpt,
    HealthcheckOpt,
    JsonOpt,
    LogFormat,
    LogFormatOpt,
    MetricsFileOpt,
    QuietOpt,
    errors,
    open_catalog,
    print_json,
    setup_logging,
    stderr,
    stdout,
)
from catalog.cli.parsing import CatalogTyper
from catalog.cli.tables import Kind, columns, moment, new_table, print_table
from catalog.config import Settings, default_config_path, load_settings
from catalog.db.engine import parse_url, sqlite_path
from catalog.errors import ConfigError
from catalog.reads.runs import last_runs_by_command
from catalog.schedule import (
    Invocation,
    KubernetesOptions,
    ScheduleRunner,
    SubprocessLauncher,
    crontab,
    kubernetes_cronjobs,
    next_run,
    systemd_units,
)
from catalog.timefmt import local_minute

log = logging.getLogger(__name__)

app = CatalogTyper(
    help="The configured jobs' schedules (\\[schedule] in the config): show them, emit crontab, "
    "systemd or Kubernetes forms of them, or run them in the foreground."
)

ExecutableOpt = Annotated[
    str | None,
    typer.Option("--executable", show_default=False,
                 help="The catalog command to run (default: this one, by absolute path)."),
]  # fmt: skip


@app.callback(invoke_without_command=True)
def schedule(
    ctx: typer.Context,
    config: ConfigOpt = None,
    database_url: DatabaseOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """The configured jobs, their cron expressions, next run times and last run."""
    if ctx.invoked_subcommand is not None:
        return
    setup_logging(True, debug)
    with errors(debug):
        settings = load_settings(config, database_url=database_url)
        jobs = scheduled_jobs(settings)
        last = _last_runs(settings.database_url)
        rows = [_job_row(job, expr, last.get(job)) for job, expr in jobs.items()]
    if json_out:
        print_json({"jobs": rows})
        return
    _schedule_table(rows)


def _schedule_table(rows: list[dict[str, Any]]) -> None:
    """The jobs for people, in local time (the zone named); --json has them in UTC."""
    table = new_table()
    columns(table, [("job", Kind.LABEL), ("schedule", Kind.TEXT), ("next run", Kind.MOMENT),
                    ("last run", Kind.MOMENT), ("status", Kind.LABEL)])  # fmt: skip
    for row in rows:
        last = row["last_run"] or {}
        table.add_row(
            row["job"], row["schedule"], local_minute(row["next_run"], zone=True),
            moment(last.get("started_at"), never="never"), last.get("status", ""),
        )  # fmt: skip
    print_table(table, stdout)


def scheduled_jobs(settings: Settings) -> dict[str, str]:
    """The [schedule] table, or a ConfigError saying how to write one."""
    if not settings.schedule:
        where = settings.config_path or default_config_path()
        raise ConfigError(
            f'no job is scheduled: add a [schedule] table to {where} (e.g. sync = "0 3 * * *") '
            "or set CATALOG_SCHEDULE_SYNC"
        )
    return dict(settings.schedule)


def _job_row(job: str, expression: str, last: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "job": job,
        "schedule": expression,
        "next_run": next_run(expression, datetime.now(UTC)),
        "last_run": None
        if last is None
        else {
            "started_at": last["started_at"],
            "status": last["status"],
            "error": last["error"],
        },
    }


def _last_runs(database_url: str) -> dict[str, dict[str, Any]]:
    """The newest run of each job, or nothing when the catalog is missing or unreachable (the
    schedule is worth showing anyway)."""
    path = sqlite_path(parse_url(database_url))
    if path is not None and not path.exists():
        return {}
    try:
        engine = open_catalog(database_url)
    except Exception as exc:
        log.warning("last runs unknown: %s", exc)
        return {}
    try:
        with engine.connect() as conn:
            return last_runs_by_command(conn)
    finally:
        engine.dispose()


# -- emitters -----------------------------------------------------------------------------------


def _invocation(settings: Settings, executable: str | None, *extra: str) -> Invocation:
    """Absolute paths only: cron and systemd run with another working directory and PATH."""
    options = list(extra)
    if settings.config_path is not None:
        options = ["--config", str(settings.config_path.resolve()), *options]
    else:
        stderr.print(
            "warning: no config file: cron, systemd and Kubernetes jobs won't see settings from "
            "this shell's environment; write them to a config file and pass --config",
            highlight=False,
        )
    return Invocation(_executable(executable), tuple(options))


def _executable(given: str | None) -> tuple[str, ...]:
    if given:
        return (str(Path(given).resolve()),)
    argv0 = Path(sys.argv[0])
    if argv0.name == "catalog" and argv0.is_file():
        return (str(argv0.resolve()),)
    found = shutil.which("catalog")
    if found:
        return (str(Path(found).resolve()),)
    return (sys.executable, "-m", "catalog")


def _passthrough(metrics_file: Path | None) -> list[str]:
    return ["--metrics-file", str(metrics_file.resolve())] if metrics_file else []


@app.command("crontab")
def crontab_command(
    log_dir: Annotated[
        Path | None,
        typer.Option(
            "--log-dir",
            show_default=False,
            help="Append each job's JSON log lines to DIR/catalog-JOB.log (default: "
            "--quiet, so cron mails only warnings and errors).",
        ),
    ] = None,
    executable: ExecutableOpt = None,
    metrics_file: MetricsFileOpt = None,
    config: ConfigOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Crontab lines for the configured jobs (install with `crontab -e`)."""
    setup_logging(True, debug)
    with errors(debug):
        settings = load_settings(config)
        how = _invocation(settings, executable, *_passthrough(metrics_file))
        text = crontab(scheduled_jobs(settings), how, log_dir.resolve() if log_dir else None)
    sys.stdout.write(text)


@app.command("systemd")
def systemd_command(
    output_dir: Annotated[
        Path | None,
        typer.Option(
            "--output-dir",
            show_default=False,
            help="Write the unit files there (e.g. /etc/systemd/system, or ~/.config/systemd/user "
            "with --user) instead of printing them.",
        ),
    ] = None,
    user: Annotated[
        bool,
        typer.Option("--user", help="Units for your own systemd manager (systemctl --user)."),
    ] = False,
    executable: ExecutableOpt = None,
    metrics_file: MetricsFileOpt = None,
    config: ConfigOpt = None,
    debug: DebugOpt = False,
) -> None:
    """A oneshot .service and a .timer (Persistent=true) per configured job."""
    setup_logging(True, debug)
    with errors(debug):
        settings = load_settings(config)
        how = _invocation(settings, executable, "--log-format", "json", *_passthrough(metrics_file))
        units = systemd_units(scheduled_jobs(settings), how, user=user)
        if output_dir is not None:
            output_dir.mkdir(parents=True, exist_ok=True)
            for name, text in units.items():
                (output_dir / name).write_text(text, encoding="utf-8")
    if output_dir is None:
        for name, text in units.items():
            sys.stdout.write(f"### {name}\n{text}\n")
    _systemd_hint(units, output_dir, user)


def _systemd_hint(units: Mapping[str, str], output_dir: Path | None, user: bool) -> None:
    timers = " ".join(name for name in units if name.endswith(".timer"))
    systemctl = "systemctl --user" if user else "systemctl"
    where = "~/.config/systemd/user" if user else "/etc/systemd/system"
    done = f"wrote {len(units)} units to {output_dir}" if output_dir else f"save them in {where}"
    linger = "; `loginctl enable-linger` runs them while you are logged out" if user else ""
    stderr.print(f"{done}; then: {systemctl} daemon-reload && {systemctl} enable --now "
                 f"{timers}{linger}", highlight=False)  # fmt: skip


@app.command("kubernetes")
def kubernetes_command(
    image: Annotated[str, typer.Option("--image", help="The container image with catalog.")],
    namespace: Annotated[
        str | None, typer.Option("--namespace", help="Namespace of the CronJobs.")
    ] = None,
    secret: Annotated[
        str, typer.Option("--secret", help="Secret whose keys become env (CATALOG_SERVER_TOKEN…).")
    ] = "catalog",
    config_map: Annotated[
        str | None,
        typer.Option("--config-map", help="ConfigMap with a config.toml key, mounted read-only."),
    ] = None,
    time_zone: Annotated[
        str | None,
        typer.Option(
            "--time-zone",
            help="Zone of the schedules, e.g. Europe/Paris (default: the cluster's, UTC). "
            "CronJob timeZone needs Kubernetes 1.27 or later.",
        ),
    ] = None,
    starting_deadline: Annotated[
        int, typer.Option("--starting-deadline", min=10, help="Seconds a late run may start.")
    ] = 3600,
    active_deadline: Annotated[
        int,
        typer.Option(
            "--active-deadline",
            min=60,
            help="Seconds a run may take before Kubernetes stops it (a hung run would block "
            "every later one).",
        ),
    ] = KubernetesOptions.active_deadline_s,
    cpu_request: Annotated[str, typer.Option("--cpu-request", help="CPU requested.")] = "100m",
    memory_request: Annotated[
        str, typer.Option("--memory-request", help="Memory requested.")
    ] = "256Mi",
    cpu_limit: Annotated[
        str | None, typer.Option("--cpu-limit", help="CPU limit (default: none, no throttling).")
    ] = None,
    memory_limit: Annotated[str, typer.Option("--memory-limit", help="Memory limit.")] = "1Gi",
    retag_workers: Annotated[
        int,
        typer.Option(
            "--retag-workers",
            min=1,
            help="Pods of each retag run (Job parallelism): workers sharing the overdue items "
            "and the tagging service's limits. A PostgreSQL catalog only.",
        ),
    ] = 1,
    config: ConfigOpt = None,
    database_url: DatabaseOpt = None,
    debug: DebugOpt = False,
) -> None:
    """CronJob manifests (concurrencyPolicy: Forbid), one per configured job: non-root,
    read-only root filesystem, no capabilities, bounded time and resources."""
    setup_logging(True, debug)
    with errors(debug):
        settings = load_settings(config, database_url=database_url)
        _check_retag_workers(retag_workers, settings)
        requests = {"cpu": cpu_request, "memory": memory_request}
        limits = {"cpu": cpu_limit, "memory": memory_limit}
        options = KubernetesOptions(
            image=image, namespace=namespace, secret=secret or None, config_map=config_map,
            time_zone=time_zone, starting_deadline_s=starting_deadline,
            active_deadline_s=active_deadline,
            requests={k: v for k, v in requests.items() if v},
            limits={k: v for k, v in limits.items() if v}, retag_workers=retag_workers,
        )  # fmt: skip
        text = kubernetes_cronjobs(scheduled_jobs(settings), options)
        _warn_if_throwaway(settings.database_url)
    sys.stdout.write(text)


def _check_retag_workers(workers: int, settings: Settings) -> None:
    """Several retag pods need a retag scheduled and a catalog they can share."""
    if workers == 1:
        return
    if "retag" not in scheduled_jobs(settings):
        raise ConfigError(f"--retag-workers {workers}: no retag is scheduled ([schedule] retag)")
    if parse_url(settings.database_url).get_backend_name() == "sqlite":
        raise ConfigError(
            f"--retag-workers {workers}: the catalog is SQLite, which one retag at a time works "
            "on; set database_url (or --database-url) to the PostgreSQL catalog the pods use"
        )


def _warn_if_throwaway(database_url: str) -> None:
    """A SQLite catalog inside a pod lives on its throwaway disk: every run starts empty."""
    if parse_url(database_url).get_backend_name() == "sqlite":
        stderr.print(
            "warning: the catalog is SQLite, which in a pod lives on the pod's throwaway disk "
            "(and the root filesystem is read-only): set database_url (or CATALOG_DATABASE_URL "
            "in the Secret) to a PostgreSQL catalog",
            highlight=False,
            soft_wrap=True,
        )


# -- the foreground runner ----------------------------------------------------------------------


@app.command("run")
def run_command(
    max_runs: Annotated[
        int | None,
        typer.Option("--max-runs", min=1, help="Stop after this many job runs (default: never)."),
    ] = None,
    config: ConfigOpt = None,
    database_url: DatabaseOpt = None,
    log_format: LogFormatOpt = LogFormat.text,
    metrics_file: MetricsFileOpt = None,
    healthcheck_url: HealthcheckOpt = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Run each configured job when due, in the foreground (for containers).

    Each job runs as its own `catalog` command, one at a time; a job whose previous run still
    holds its lock is skipped, a failing one is logged and the schedule carries on, and a slot
    missed while busy or down runs once. SIGTERM/SIGINT is passed to the job in flight, which
    stops cleanly; the runner then exits 143/130."""
    setup_logging(quiet, debug, log_format)
    with errors(debug):
        settings = load_settings(config, database_url=database_url)
        jobs = scheduled_jobs(settings)
        options = ["--log-format", log_format.value, *_passthrough(metrics_file)]
        if config is not None:
            options = ["--config", str(config.resolve()), *options]
        launcher = SubprocessLauncher(options, _child_env(database_url, healthcheck_url))
        last = _last_runs(settings.database_url)
        runner = ScheduleRunner(
            jobs, launcher, last_started={job: run["started_at"] for job, run in last.items()}
        )
        with _signals_stop(runner, launcher):
            code = runner.run(max_runs)
    raise typer.Exit(code)


def _child_env(database_url: str | None, healthcheck_url: str | None) -> dict[str, str]:
    """The runner's environment, plus what its flags said: a database URL may hold a password
    and a healthcheck URL is a secret, so they travel here rather than on a command line."""
    env = dict(os.environ)
    if database_url:
        env["CATALOG_DATABASE_URL"] = database_url
    if healthcheck_url:
        env["CATALOG_HEALTHCHECK_URL"] = healthcheck_url
    return env


@contextmanager
def _signals_stop(runner: ScheduleRunner, launcher: SubprocessLauncher) -> Iterator[None]:
    def on_signal(signum: int, _frame: Any) -> None:
        log.info("received %s: stopping after the job in flight", signal.Signals(signum).name)
        runner.stop(signum)
        launcher.forward(signum)

    previous: Mapping[int, Any] = {
        signum: signal.signal(signum, on_signal) for signum in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
