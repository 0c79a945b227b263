"""`catalog tags`: list the vocabulary; normalize, rename, merge and drop tags."""

from __future__ import annotations

import functools
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from catalog.cli.common import (
    ConfigOpt,
    DatabaseOpt,
    DebugOpt,
    catalog_connection,
    errors,
    print_json,
    setup_logging,
    stderr,
    stdout,
)
from catalog.cli.jobs import JobOptions, JobRun, job_command, run_job
from catalog.cli.output import Format, ItemWriter, next_page_hint
from catalog.cli.parsing import CatalogTyper
from catalog.cli.tables import Kind, columns, count, new_table, print_table
from catalog.reads.tags import BY_COUNT, BY_NAME, list_tags
from catalog.runs import DRY_RUN
from catalog.tags import (
    ChangeReport,
    Plan,
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

app = CatalogTyper(help="The tag vocabulary: list it, normalize it, rename, merge or drop tags.")


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
    table = new_table()
    columns(table, [("tag", Kind.TEXT), ("items", Kind.NUMBER)])
    for item in items:
        table.add_row(item["name"], count(item["count"]))
    print_table(table, stdout)
    if cursor:
        next_page_hint(cursor)


# -- normalize ----------------------------------------------------------------------------------


DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show the plan only.")]
PlanMaker = Callable[[list[str]], Plan]


NORMALIZE_HELP = """Clean every tag name, merging those that end up the same; then apply --rules.

    Cleaning: lower case; & + @ become and, plus, at; every run of other characters that are
    not letters or digits becomes one _, none at either end. All changes are applied in one
    transaction, and kept as aliases: the next sync maps the raw names a server still sends
    onto the clean tags."""


@job_command(app, help=NORMALIZE_HELP)
def normalize(
    job: JobOptions,
    rules: Annotated[
        Path | None, typer.Option("--rules", help=RULES_HELP, show_default=False)
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the plan (every change); write nothing.")
    ] = False,
) -> None:
    """Clean every tag name, then apply --rules (see NORMALIZE_HELP)."""

    def recipe(run: JobRun) -> ChangeReport | None:
        parsed = parse_rules(rules) if rules else {}
        return change_job(
            run, "normalize", lambda names: plan_normalization(names, parsed), dry_run
        )

    run_job("normalize", job, recipe, change_table, observed=not dry_run)


# -- rename, merge, drop ------------------------------------------------------------------------


@job_command(app)
def rename(
    job: JobOptions,
    old: Annotated[str, typer.Argument(help="The tag to rename.")],
    new: Annotated[str, typer.Argument(help="Its new name, as given (merged if it exists).")],
    dry_run: DryRunOpt = False,
) -> None:
    """Rename tag OLD to NEW (a merge when NEW exists); the next sync maps OLD to it too."""
    _by_hand(job, lambda names: plan_rename(names, old, new), dry_run)


@job_command(app)
def merge(
    job: JobOptions,
    names: Annotated[
        list[str],
        typer.Argument(
            metavar="A [B...] INTO C",
            help="Tags A, B..., the word INTO, then the tag C they become.",
            show_default=False,
        ),
    ],
    dry_run: DryRunOpt = False,
) -> None:
    """Merge tags A, B... INTO C: their links move to C (created by renaming A if missing)."""
    sources, into = _split_into(names)
    _by_hand(job, lambda existing: plan_merge(existing, sources, into), dry_run)


@job_command(app)
def drop(
    job: JobOptions,
    names: Annotated[
        list[str], typer.Argument(metavar="TAG...", help="Tags to drop.", show_default=False)
    ],
    dry_run: DryRunOpt = False,
) -> None:
    """Drop tags and their links; the next sync leaves them out too."""
    _by_hand(job, lambda existing: plan_drop(existing, names), dry_run)


def _by_hand(job: JobOptions, make_plan: PlanMaker, dry_run: bool) -> None:
    """A change to the vocabulary by hand: recorded as a `tags` run."""
    recipe = functools.partial(change_job, command="tags", make_plan=make_plan, dry_run=dry_run)
    run_job("tags", job, recipe, change_table, observed=not dry_run)


def _split_into(names: list[str]) -> tuple[list[str], str]:
    """`A B... INTO C` → ([A, B...], C); the last INTO (any case) is the keyword."""
    keyword = [i for i, name in enumerate(names) if name.upper() == "INTO"]
    if not keyword or keyword[-1] == 0 or keyword[-1] != len(names) - 2:
        raise typer.BadParameter("expected A [B...] INTO C", param_hint="the tags to merge")
    return names[: keyword[-1]], names[-1]


# -- shared -------------------------------------------------------------------------------------


def change_job(
    run: JobRun, command: str, make_plan: PlanMaker, dry_run: bool
) -> ChangeReport | None:
    """Preview (a dry run: the plan rendered, nothing recorded) or apply one recorded change."""
    settings = run.settings()
    engine = run.catalog(settings)
    if dry_run:
        with engine.connect() as conn:
            _render_plan(make_plan(tag_names(conn)), run.options.json_out)
        return None
    report = run.report = ChangeReport()
    return run_vocabulary_change(engine, command, make_plan, report, settings.retention)


def _render_plan(plan: Plan, json_out: bool) -> None:
    if json_out:
        print_json({"status": DRY_RUN, **plan.as_dict()})
        return
    summary = plan.as_dict()
    title = (
        f"{len(plan.changes):,} changes: {summary['renamed']:,} renamed, "
        f"{summary['merged']:,} merged, {summary['dropped']:,} dropped (dry run: nothing written)"
    )
    table = new_table(title)
    columns(table, [("tag", Kind.TEXT), ("action", Kind.LABEL), ("new name", Kind.TEXT),
                    ("why", Kind.TEXT)])  # fmt: skip
    for change in plan.changes:
        table.add_row(change.old, change.action, change.new or "", change.reason)
    print_table(table, stdout)
    for name, why in plan.skipped:
        stderr.print(f"left alone: {name!r}: {why}", highlight=False, soft_wrap=True)


def change_table(report: ChangeReport) -> None:
    if report.status != "ok":
        return
    c = report.counts
    stdout.print(
        f"{c.renamed:,} renamed, {c.merged:,} merged, {c.dropped:,} dropped; "
        f"{c.links_moved:,} links moved, {c.links_removed:,} removed",
        highlight=False,
    )
    for name, why in report.plan.skipped:
        stderr.print(f"left alone: {name!r}: {why}", highlight=False, soft_wrap=True)
