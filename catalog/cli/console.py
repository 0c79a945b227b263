"""Where the command line writes: the consoles, and the one-line error every failure becomes.
Light on purpose: the root command and the usage-error path need it before any command loads."""

from __future__ import annotations

import logging

import typer
from rich.console import Console

from catalog.logs import REDACTOR, JsonFormatter

log = logging.getLogger("catalog")

stderr = Console(stderr=True)
stdout = Console(soft_wrap=True)


def logs_are_json() -> bool:
    """Whether setup_logging chose JSON lines (summaries then go out as log records too)."""
    return any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers)


def error_line(message: str) -> None:
    """One unwrapped line, so cron mail and log scrapers see the whole message; under JSON
    logs, one JSON line like every other."""
    if logs_are_json():
        log.error(message)
        return
    prefix = typer.style("error:", fg="red") if stderr.is_terminal else "error:"
    typer.echo(f"{prefix} {REDACTOR(message)}", err=True)
