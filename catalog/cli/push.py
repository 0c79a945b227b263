"""`catalog push`: write the catalog's tags back to the media servers."""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from typing import Annotated, Any

import typer
from rich.table import Table

from catalog.aio import run_interruptible
from catalog.cli.common import (
    ConfigOpt,
    DatabaseOpt,
    DebugOpt,
    JsonOpt,
    LogFormat,
    LogFormatOpt,
    QuietOpt,
    ServerOpt,
    errors,
    logs_are_json,
    open_catalog,
    print_json,
    setup_logging,
    stderr,
    stdout,
)
from catalog.config import PushConfig, ServerConfig, Settings, load_settings
from catalog.http import HttpStats, RetryPolicy
from catalog.progress import RichReporter
from catalog.push import (
    DRY_RUN,
    Candidate,
    Change,
    PushOptions,
    PushReport,
    PushSelection,
    run_push,
)
from catalog.runs import FAILED, PARTIAL, RUNNING
from catalog.sources.connect import WRITE_ANSWER_BYTES, open_writer
from catalog.tagging.flow import CircuitBreaker, LimiterPacing, RateLimiter

app = typer.Typer()
log = logging.getLogger("catalog.push")
LOG_EVERY_S = 10.0


@app.command()
def push(
    server: ServerOpt = None,
    library: Annotated[
        list[str] | None,
        typer.Option("--library", "-l", help="Only items of this library (repeatable)."),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Print per item the tags it would add and remove."),
    ] = False,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Push at most this many items.")
    ] = None,
    undo: Annotated[
        bool,
        typer.Option("--undo", help="Take back every tag push added (the server's own stay)."),
    ] = False,
    allow_many: Annotated[
        bool,
        typer.Option("--allow-many", help="Change more items than \\[push] max_items allows."),
    ] = False,
    config: ConfigOpt = None,
    database_url: DatabaseOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    log_format: LogFormatOpt = LogFormat.text,
) -> None:
    """Write the catalog's tags (tagger and manual) back to the media servers.

    Every configured server, or --server NAME. Per item the server keeps the tags it has that
    push did not add, and gets the catalog's; tags push added that the catalog dropped are
    removed. Only items whose tags differ are written.

    Exit code 3 when some items failed; what was written is recorded and kept."""
    setup_logging(quiet or json_out, debug, log_format)
    code = 0
    with errors(debug):
        settings = load_settings(config, database_url=database_url, server=server)
        targets = [settings.server()] if server else _every_server(settings)
        reports = []
        for target in targets:  # one summary each (with --json, one document each)
            selection = PushSelection(target.name, tuple(library or ()), limit, undo)
            report = _run(settings, target, selection, dry_run, allow_many, json_out, quiet)
            reports.append(report)
        code = _exit_code(reports)
    raise typer.Exit(code)


def _every_server(settings: Settings) -> list[ServerConfig]:
    return list(settings.servers.values()) or [settings.server()]


def _exit_code(reports: list[PushReport]) -> int:
    statuses = {r.status for r in reports}
    return 1 if FAILED in statuses else 3 if PARTIAL in statuses else 0


