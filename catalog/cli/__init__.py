"""The `catalog` command: parse options, build dependencies, call one catalog function, render.

Each command group lives in a module of its own; this one assembles the app.
"""

from __future__ import annotations

from typing import Annotated

import typer

from catalog import __version__
from catalog.cli import db, push, retag, schedule, status, sync, tags
from catalog.cli.common import EXIT_CODES_HELP, stdout
from catalog.cli.parsing import CatalogTyper

app = CatalogTyper(
    help=f"Keep a SQL catalog of a Jellyfin or Emby server's libraries.\n\n{EXIT_CODES_HELP}",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
# sync, libraries and demo are top-level commands, defined in their own module.
app.registered_commands += sync.app.registered_commands
app.add_typer(db.app, name="db")
# media commands (issue 5) are registered below this line
from catalog.cli import media  # noqa: E402  (kept beside its registration)

app.add_typer(media.app, name="media")
# tags commands (issue 4) are registered below this line
app.add_typer(tags.app, name="tags")
# retag (issue 3) is a top-level command
app.registered_commands += retag.app.registered_commands
# push (issue 13) is a top-level command
app.registered_commands += push.app.registered_commands
# schedule and status commands (issue 6)
app.add_typer(schedule.app, name="schedule")
app.registered_commands += status.app.registered_commands


def main() -> None:
    """Console-script entry point."""
    app()


def _version(value: bool) -> None:
    if value:
        stdout.print(f"catalog {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Keep a SQL catalog of a Jellyfin or Emby server's libraries."""
