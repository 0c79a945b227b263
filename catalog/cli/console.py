"""Where the command line writes: the consoles, and the one-line error every failure becomes.
Light on purpose: the root command and the usage-error path need it before any command loads.

The consoles are rich's, made when first used: importing rich costs `catalog media list` into a
pipe about as much as its queries, and such a run only asks whether it writes to a terminal.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Any, TextIO

import typer

from catalog.logs import REDACTOR, JsonFormatter

if TYPE_CHECKING:
    from rich.console import Console

log = logging.getLogger("catalog")

# What makes rich take a stream that is not a TTY for a terminal (https://force-color.org/).
TERMINAL_OVERRIDES = ("TTY_COMPATIBLE", "FORCE_COLOR")


class LazyConsole:
    """A rich Console on stdout or stderr, made on first use; every attribute is the Console's.
    `is_terminal` answers a plain no without rich: not a TTY and nothing in the environment to
    say otherwise (any other case is rich's to decide)."""

    def __init__(self, stderr: bool = False, **options: Any) -> None:
        self._stderr, self._options = stderr, options
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        """The Console itself, for what takes one (a log handler, a progress bar)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=self._stderr, **self._options)
        return self._console

    @property
    def is_terminal(self) -> bool:
        if not _may_be_terminal(sys.stderr if self._stderr else sys.stdout):
            return False
        return self.console.is_terminal

    def __getattr__(self, name: str) -> Any:
        return getattr(self.console, name)


def _may_be_terminal(stream: TextIO) -> bool:
    if any(name in os.environ for name in TERMINAL_OVERRIDES):
        return True
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed: rich says no as well
        return False


stderr = LazyConsole(stderr=True)
stdout = LazyConsole(soft_wrap=True)


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