def _run(
    settings: Settings,
    server: ServerConfig,
    selection: PushSelection,
    dry_run: bool,
    allow_many: bool,
    json_out: bool,
    quiet: bool,
) -> PushReport:
    engine = open_catalog(settings.database_url)
    report, stats, push = PushReport(server=server.name), HttpStats(), settings.push
    bar = not (quiet or json_out or dry_run) and stderr.is_terminal
    progress = _BarProgress() if bar else _LogProgress(server.name)
    changes: list[tuple[Candidate, Change]] = []  # a dry run's, for --json
    options = PushOptions(
        concurrency=push.concurrency, batch_size=push.batch_size, max_items=push.max_items,
        max_share=push.max_share, allow_many=allow_many, dry_run=dry_run,
        on_change=(lambda *pair: changes.append(pair)) if json_out else _print_change,
    )  # fmt: skip

    async def job() -> PushReport:
        pacing = LimiterPacing(RateLimiter(push.rate, push.effective_burst))
        breaker = _breaker(push, server)
        async with open_writer(
            server, _policy(push, server), pacing=pacing, concurrency=push.concurrency,
            stats=stats,
        ) as writer:  # fmt: skip
            return await run_push(
                engine, writer, breaker, selection, report, stats, options, progress,
                settings.retention,
            )  # fmt: skip

    try:
        with progress.bar if isinstance(progress, _BarProgress) else nullcontext():
            run_interruptible(job)
    except BaseException as exc:
        if report.status == RUNNING:  # stopped before the run began (a lock held, say)
            report.status, report.error = FAILED, str(exc) or type(exc).__name__
        raise
    finally:
        _render(report, json_out, quiet, changes)
        engine.dispose()
    return report


def _policy(push: PushConfig, server: ServerConfig) -> RetryPolicy:
    return RetryPolicy.of(push, max_bytes=WRITE_ANSWER_BYTES, redirect_hosts=server.redirect_hosts)


def _breaker(push: PushConfig, server: ServerConfig) -> CircuitBreaker:
    return CircuitBreaker(
        push.breaker_failures, push.breaker_cooldown_s, push.breaker_max_opens,
        service=f"the {server.kind} server {server.name!r}",
    )  # fmt: skip


def _print_change(candidate: Candidate, change: Change) -> None:
    """A dry run's line for one item: the tags it would add (+) and remove (-)."""
    added = " ".join(f"+{t}" for t in change.add)
    removed = " ".join(f"-{t}" for t in change.remove)
    line = f"{candidate.media_id}  {candidate.name}  {added} {removed}".rstrip()
    stdout.print(line, highlight=False, markup=False)


def _change_dict(candidate: Candidate, change: Change) -> dict[str, Any]:
    return {"id": candidate.media_id, "name": candidate.name, "add": list(change.add),
            "remove": list(change.remove)}  # fmt: skip


def _render(
    report: PushReport, json_out: bool, quiet: bool, changes: list[tuple[Candidate, Change]]
) -> None:
    if json_out:
        summary = report.as_dict()
        if report.status == DRY_RUN:
            summary["changes"] = [_change_dict(*pair) for pair in changes]
        print_json(summary)
        return
    if quiet and report.status in ("ok", DRY_RUN):
        return
    if logs_are_json():  # a table would be the only non-JSON lines on stderr
        log.info("push: %s", report.status, extra={"summary": report.as_dict()})
        return
    title = f"push {report.server}: {report.status} in {report.duration_s:.1f} s"
    table = Table(title=title)
    columns = ("selected", "pushed", "unchanged", "failed", "retries", "rate_limited")
    for column in columns:
        table.add_column(column.replace("_", " "), justify="right")
    table.add_row(*(f"{getattr(report, c):,}" for c in columns))
    stderr.print(table)
    if report.error:
        stderr.print(f"error: {report.error}", highlight=False, markup=False)


class _BarProgress:
    """A rich progress bar over the selected items."""

    def __init__(self) -> None:
        self.bar = RichReporter(stderr)

    def started(self, total: int) -> None:
        self.bar.library_started("pushing", total)

    def advanced(self, count: int) -> None:
        self.bar.advanced("pushing", count)


class _LogProgress:
    """A start line and a line every 10 s, for cron mail and container logs."""

    def __init__(self, server: str) -> None:
        self.server, self.total, self.done = server, 0, 0
        self.last = time.monotonic()

    def started(self, total: int) -> None:
        self.total = total
        log.info("push %s: %d item(s) out of step with the server", self.server, total)

    def advanced(self, count: int) -> None:
        self.done += count
        if time.monotonic() - self.last >= LOG_EVERY_S:
            self.last = time.monotonic()
            log.info("push %s: %d of %d done", self.server, self.done, self.total)
