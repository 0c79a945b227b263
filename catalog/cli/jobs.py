"""The one skeleton of a job command (sync, retag, the tag changes): logging, the observed job
(metrics, healthcheck), one-line errors, settings, the catalog, progress, signals, rendering
the report (JSON, quiet, JSON logs or the job's table) and the exit code.

A job command is a recipe: its own options → settings → the job → its table::

    @job_command(app)
    def sync(job: JobOptions, library: ... = None) -> None:
        def recipe(run: JobRun) -> SyncReport:
            settings = run.settings(server=server)
            ...
            return run.job(SyncReport(server=...), lambda: run_sync(...))
        run_job("sync", job, recipe, sync_table)
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
from sqlalchemy import Engine

from catalog.aio import interruptible, run_interruptible
from catalog.cli import common
from catalog.cli.common import (
    error_line,
    errors,
    logs_are_json,
    open_catalog,
    print_json,
    setup_logging,
    stderr,
)
from catalog.config import ServerConfig, Settings, load_settings
from catalog.jobs import SIGINT_EXIT, SIGTERM_EXIT, JobReport, ServerRuns, exit_code_of
from catalog.ops import SERVER_FIELD, JobOutcome, observed_job
from catalog.progress import BarProgress, LogProgress, Progress, QuietProgress
from catalog.runs import FAILED, OK

log = logging.getLogger("catalog.jobs")
R = TypeVar("R", bound=JobReport)
F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class JobOptions:
    """The options every job command takes."""

    config: Path | None = None
    database_url: str | None = None
    json_out: bool = False
    quiet: bool = False
    debug: bool = False
    log_format: common.LogFormat = common.LogFormat.text
    metrics_file: Path | None = None
    healthcheck_url: str | None = None


_OPTION_TYPES = {
    "config": common.ConfigOpt, "database_url": common.DatabaseOpt, "json_out": common.JsonOpt,
    "quiet": common.QuietOpt, "debug": common.DebugOpt, "log_format": common.LogFormatOpt,
    "metrics_file": common.MetricsFileOpt, "healthcheck_url": common.HealthcheckOpt,
}  # fmt: skip


def job_command(
    app: typer.Typer, name: str | None = None, help: str | None = None
) -> Callable[[F], F]:
    """Register `fn(job: JobOptions, **own options)` as a command taking its own options and,
    after them, every job's (declared once, here). `help`: the --help text, if not the
    function's docstring."""

    def register(fn: F) -> F:
        own = list(inspect.signature(fn, eval_str=True).parameters.values())[1:]
        common = [
            inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                              annotation=_OPTION_TYPES[f.name])
            for f in fields(JobOptions)
        ]  # fmt: skip

        @functools.wraps(fn)
        def command(**kwargs: Any) -> Any:
            options = JobOptions(**{f.name: kwargs.pop(f.name) for f in fields(JobOptions)})
            return fn(options, **kwargs)

        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + common
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        app.command(name, help=inspect.cleandoc(help) if help else None)(command)
        return fn

    return register


class JobRun:
    """What a recipe works with: settings, the catalog, progress; and the report to render."""

    def __init__(
        self, options: JobOptions, outcome: JobOutcome | None = None, observed: bool = True
    ) -> None:
        self.options, self.outcome, self.observed_runs = options, outcome, observed
        self.report: JobReport | None = None
        self.stack = ExitStack()
        self._progress: Progress | None = None
        self._engines: dict[str, Engine] = {}

    def settings(self, **overrides: Any) -> Settings:
        """The settings, the command's flags over the environment over the file."""
        opts = self.options
        settings = load_settings(opts.config, database_url=opts.database_url, **overrides)
        self.observe(database_url=settings.database_url)
        return settings

    def observe(self, **known: Any) -> None:
        """Tell the observers (metrics, healthcheck) what the run is about."""
        for key, value in known.items():
            if self.outcome is not None:
                setattr(self.outcome, key, value)

    def catalog(self, settings: Settings, create: bool = False) -> Engine:
        """The catalog at the latest schema, disposed of when the command ends. `create`: a
        SQLite catalog that does not exist yet is made (a sync); otherwise that is an error."""
        engine = self._engines.get(settings.database_url)
        if engine is None:  # one per command, however many runs it makes
            engine = open_catalog(settings.database_url, create=create)
            self._engines[settings.database_url] = engine
            self.stack.callback(engine.dispose)
        return engine

    def enter(self, context: AbstractContextManager[Any]) -> Any:
        """Keep `context` open until the command ends."""
        return self.stack.enter_context(context)

    def progress(self) -> Progress:
        """A bar on a terminal, log lines elsewhere, only the items that failed with --quiet;
        one for the command, however many runs it makes."""
        if self._progress is None:
            opts = self.options
            if not (opts.quiet or opts.json_out) and stderr.is_terminal:
                self._progress = self.enter(BarProgress(stderr.console))
            else:
                self._progress = QuietProgress() if opts.quiet else LogProgress()
        return self._progress

    def job(self, report: R, work: Callable[[], Awaitable[Any]]) -> R:
        """Run the job's coroutine (signals cancel it); `report` is rendered whatever happens
        (within the command's ServerRuns, if it runs the job once per server)."""
        if isinstance(self.report, ServerRuns):
            self.report.servers.append(report)
        else:
            self.report = report
        run_interruptible(work)
        return report

    def per_server(self) -> ServerRuns:
        """Render the runs the command makes from now on as one ServerRuns report, each run
        observed on its own (see `observed`) rather than the command as a whole."""
        runs = ServerRuns()
        self.report = runs
        if self.outcome is not None:
            self.outcome.observed_apart = True
        return runs

    @contextmanager
    def observed(self, server: str, database_url: str) -> Iterator[JobOutcome]:
        """One server's run observed on its own: its metrics labelled by server, and its own
        healthcheck ping if the URL names `{server}` (else the command pings once)."""
        job = self.outcome.job if self.outcome is not None else "job"
        opts = self.options
        ping = opts.healthcheck_url if SERVER_FIELD in (opts.healthcheck_url or "") else None
        metrics = opts.metrics_file if self.observed_runs else None
        with observed_job(
            job, server, metrics_file=metrics, healthcheck_url=ping if self.observed_runs else None
        ) as outcome:
            outcome.database_url = database_url
            yield outcome


