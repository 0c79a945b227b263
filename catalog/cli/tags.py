"""`catalog tags`: list the vocabulary; normalize, rename, merge and drop tags."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

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
    catalog_connection,
    errors,
    open_catalog,
    print_json,
    setup_logging,
    stderr,
    stdout,
)
from catalog.cli.output import Format, ItemWriter, next_page_hint
from catalog.config import load_settings
from catalog.ops import JobOutcome, observed_job
from catalog.tags import (
    BY_COUNT,
    BY_NAME,
    ChangeReport,
    Plan,
    decode_cursor,
    list_tags,
    parse_rules,
    plan_drop,
    plan_merge,
    plan_normalization,
    plan_rename,
    run_vocabulary_change,
    tag_names,
)

RULES_HELP = (
    "CSV rules applied after cleaning, one per line: `tag,rename,new`, `tag,merge,new` (the "
    "same), `tag,drop`, or `tag,` (nothing). Blank lines and lines starting with # are ignored; "
    "quote a tag that starts with #. Names may be raw or clean, new names are cleaned too, and "
    "rules chain (a->b, b->c gives a->c)."
)

app = typer.Typer(help="The tag vocabulary: list it, normalize it, rename, merge or drop tags.")


class Order(StrEnum):
    count = BY_COUNT
    name = BY_NAME


@app.callback(invoke_without_command=True)
def tags(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Tags per page.")] = 100,
    after: Annotated[
        str | None, typer.Option("--after", help="Next page: the cursor the last page gave.")
    ] = None,
    order: Annotated[
        Order, typer.Option("--order", help="Most used first (then by name), or by name.")
    ] = Order.count,
    output: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
    config: ConfigOpt = None,
    database_url: DatabaseOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Tags with the number of items carrying each, a page at a time; or a subcommand."""
    if ctx.invoked_subcommand is not None:
        return
    if after:
        try:
            decode_cursor(after, order.value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--after") from None
    setup_logging(True, debug)
    with errors(debug), catalog_connection(config, database_url) as conn:
        page = list_tags(conn, order.value, limit, after)
    _render_page(page.items, page.next_cursor, output)


def _render_page(items: list[dict], cursor: str | None, output: Format) -> None:
    if output is not Format.table:
        writer = ItemWriter(output, ("name", "count"))
        writer.write(items)
        writer.close(cursor)
        return
    table = Table("tag", "items")
    table.columns[1].justify = "right"
    for item in items:
        table.add_row(item["name"], f"{item['count']:,}")
    stdout.print(table)
    if cursor:
        next_page_hint(cursor)


# -- normalize ----------------------------------------------------------------------------------


@app.command()
def normalize(
    rules: Annotated[
        Path | None, typer.Option("--rules", help=RULES_HELP, show_default=False)
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the plan (every change); write nothing.")
    ] = False,
    config: ConfigOpt = None,
    database_url: DatabaseOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    log_format: LogFormatOpt = LogFormat.text,
    metrics_file: MetricsFileOpt = None,
    healthcheck_url: HealthcheckOpt = None,
) -> None:
    """Clean every tag name, merging those that end up the same; then apply --rules.

    Cleaning: lower case; & + @ become and, plus, at; every run of other characters that are
    not letters or digits becomes one _, none at either end. All changes are applied in one
    transaction, and kept as aliases: the next sync maps the raw names a server still sends
    onto the clean tags."""
    setup_logging(quiet or json_out, debug, log_format)
    observe = observed_job(
        "normalize", metrics_file=None if dry_run else metrics_file,
        healthcheck_url=None if dry_run else healthcheck_url,
    )  # fmt: skip
    with errors(debug), observe as job:
        parsed = parse_rules(rules) if rules else {}

        def make_plan(names: list[str]) -> Plan:
            return plan_normalization(names, parsed)

        _change(config, database_url, "normalize", make_plan, dry_run, json_out, quiet, job)


# -- rename, merge, drop ------------------------------------------------------------------------


@app.command()
def rename(
    old: Annotated[str, typer.Argument(help="The tag to rename.")],
    new: Annotated[str, typer.Argument(help="Its new name, as given (merged if it exists).")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan only.")] = False,
    config: ConfigOpt = None,
    database_url: DatabaseOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Rename tag OLD to NEW (a merge when NEW exists); the next sync maps OLD to it too."""
    setup_logging(quiet or json_out, debug)
    with errors(debug):

        def make_plan(names: list[str]) -> Plan:
            return plan_rename(names, old, new)

        _change(config, database_url, "tags", make_plan, dry_run, json_out, quiet)


@app.command()
def merge(
    names: Annotated[list[str], typer.Argument(help="A [B...] INTO C", show_default=False)],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan only.")] = False,
    config: ConfigOpt = None,
    database_url: DatabaseOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Merge tags A, B... INTO C: their links move to C (created by renaming A if missing)."""
    sources, into = _split_into(names)
    setup_logging(quiet or json_out, debug)
    with errors(debug):

        def make_plan(existing: list[str]) -> Plan:
            return plan_merge(existing, sources, into)

        _change(config, database_url, "tags", make_plan, dry_run, json_out, quiet)


@app.command()
def drop(
    names: Annotated[list[str], typer.Argument(help="Tags to drop.", show_default=False)],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan only.")] = False,
    config: ConfigOpt = None,
    database_url: DatabaseOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Drop tags and their links; the next sync leaves them out too."""
    setup_logging(quiet or json_out, debug)
    with errors(debug):

        def make_plan(existing: list[str]) -> Plan:
            return plan_drop(existing, names)

        _change(config, database_url, "tags", make_plan, dry_run, json_out, quiet)


def _split_into(names: list[str]) -> tuple[list[str], str]:
    """`A B... INTO C` → ([A, B...], C); the last INTO (any case) is the keyword."""
    keyword = [i for i, name in enumerate(names) if name.upper() == "INTO"]
    if not keyword or keyword[-1] == 0 or keyword[-1] != len(names) - 2:
        raise typer.BadParameter("expected A [B...] INTO C", param_hint="NAMES")
    return names[: keyword[-1]], names[-1]


# -- shared -------------------------------------------------------------------------------------


def _change(
    config: Path | None,
    database_url: str | None,
    command: str,
    make_plan: Callable[[list[str]], Plan],
    dry_run: bool,
    json_out: bool,
    quiet: bool,
    job: JobOutcome | None = None,
) -> None:
    """Preview or apply one change to the vocabulary, and render it whatever the outcome."""
    settings = load_settings(config, database_url=database_url)
    if job is not None:
        job.database_url = settings.database_url
    engine = open_catalog(settings.database_url)
    try:
        if dry_run:
            with engine.connect() as conn:
                plan = make_plan(tag_names(conn))
            _render_plan(plan, json_out)
            return
        report = ChangeReport()
        try:
            run_vocabulary_change(engine, command, make_plan, report, settings.retention)
        finally:
            if job is not None:
                job.counts = report.run_counts()
            _render_report(report, json_out, quiet)
    finally:
        engine.dispose()


def _render_plan(plan: Plan, json_out: bool) -> None:
    if json_out:
        print_json({"status": "dry_run", **plan.as_dict()})
        return
    summary = plan.as_dict()
    title = (
        f"{len(plan.changes):,} changes: {summary['renamed']:,} renamed, "
        f"{summary['merged']:,} merged, {summary['dropped']:,} dropped (dry run: nothing written)"
    )
    table = Table("tag", "action", "new name", "why", title=title)
    for change in plan.changes:
        table.add_row(change.old, change.action, change.new or "", change.reason)
    stdout.print(table)
    for name, why in plan.skipped:
        stderr.print(f"left alone: {name!r}: {why}", highlight=False, soft_wrap=True)


def _render_report(report: ChangeReport, json_out: bool, quiet: bool) -> None:
    if json_out:
        print_json(report.as_dict())
        return
    if quiet or report.status != "ok":
        return
    c = report.counts
    stdout.print(
        f"{c.renamed:,} renamed, {c.merged:,} merged, {c.dropped:,} dropped; "
        f"{c.links_moved:,} links moved, {c.links_removed:,} removed",
        highlight=False,
    )
    for name, why in report.plan.skipped:
        stderr.print(f"left alone: {name!r}: {why}", highlight=False, soft_wrap=True)
