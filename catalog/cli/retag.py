"""`catalog retag`: tag overdue items through the tagging service."""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from typing import Annotated

import typer
from rich.table import Table

from catalog.aio import run_interruptible
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
    logs_are_json,
    open_catalog,
    print_json,
    setup_logging,
    stderr,
    stdout,
)
from catalog.config import Settings, TaggerConfig, load_settings, parse_duration
from catalog.errors import ConfigError
from catalog.ops import JobOutcome, observed_job
from catalog.progress import RichReporter
from catalog.retag import (
    RetagReport,
    Selection,
    WriteBatching,
    count_overdue,
    run_retag,
    select_overdue,
)
from catalog.runs import PARTIAL, utcnow
from catalog.tagging.client import TaggerClient

app = typer.Typer()
log = logging.getLogger("catalog.retag")
DRY_RUN_SHOWN = 10
LOG_EVERY_S = 10.0


@app.command()
def retag(
    library: Annotated[
        list[str] | None,
        typer.Option("--library", "-l", help="Only items of this library (repeatable)."),
    ] = None,
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            help="Items last tagged longer ago than this (e.g. 7d, 12h; default: 30d, "
            "$CATALOG_RETAG_OLDER_THAN or \\[tagger] older_than).",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Tag at most this many items.")
    ] = None,
    changed: Annotated[
        bool,
        typer.Option("--changed", help="Also items whose metadata changed since their tagging."),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Every item, however recently it was tagged.")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Count the items and show the first few; call nothing."),
    ] = False,
    rate: Annotated[
        float | None,
        typer.Option("--rate", help="Calls per second, across all workers."),
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", help="Calls in flight at most (1 to 512).")
    ] = None,
    config: ConfigOpt = None,
    database_url: DatabaseOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    log_format: LogFormatOpt = LogFormat.text,
    metrics_file: MetricsFileOpt = None,
    healthcheck_url: HealthcheckOpt = None,
) -> None:
    """Tag items never tagged, or not within --older-than, through the tagging service.

    The service: \\[tagger] in the config, or CATALOG_TAGGER_URL, _KIND, _TOKEN, _MODEL.

    Calls run in parallel under a shared rate limit; answers are written in batches.
    Only tagger tags are replaced: tags from the media server stay.

    Exit code 3 when some items failed or the service kept failing; what was tagged is kept."""
    setup_logging(quiet or json_out, debug, log_format)
    observe = observed_job(
        "retag", metrics_file=None if dry_run else metrics_file,
        healthcheck_url=None if dry_run else healthcheck_url,
    )  # fmt: skip
    with errors(debug), observe as job:
        if older_than is not None:
            parse_duration(older_than, "--older-than")  # named as the user gave it
        settings = load_settings(
            config, database_url=database_url, tagger_rate=rate,
            tagger_concurrency=concurrency, tagger_older_than=older_than,
        )  # fmt: skip
        selection = Selection(
            older_than_s=parse_duration(settings.tagger.older_than, "--older-than"),
            libraries=tuple(library or ()),
            changed=changed,
            force=force,
            limit=limit,
        )
        job.database_url = settings.database_url
        if dry_run:
            _dry_run(settings, selection, json_out)
            return
        tagger = _require_url(settings.tagger, settings)
        job.exit_code = _run(settings, tagger, selection, json_out, quiet, job)
    raise typer.Exit(job.exit_code)


def _require_url(tagger: TaggerConfig, settings: Settings) -> TaggerConfig:
    if not tagger.url:
        where = settings.config_path or "the config file"
        raise ConfigError(
            f"no tagging service is configured: set CATALOG_TAGGER_URL or [tagger] url in {where}"
        )
    return tagger


def _run(
    settings: Settings,
    tagger: TaggerConfig,
    selection: Selection,
    json_out: bool,
    quiet: bool,
    observed: JobOutcome,
) -> int:
    engine = open_catalog(settings.database_url)
    report = RetagReport()
    bar = not (quiet or json_out) and stderr.is_terminal
    progress = _BarProgress() if bar else _LogProgress()
    batching = WriteBatching(tagger.batch_size, tagger.flush_s)

    async def job() -> RetagReport:
        async with TaggerClient(tagger) as client:
            return await run_retag(
                engine, client, selection, report, progress, batching, settings.retention
            )

    try:
        with progress.bar if isinstance(progress, _BarProgress) else nullcontext():
            run_interruptible(job)
    finally:
        observed.counts = report.run_counts()
        _render(report, json_out, quiet)
        engine.dispose()
    return 3 if report.status == PARTIAL else 0


def _dry_run(settings: Settings, selection: Selection, json_out: bool) -> None:
    engine = open_catalog(settings.database_url)
    try:
        now = utcnow()
        with engine.connect() as conn:
            total = count_overdue(conn, selection, now)
            first = select_overdue(conn, selection, now, 0, min(DRY_RUN_SHOWN, total or 1))
    finally:
        engine.dispose()
    items = [{"id": r.media_id, "name": r.title, "tags": list(r.current_tags)} for r in first]
    if json_out:
        print_json({"status": "dry_run", "selected": total, "first": items[:total]})
        return
    stdout.print(f"{total:,} item(s) would be tagged", highlight=False)
    for item in items[:total]:
        stdout.print(f"  {item['id']}  {item['name']}", highlight=False, markup=False)


def _render(report: RetagReport, json_out: bool, quiet: bool) -> None:
    if json_out:
        print_json(report.as_dict())
        return
    if quiet and report.status == "ok":
        return
    if logs_are_json():  # a table would be the only non-JSON lines on stderr
        log.info("retag: %s", report.status, extra={"summary": report.as_dict()})
        return
    table = Table(title=f"retag: {report.status} in {report.duration_s:.1f} s")
    columns = ("selected", "tagged", "failed", "skipped", "retries", "rate_limited")
    for column in columns:
        table.add_column(column.replace("_", " "), justify="right")
    table.add_row(*(f"{getattr(report, c):,}" for c in columns))
    stderr.print(table)


class _BarProgress:
    """A rich progress bar over the selected items."""

    def __init__(self) -> None:
        self.bar = RichReporter(stderr)

    def started(self, total: int) -> None:
        self.bar.library_started("tagging", total)

    def advanced(self, count: int) -> None:
        self.bar.advanced("tagging", count)


class _LogProgress:
    """A start line and a line every 10 s, for cron mail and container logs."""

    def __init__(self) -> None:
        self.total = self.done = 0
        self.last = time.monotonic()

    def started(self, total: int) -> None:
        self.total = total
        log.info("retag: %d item(s) to tag", total)

    def advanced(self, count: int) -> None:
        self.done += count
        if time.monotonic() - self.last >= LOG_EVERY_S:
            self.last = time.monotonic()
            log.info("retag: %d of %d written", self.done, self.total)
