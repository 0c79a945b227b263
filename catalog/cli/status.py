"""`catalog status`: the last runs from the run table, for people and for scripts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

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
from catalog.ops import job_items
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
    """The last runs, newest first: command, server, start, duration, status, items, error."""
    setup_logging(True, debug)
    with errors(debug), catalog_connection(config, database_url) as conn:
        runs = [run_row(run) for run in recent_runs(conn, limit, tuple(j.value for j in job or ()))]
    if json_out:
        print_json({"runs": runs})
    else:
        _render(runs)


def run_row(run: dict[str, Any]) -> dict[str, Any]:
    """One run as `catalog status --json` shows it."""
    started, finished = run["started_at"], run["finished_at"]
    duration = (finished - started).total_seconds() if finished else None
    return {
        "id": run["id"],
        "command": run["command"],
        "server": run["server"],
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat() if finished else None,
        "duration_s": round(duration, 3) if duration is not None else None,
        "status": run["status"],
        "items": job_items(run["counts"]),
        "counts": run["counts"],
        "error": run["error"],
    }


def _render(runs: list[dict[str, Any]]) -> None:
    if not runs:
        stdout.print("no runs recorded yet")
        return
    table = Table(title="last runs")
    for column in ("id", "command", "server", "started", "duration", "status"):
        table.add_column(column, justify="right" if column in ("id", "duration") else "left")
    for column in ("seen", "written", "failed"):
        table.add_column(column, justify="right")
    table.add_column("error", overflow="fold")
    for run in runs:
        started = datetime.fromisoformat(run["started_at"]).astimezone()
        duration = f"{run['duration_s']:.1f} s" if run["duration_s"] is not None else "-"
        items = run["items"]
        table.add_row(
            str(run["id"]), run["command"], run["server"] or "-",
            started.strftime("%Y-%m-%d %H:%M:%S"), duration, run["status"],
            f"{items['seen']:,}", f"{items['written']:,}", f"{items['failed']:,}",
            run["error"] or "",
        )  # fmt: skip
    # Piped, rich would squeeze the table into 80 columns; a log line may be longer.
    console = stdout if stdout.is_terminal else Console(width=160, soft_wrap=True)
    console.print(table)
