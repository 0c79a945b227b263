"""`catalog push`: write the catalog's tags back to the media servers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from catalog.aio import run_interruptible
from catalog.cli.common import ServerOpt, print_json, stderr, stdout
from catalog.cli.jobs import JobOptions, JobRun, each_server, job_command, run_job
from catalog.cli.parsing import CatalogTyper
from catalog.cli.tables import counts_table, took
from catalog.config import PushConfig, ServerConfig, Settings
from catalog.http import HttpStats, RetryPolicy
from catalog.jobs import JobReport, ServerRuns
from catalog.push import Candidate, Change, PushOptions, PushReport, PushSelection, run_push
from catalog.sources.connect import WRITE_ANSWER_BYTES, open_writer
from catalog.tagging.flow import CircuitBreaker, LimiterPacing, RateLimiter

app = CatalogTyper()

LibraryOpt = Annotated[
    list[str] | None,
    typer.Option("--library", "-l", help="Only items of this library (repeatable)."),
]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Print per item the tags it would add and remove.")
]
LimitOpt = Annotated[
    int | None, typer.Option("--limit", min=1, help="Push at most this many items.")
]
UndoOpt = Annotated[
    bool, typer.Option("--undo", help="Take back every tag push added (the server's own stay).")
]
AllowManyOpt = Annotated[
    bool, typer.Option("--allow-many", help="Change more items than \\[push] max_items allows.")
]
PUSH_HELP = (
    "Write the catalog's tags (tagger and manual) back to the media servers.\n\n"
    "The server named by --server; without it, the only one, or each configured server in "
    "turn. Per item the server keeps the tags it has that push did not add, and gets the "
    "catalog's; tags push added that the catalog dropped are removed. Only items whose tags "
    "differ are written; --undo takes back what push added."
)


@job_command(app, help=PUSH_HELP)
def push(
    job: JobOptions,
    server: ServerOpt = None,
    library: LibraryOpt = None,
    dry_run: DryRunOpt = False,
    limit: LimitOpt = None,
    undo: UndoOpt = False,
    allow_many: AllowManyOpt = False,
) -> None:
    """Write the catalog's tags back to a media server (see PUSH_HELP)."""

    def recipe(run: JobRun) -> JobReport | None:
        settings = run.settings(server=server)
        options = _options(settings.push, allow_many, dry_run, job.json_out)

        def one(target: ServerConfig) -> PushReport | None:
            selection = PushSelection(target.name, tuple(library or ()), limit, undo)
            return push_job(run, settings, target, selection, options)

        return push_configured(run, settings, server, one, dry_run)

    run_job("push", job, recipe, push_table, observed=not dry_run)


def push_configured(
    run: JobRun,
    settings: Settings,
    server: str | None,
    one: Callable[[ServerConfig], PushReport | None],
    dry_run: bool,
) -> JobReport | None:
    """The server named (or the only one): one push; none named: every configured server's
    (a dry run prints each one's changes in turn)."""
    if server is not None or len(settings.servers) <= 1:
        target = settings.server()
        run.observe(server=target.name)
        return one(target)
    if dry_run:
        for target in settings.servers.values():
            one(target)
        return None
    return each_server(run, settings, one, PushReport)


def _options(push: PushConfig, allow_many: bool, dry_run: bool, json_out: bool) -> PushOptions:
    return PushOptions(
        concurrency=push.concurrency, batch_size=push.batch_size, max_items=push.max_items,
        max_share=push.max_share, allow_many=allow_many, dry_run=dry_run,
        on_change=_DryRun(json_out) if dry_run else None,
    )  # fmt: skip


def push_job(
    run: JobRun,
    settings: Settings,
    server: ServerConfig,
    selection: PushSelection,
    options: PushOptions,
) -> PushReport | None:
    """One recorded push of `server` (a dry run: its changes, printed; nothing recorded)."""
    engine = run.catalog(settings)
    progress = run.progress() if not options.dry_run else None
    report, stats, push = PushReport(server=server.name), HttpStats(), settings.push

    async def work() -> PushReport:
        pacing = LimiterPacing(RateLimiter(push.rate, push.effective_burst))
        async with open_writer(
            server, _policy(push, server), pacing=pacing, concurrency=push.concurrency,
            stats=stats,
        ) as writer:  # fmt: skip
            return await run_push(
                engine, writer, _breaker(push, server), selection, report, stats, options,
                progress, settings.retention,
            )  # fmt: skip

    if isinstance(options.on_change, _DryRun):
        run_interruptible(work)
        options.on_change.render(report)
        return None
    return run.job(report, work)


def _policy(push: PushConfig, server: ServerConfig) -> RetryPolicy:
    return RetryPolicy.of(push, max_bytes=WRITE_ANSWER_BYTES, redirect_hosts=server.redirect_hosts)


def _breaker(push: PushConfig, server: ServerConfig) -> CircuitBreaker:
    return CircuitBreaker(
        push.breaker_failures, push.breaker_cooldown_s, push.breaker_max_opens,
        service=f"the {server.kind} server {server.name!r}",
    )  # fmt: skip


class _DryRun:
    """A dry run's changes: a line per item as they are found (+tag to add, -tag to remove),
    or, with --json, one document at the end."""

    def __init__(self, json_out: bool) -> None:
        self.json_out = json_out
        self.changes: list[dict[str, Any]] = []

    def __call__(self, candidate: Candidate, change: Change) -> None:
        if self.json_out:
            change_of = {"add": list(change.add), "remove": list(change.remove)}
            self.changes.append({"id": candidate.media_id, "name": candidate.name, **change_of})
            return
        added = " ".join(f"+{t}" for t in change.add)
        removed = " ".join(f"-{t}" for t in change.remove)
        line = f"{candidate.media_id}  {candidate.name}  {added} {removed}".rstrip()
        stdout.print(line, highlight=False, markup=False)

    def render(self, report: PushReport) -> None:
        if self.json_out:
            print_json({**report.as_dict(), "changes": self.changes})
        else:
            stderr.print(f"dry run: {report.selected:,} item(s) selected, nothing written",
                         highlight=False)  # fmt: skip


def push_table(report: JobReport) -> None:
    if isinstance(report, ServerRuns):
        for one in report.servers:
            push_table(one)
        return
    assert isinstance(report, PushReport)
    title = f"push {report.server}: {report.status} in {took(report.duration_s)}"
    columns = ("selected", "pushed", "unchanged", "failed", "retries", "rate_limited")
    counts_table(title, report, columns)
