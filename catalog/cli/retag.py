"""`catalog retag`: tag overdue items through the tagging service."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from sqlalchemy import Engine

from catalog.cli.common import print_json, stdout
from catalog.cli.jobs import JobOptions, JobRun, job_command, run_job
from catalog.cli.parsing import CatalogTyper
from catalog.cli.tables import counts_table, took
from catalog.config import Settings, TaggerConfig, parse_duration
from catalog.errors import ConfigError
from catalog.reads.items import MediaFilter, check_names
from catalog.retag import (
    RetagReport,
    Selection,
    WriteBatching,
    count_overdue,
    run_retag,
    select_overdue,
)
from catalog.runs import DRY_RUN, utcnow
from catalog.tagging.client import TaggerClient

app = CatalogTyper()
log = logging.getLogger("catalog.retag")
DRY_RUN_SHOWN = 10

LibraryOpt = Annotated[
    list[str] | None,
    typer.Option("--library", "-l", help="Only items of this library (repeatable)."),
]
OlderThanOpt = Annotated[
    str | None,
    typer.Option("--older-than", show_default=False,
                 help="Items last tagged longer ago than this (e.g. 7d, 12h; default: 30d, "
                 "$CATALOG_RETAG_OLDER_THAN or \\[tagger] older_than)."),
]  # fmt: skip
ChangedOpt = Annotated[
    bool, typer.Option("--changed", help="Also items whose metadata changed since their tagging.")
]
ForceOpt = Annotated[
    bool, typer.Option("--force", help="Every item, however recently it was tagged.")
]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Count the items and show the first few; call nothing.")
]
RateOpt = Annotated[
    float | None, typer.Option("--rate", help="Calls per second, across all workers.")
]
ConcurrencyOpt = Annotated[
    int | None, typer.Option("--concurrency", help="Calls in flight at most (1 to 512).")
]


RETAG_HELP = """Tag items never tagged, or not within --older-than, through the tagging service.

    The service: \\[tagger] in the config, or CATALOG_TAGGER_URL, _KIND, _TOKEN, _MODEL.

    Calls run in parallel under a shared rate limit; answers are written in batches.
    Only tagger tags are replaced: tags from the media server stay.

    On PostgreSQL, retags started on one catalog (on any host) share the overdue items
    and the rate and concurrency; on SQLite a second one exits 75.

    Exit code 3 when some items were tagged and some failed; 1 when nothing was answered."""


@job_command(app, help=RETAG_HELP)
def retag(
    job: JobOptions,
    library: LibraryOpt = None,
    older_than: OlderThanOpt = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Tag at most this many items.")
    ] = None,
    changed: ChangedOpt = False,
    force: ForceOpt = False,
    dry_run: DryRunOpt = False,
    rate: RateOpt = None,
    concurrency: ConcurrencyOpt = None,
    server: Annotated[
        str | None, typer.Option("--server", help="Only this server's items.")
    ] = None,
) -> None:
    """Tag overdue items through the tagging service (see RETAG_HELP)."""

    def recipe(run: JobRun) -> RetagReport | None:
        if older_than is not None:
            parse_duration(older_than, "--older-than")  # named as the user gave it
        settings = run.settings(
            tagger_rate=rate, tagger_concurrency=concurrency, tagger_older_than=older_than
        )
        older = parse_duration(settings.tagger.older_than, "--older-than")
        selection = Selection(older, tuple(library or ()), changed, force, limit, server)
        if dry_run:
            return _dry_run(run, settings, selection, job.json_out)
        return retag_job(run, settings, _require_url(settings.tagger, settings), selection)

    run_job("retag", job, recipe, retag_table, observed=not dry_run)


def _require_url(tagger: TaggerConfig, settings: Settings) -> TaggerConfig:
    if not tagger.url:
        where = settings.config_path or "the config file"
        raise ConfigError(
            f"no tagging service is configured: set CATALOG_TAGGER_URL or [tagger] url in {where}"
        )
    return tagger


def retag_job(
    run: JobRun, settings: Settings, tagger: TaggerConfig, selection: Selection
) -> RetagReport:
    """One recorded retag of what `selection` takes."""
    engine, progress = run.catalog(settings), run.progress()
    check_selection(engine, selection)
    report = RetagReport()
    batching = WriteBatching(tagger.batch_size, tagger.flush_s)

    async def work() -> RetagReport:
        async with TaggerClient(tagger) as client:
            return await run_retag(
                engine, client, selection, report, progress, batching, settings.retention
            )

    return run.job(report, work)


def _dry_run(run: JobRun, settings: Settings, selection: Selection, json_out: bool) -> None:
    engine = run.catalog(settings)
    check_selection(engine, selection)
    now = utcnow()
    with engine.connect() as conn:
        total = count_overdue(conn, selection, now)
        first = select_overdue(conn, selection, now, 0, min(DRY_RUN_SHOWN, total or 1))
    items = [{"id": r.media_id, "name": r.title, "tags": list(r.current_tags)} for r in first]
    if json_out:  # a retag's summary, as a dry run of push gives its own, and the first items
        print_json(
            {**RetagReport(status=DRY_RUN, selected=total).as_dict(), "first": items[:total]}
        )
        return
    stdout.print(f"{total:,} item(s) would be tagged", highlight=False)
    for item in items[:total]:
        stdout.print(f"  {item['id']}  {item['name']}", highlight=False, markup=False)


def check_selection(engine: Engine, selection: Selection) -> None:
    """A --server or --library that names nothing in the catalog is a typo: say so (naming
    what there is) before a run that would select nothing."""
    with engine.connect() as conn:
        check_names(conn, MediaFilter(libraries=selection.libraries, server=selection.server))


def retag_table(report: RetagReport) -> None:
    title = f"retag: {report.status} in {took(report.duration_s)}"
    columns = ("selected", "tagged", "failed", "skipped", "retries", "rate_limited")
    counts_table(title, report, columns)
