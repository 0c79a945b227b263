"""`catalog status`: the last runs from the run table, for people and for scripts."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from catalog.cli.common import (
    ConfigOpt,
    DatabaseOpt,
    DebugOpt,
    JsonOpt,
    catalog_connection,
    errors,
    print_json,
    setup_logging,
    stdout,
)
from catalog.cli.parsing import CatalogTyper, closed_set
from catalog.cli.tables import Kind, columns, count, moment, new_table, print_table, took
from catalog.ops import job_items
from catalog.reads.libraries import server_count
from catalog.reads.runs import recent_runs
from catalog.runs import COMMANDS

app = CatalogTyper()
RunCommand = closed_set("RunCommand", COMMANDS)


@app.command()
def status(
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many runs.")] = 20,
    job: Annotated[
        list[RunCommand] | None,
        typer.Option("--job", help="Only runs of this command (repeatable)."),
    ] = None,
    config: ConfigOpt = None,
    database_url: DatabaseOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """The last runs, newest first: command (and server), start, duration, status, items;
    then their errors."""
    setup_logging(True, debug)
    with errors(debug), catalog_connection(config, database_url) as conn:
        runs = [run_row(run) for run in recent_runs(conn, limit, tuple(j.value for j in job or ()))]
        several = not json_out and server_count(conn) > 1
    if json_out:
        print_json({"runs": runs})
    else:
        _render(runs, several)


def run_row(run: dict[str, Any]) -> dict[str, Any]:
    """One run as `catalog status --json` shows it (print_json writes the moments)."""
    started, finished = run["started_at"], run["finished_at"]
    duration = (finished - started).total_seconds() if finished else None
    return {
        "id": run["id"],
        "command": run["command"],
        "server": run["server"],
        "started_at": started,
        "finished_at": finished,
        "duration_s": round(duration, 3) if duration is not None else None,
        "status": run["status"],
        "items": job_items(run["counts"]),
        "counts": run["counts"],
        "error": run["error"],
    }


def _render(runs: list[dict[str, Any]], several_servers: bool) -> None:
    """The runs as a table; their errors below it, whole. The job names its server when the
    catalog has several (a column of its own would not leave the counts room in 80 columns)."""
    if not runs:
        stdout.print("no runs recorded yet")
        return
    table = new_table("last runs")
    columns(table, [("job", Kind.TEXT), ("started", Kind.MOMENT), ("took", Kind.NUMBER),
                    ("status", Kind.LABEL), ("seen", Kind.NUMBER), ("written", Kind.NUMBER),
                    ("failed", Kind.NUMBER)])  # fmt: skip
    for run in runs:
        items = run["items"]
        table.add_row(
            _job(run, several_servers), moment(run["started_at"]), took(run["duration_s"]),
            run["status"], count(items["seen"]), count(items["written"]), count(items["failed"]),
        )  # fmt: skip
    print_table(table, stdout)
    for run in runs:
        if run["error"]:
            where = f"{_job(run, several_servers)} at {moment(run['started_at'])}"
            stdout.print(f"{where}: {run['error']}", highlight=False, markup=False)


def _job(run: dict[str, Any], several_servers: bool) -> str:
    server = run["server"] if several_servers else None
    return f"{run['command']} {server}" if server else run["command"]
