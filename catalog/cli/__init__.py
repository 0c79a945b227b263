"""The `catalog` command: parse options, build dependencies, call one catalog function, render.

Each command group lives in a module of its own; this one assembles the app.
"""

from __future__ import annotations

import gc
from typing import Annotated

import typer

from catalog import __version__
from catalog.cli.console import stdout
from catalog.cli.lazy import RootGroup
from catalog.cli.parsing import CatalogTyper
from catalog.jobs import exit_codes_help

app = CatalogTyper(
    cls=RootGroup,
    help=f"Keep a SQL catalog of a Jellyfin or Emby server's libraries.\n\n{exit_codes_help()}",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    finally:
        # The process ends here. What a command imports (SQLAlchemy above all) is hundreds of
        # thousands of objects, and the collections the interpreter runs as it exits would
        # walk them all to free memory the process is about to hand back: a sixth of the wall
        # time of a page of `catalog media list`. Frozen, the collector leaves them alone.
        gc.freeze()


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
