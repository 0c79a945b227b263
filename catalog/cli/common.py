"""Plumbing every command shares: options, logging, one-line errors, settings, the catalog.

Exit codes: the table in catalog.jobs (EXIT_CODES), the one place they are decided.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy import Connection, Engine

from catalog.cli.console import error_line, logs_are_json, stderr, stdout
from catalog.config import load_settings
from catalog.db.engine import connect_catalog
from catalog.db.migrate import ensure_current
from catalog.errors import CatalogError
from catalog.jobs import SIGINT_EXIT, exit_code_of, exit_codes_help
from catalog.logs import JsonFormatter, RedactingFormatter
from catalog.timefmt import iso_utc

__all__ = ["error_line", "logs_are_json", "stderr", "stdout"]  # re-exported for the commands

EXIT_CODES_HELP = exit_codes_help()
log = logging.getLogger("catalog")

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", help="TOML config file (default: $CATALOG_CONFIG, then the user "
                 "config directory).", show_default=False),
]  # fmt: skip
DatabaseOpt = Annotated[
    str | None,
    typer.Option("--database-url", help="Catalog database URL (default: $CATALOG_DATABASE_URL, "
                 "then a SQLite file in the user data directory).", show_default=False),
]  # fmt: skip
ServerOpt = Annotated[
    str | None,
    typer.Option(
        "--server", help="The configured server to use: NAME of its \\[servers.NAME] table."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")]


class LogFormat(StrEnum):
    text = "text"
    json = "json"


LogFormatOpt = Annotated[
    LogFormat,
    typer.Option("--log-format", envvar="CATALOG_LOG_FORMAT", help="Log lines on stderr: text "
                 "(rich on a terminal), or json (one object per line, for log collectors)."),
]  # fmt: skip
MetricsFileOpt = Annotated[
    Path | None,
    typer.Option("--metrics-file", envvar="CATALOG_METRICS_FILE", show_default=False,
                 help="Write Prometheus metrics of this run to this file (for node_exporter's "
                 "textfile collector; atomic; other jobs' metrics in the file are kept)."),
]  # fmt: skip
HealthcheckOpt = Annotated[
    str | None,
    typer.Option("--healthcheck-url", envvar="CATALOG_HEALTHCHECK_URL", show_default=False,
                 help="Ping this URL when the run succeeds, URL/fail when it fails "
                 "(healthchecks.io style; {job} becomes the job name). Never fails the run."),
]  # fmt: skip


def setup_logging(quiet: bool, debug: bool, log_format: str = LogFormat.text) -> None:
    """One handler on stderr, its output redacted (see catalog.logs)."""
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    if log_format == LogFormat.json:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
    elif stderr.is_terminal:
        from rich.logging import RichHandler  # rich only for a terminal (see cli.console)

        handler = RichHandler(console=stderr.console, show_path=False)
        handler.setFormatter(RedactingFormatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs full request URLs at INFO; alembic narrates every migration step.
    for noisy in ("httpx", "httpcore", "alembic"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if debug else logging.WARNING)


@contextmanager
def errors(debug: bool) -> Iterator[None]:
    """Turn errors into one line on stderr and the documented exit code."""
    try:
        yield
    except CatalogError as exc:
        if debug:
            stderr.print_exception()
        error_line(str(exc))
        raise typer.Exit(exit_code_of(exc)) from None
    except KeyboardInterrupt:
        error_line("interrupted")
        raise typer.Exit(SIGINT_EXIT) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:
        if debug:
            raise
        reason = str(exc).splitlines()[0] if str(exc) else ""
        error_line(
            f"unexpected {type(exc).__name__}: {reason} (run with --debug for the traceback)"
        )
        raise typer.Exit(exit_code_of(exc)) from None


def open_catalog(url: str, create: bool = False) -> Engine:
    """An engine on a reachable catalog at the latest schema (`create`: see connect_catalog)."""
    engine = connect_catalog(url, create)
    ensure_current(engine)
    return engine


@contextmanager
def catalog_connection(config: Path | None, database_url: str | None) -> Iterator[Connection]:
    """A connection to the configured catalog, for a command that only reads it."""
    engine = open_catalog(load_settings(config, database_url=database_url).database_url)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def print_json(data: Any) -> None:
    """One JSON document on stdout; moments in it written by iso_utc, days as YYYY-MM-DD."""
    sys.stdout.write(json.dumps(data, default=json_value, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def json_value(value: Any) -> Any:
    """What JSON holds for a value it has no type for."""
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)
