"""`catalog db`: migrations and integrity checks."""

from __future__ import annotations

from typing import Annotated

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
    stderr,
    stdout,
)
from catalog.cli.parsing import CatalogTyper
from catalog.config import load_settings
from catalog.db.engine import connect_catalog, mask_url
from catalog.db.integrity import orphan_counts
from catalog.db.migrate import current_revision, head_revision, is_newer, upgrade
from catalog.jobs import FAILURE, SUCCESS

app = CatalogTyper(help="The catalog database: migrations and integrity.", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
    config: ConfigOpt = None,
    database_url: DatabaseOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Migrate the catalog database to the latest schema (or to REVISION)."""
    setup_logging(False, debug)
    with errors(debug):
        url = load_settings(config, database_url=database_url).database_url
        engine = connect_catalog(url, create=True)
        upgrade(engine, revision)
        stdout.print(f"{mask_url(engine.url)} is at revision {current_revision(engine)}")


@app.command("current")
def db_current(
    config: ConfigOpt = None,
    database_url: DatabaseOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Show the catalog's schema revision and the latest one."""
    with errors(debug):
        engine = connect_catalog(load_settings(config, database_url=database_url).database_url)
        current, head = current_revision(engine), head_revision()
        state = (
            "up to date" if current == head
            else "newer than this program: upgrade catalog itself" if is_newer(current)
            else "behind: run `catalog db upgrade`"
        )  # fmt: skip
        stdout.print(
            f"{mask_url(engine.url)}: revision {current or 'none'} (latest {head}, {state})"
        )


@app.command("check")
def db_check(
    config: ConfigOpt = None,
    database_url: DatabaseOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Check what the schema cannot enforce: no link row points at a missing item, tag or genre."""
    with errors(debug), catalog_connection(config, database_url) as conn:
        counts = orphan_counts(conn)
    bad = {k: v for k, v in counts.items() if v}
    if json_out:
        print_json({"status": "failed" if bad else "ok", "orphans": counts})
    elif bad:
        for where, count in bad.items():
            stderr.print(f"[red]orphans:[/red] {count} rows of {where}")
    else:
        stdout.print("ok: no orphaned links")
    raise typer.Exit(FAILURE if bad else SUCCESS)