def each_server(
    run: JobRun,
    settings: Settings,
    one: Callable[[ServerConfig], JobReport],
    blank: Callable[..., JobReport],
) -> ServerRuns:
    """`one` run of the job for each configured server in turn, each under its own lock and
    observed on its own, as one ServerRuns report. A server that fails (unreachable, refused,
    locked) is reported and the next one run; an interruption stops them all. `blank`: the
    job's report class, for a server that failed before its run began."""
    runs = run.per_server()
    for server in settings.servers.values():
        with run.observed(server.name, settings.database_url) as outcome:
            outcome.exit_code = _run_one(run, server, one, blank, runs, outcome)
    return runs


def _run_one(
    run: JobRun,
    server: ServerConfig,
    one: Callable[[ServerConfig], JobReport],
    blank: Callable[..., JobReport],
    runs: ServerRuns,
    outcome: JobOutcome,
) -> int:
    """Run one of several servers' jobs; its exit code (an interruption is raised)."""
    before = len(runs.servers)
    try:
        one(server)
    except Exception as exc:
        if exit_code_of(exc) in (SIGINT_EXIT, SIGTERM_EXIT):
            raise
        if run.options.debug:
            stderr.print_exception()
        error_line(f"server {server.name!r}: {exc}")
        if len(runs.servers) == before:  # it failed before its run began (the catalog)
            runs.servers.append(blank(server=server.name, status=FAILED, error=str(exc)))
    finally:
        runs.status = runs.settle()
        if len(runs.servers) > before:  # interrupted too: the counts of what it did
            outcome.counts = runs.servers[-1].run_counts()
    return runs.servers[-1].exit_code


def run_job(
    job: str,
    options: JobOptions,
    recipe: Callable[[JobRun], JobReport | None],
    table: Callable[[JobReport], None],
    *,
    observed: bool = True,
) -> NoReturn:
    """Run one job command and exit with its code. `recipe` returns the report (None: it
    rendered something else, a dry run); `table` renders a report for people."""
    setup_logging(options.quiet or options.json_out, options.debug, options.log_format)
    observe = observed_job(
        job, metrics_file=options.metrics_file if observed else None,
        healthcheck_url=options.healthcheck_url if observed else None,
    )  # fmt: skip
    with errors(options.debug), observe as outcome, interruptible():
        run = JobRun(options, outcome, observed)
        try:
            with run.stack:
                report = recipe(run)
        finally:
            if run.report is not None:
                outcome.counts = run.report.run_counts()
                render(job, run.report, options, table)
        outcome.exit_code = report.exit_code if report is not None else 0
    raise typer.Exit(outcome.exit_code)


def render(job: str, report: JobReport, options: JobOptions, table: Callable[[Any], None]) -> None:
    """The report as JSON on stdout, a JSON log record, or the job's table."""
    if options.json_out:
        print_json(report.as_dict())
    elif options.quiet and report.status == OK:
        return
    elif logs_are_json():  # a table would be the only non-JSON lines on stderr
        log.info("%s: %s", job, report.status, extra={"summary": report.as_dict()})
    else:
        table(report)
