"""The `catalog` command: parse options, build dependencies, call one catalog function, render.

Exit codes: 0 success, 1 failure, 2 usage or config error, 3 partial (some items skipped or
failed), 75 another run holds the job's lock, 130/143 interrupted by SIGINT/SIGTERM.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import platformdirs
import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table
from sqlalchemy import Engine

from catalog import __version__
from catalog.aio import run_interruptible
from catalog.config import APP_NAME, ServerConfig, Settings, load_settings
from catalog.db.engine import check_connection, create_catalog_engine, mask_url
from catalog.db.integrity import orphan_counts
from catalog.db.migrate import current_revision, ensure_current, head_revision, upgrade
from catalog.errors import CatalogError
from catalog.fakes.media_server import FakeLibrary, FakeMediaServer
from catalog.progress import LogReporter, QuietReporter, RichReporter
from catalog.queries import library_overview
from catalog.runs import FAILED, PARTIAL
from catalog.sources.connect import open_source
from catalog.sync import SyncOptions, SyncReport, run_sync

EXIT_CODES_HELP = (
    "Exit codes: 0 success, 1 failure, 2 usage or config error, 3 partial (some items skipped), "
    "75 another run holds the lock, 130/143 interrupted."
)
app = typer.Typer(
    help=f"Keep a SQL catalog of a Jellyfin or Emby server's libraries.\n\n{EXIT_CODES_HELP}",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The catalog database: migrations and integrity.", no_args_is_help=True)
app.add_typer(db_app, name="db")

stderr = Console(stderr=True)
stdout = Console(soft_wrap=True)

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
    str | None, typer.Option("--server", help="Which configured server ([servers.NAME]).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")]


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


# -- plumbing -----------------------------------------------------------------------------------


def _setup_logging(quiet: bool, debug: bool) -> None:
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    if stderr.is_terminal:
        handler: logging.Handler = RichHandler(console=stderr, show_path=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs full request URLs at INFO; alembic narrates every migration step.
    for noisy in ("httpx", "httpcore", "alembic"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if debug else logging.WARNING)


@contextmanager
def _errors(debug: bool) -> Iterator[None]:
    """Turn errors into one line on stderr and the documented exit code."""
    try:
        yield
    except CatalogError as exc:
        if debug:
            stderr.print_exception()
        _error_line(str(exc))
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        _error_line("interrupted")
        raise typer.Exit(130) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:
        if debug:
            raise
        reason = str(exc).splitlines()[0] if str(exc) else ""
        _error_line(
            f"unexpected {type(exc).__name__}: {reason} (run with --debug for the traceback)"
        )
        raise typer.Exit(1) from None


def _error_line(message: str) -> None:
    """One unwrapped line, so cron mail and log scrapers see the whole message."""
    prefix = typer.style("error:", fg="red") if stderr.is_terminal else "error:"
    typer.echo(f"{prefix} {message}", err=True)


def _settings(config: Path | None, **overrides: Any) -> Settings:
    return load_settings(config, **overrides)


def _open_catalog(url: str) -> Engine:
    """An engine on a reachable catalog at the latest schema."""
    engine = create_catalog_engine(url)
    check_connection(engine)
    ensure_current(engine)
    return engine


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, default=str, ensure_ascii=False) + "\n")
    sys.stdout.flush()


# -- sync ---------------------------------------------------------------------------------------


@app.command()
def sync(
    library: Annotated[
        list[str] | None,
        typer.Option("--library", "-l", help="Sync only this library (repeatable)."),
    ] = None,
    since_last: Annotated[
        bool, typer.Option("--since-last", help="Only items saved since the last sync.")
    ] = False,
    prune: Annotated[
        bool, typer.Option("--prune", help="Delete items the server no longer lists.")
    ] = False,
    allow_mass_delete: Annotated[
        bool,
        typer.Option(
            "--allow-mass-delete",
            help="Allow marking more than the configured share (default 50%) of a library missing.",
        ),
    ] = False,
    chunk_size: Annotated[
        int | None, typer.Option("--chunk-size", min=1, max=10_000, help="Items per transaction.")
    ] = None,
    page_size: Annotated[
        int | None, typer.Option("--page-size", min=1, help="Items per server request.")
    ] = None,
    server: ServerOpt = None,
    config: ConfigOpt = None,
    database_url: DatabaseOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Sync the server's libraries into the catalog (full, or --since-last)."""
    _setup_logging(quiet or json_out, debug)
    with _errors(debug):
        settings = _settings(
            config, database_url=database_url, server=server,
            chunk_size=chunk_size, page_size=page_size,
        )  # fmt: skip
        options = SyncOptions(
            libraries=tuple(library or ()),
            since_last=since_last,
            prune=prune,
            allow_mass_delete=allow_mass_delete,
            chunk_size=settings.sync.chunk_size,
            mass_delete_share=settings.sync.mass_delete_share,
        )
        code = _run_sync(settings, settings.server(), options, json_out, quiet)
    raise typer.Exit(code)


def _run_sync(
    settings: Settings, server: ServerConfig, options: SyncOptions, json_out: bool, quiet: bool
) -> int:
    """Run one sync and render its summary, whatever the outcome."""
    engine = _open_catalog(settings.database_url)
    report = SyncReport(server=server.name)
    bar = not (quiet or json_out) and stderr.is_terminal
    reporter = RichReporter(stderr) if bar else QuietReporter() if quiet else LogReporter()

    async def job() -> SyncReport:
        async with open_source(server, settings.sync, report.http) as source:
            return await run_sync(
                engine, source, server, options, reporter, report, settings.keep_runs
            )

    try:
        if isinstance(reporter, RichReporter):
            with reporter:
                run_interruptible(job)
        else:
            run_interruptible(job)
    finally:
        _render_sync(report, json_out, quiet)
        engine.dispose()
    if report.status == FAILED:  # a library failed without stopping the others
        raise CatalogError(report.error or "sync failed")
    return 3 if report.status == PARTIAL else 0


def _render_sync(report: SyncReport, json_out: bool, quiet: bool) -> None:
    if json_out:
        _print_json(report.as_dict())
        return
    if (quiet and report.status == "ok") or not report.libraries:
        return
    table = Table(title=f"sync of {report.server!r}: {report.status} in {report.duration_s:.1f} s")
    columns = ("seen", "inserted", "updated", "unchanged", "skipped", "missing")
    table.add_column("library")
    for column in columns:
        table.add_column(column, justify="right")
    for lib in report.libraries:
        table.add_row(lib.name, *(f"{getattr(lib, c):,}" for c in columns))
    stderr.print(table)


# -- libraries ----------------------------------------------------------------------------------


@app.command()
def libraries(
    server: ServerOpt = None,
    config: ConfigOpt = None,
    database_url: DatabaseOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """The server's libraries and what the catalog holds of each."""
    _setup_logging(True, debug)
    with _errors(debug):
        settings = _settings(config, database_url=database_url, server=server)
        target = settings.server()
        engine = _open_catalog(settings.database_url)

        async def fetch() -> list:
            async with open_source(target, settings.sync) as source:
                return await source.libraries()

        found = run_interruptible(fetch)
        with engine.connect() as conn:
            held = library_overview(conn, target.name)
        rows = [_library_row(lib, held.get(lib.external_id)) for lib in found]
    if json_out:
        _print_json({"server": target.name, "libraries": rows})
        return
    table = Table(title=f"libraries of {target.name!r} ({target.url})")
    for column in ("name", "kind", "id", "items", "missing", "last sync"):
        table.add_column(column, justify="right" if column in ("items", "missing") else "left")
    for row in rows:
        last = row["last_sync_at"][:19] if row["last_sync_at"] else "never"
        table.add_row(
            row["name"], row["kind"] or "", row["id"], f"{row['items']:,}", f"{row['missing']:,}",
            last,
        )  # fmt: skip
    stdout.print(table)


def _library_row(lib: Any, held: dict[str, Any] | None) -> dict[str, Any]:
    held = held or {}
    last = held.get("last_sync_at")
    return {
        "name": lib.name,
        "kind": lib.kind,
        "id": lib.external_id,
        "items": held.get("items", 0),
        "missing": held.get("missing", 0),
        "last_sync_at": last.isoformat() if last else None,
    }


# -- demo ---------------------------------------------------------------------------------------

DEMO_TOKEN = "demo-token"


@app.command()
def demo(
    items: Annotated[int, typer.Option("--items", min=1, help="Items in the demo server.")] = 2000,
    database_url: DatabaseOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Start the bundled fake server on 127.0.0.1 and sync it into a demo catalog of its own."""
    _setup_logging(quiet or json_out, debug)
    url = database_url or f"sqlite:///{platformdirs.user_data_path(APP_NAME) / 'demo.db'}"
    movies = max(items * 3 // 5, 1)
    libraries = [FakeLibrary("Movies", "movies", movies)]
    if items > movies:
        libraries.append(FakeLibrary("TV Shows", "tvshows", items - movies))
    with _errors(debug), FakeMediaServer(libraries, token=DEMO_TOKEN) as fake:
        server = ServerConfig(name="demo", url=fake.url, token=DEMO_TOKEN)
        settings = Settings(database_url=url, servers={"demo": server})
        code = _run_sync(settings, server, SyncOptions(), json_out, quiet)
    if not (json_out or quiet):
        stderr.print(f"demo catalog: {mask_url(url)}", highlight=False)
    raise typer.Exit(code)


# -- db -----------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
    config: ConfigOpt = None,
    database_url: DatabaseOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Migrate the catalog database to the latest schema (or to REVISION)."""
    _setup_logging(False, debug)
    with _errors(debug):
        engine = create_catalog_engine(_settings(config, database_url=database_url).database_url)
        check_connection(engine)
        upgrade(engine, revision)
        stdout.print(f"{mask_url(engine.url)} is at revision {current_revision(engine)}")


@db_app.command("current")
def db_current(
    config: ConfigOpt = None,
    database_url: DatabaseOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Show the catalog's schema revision and the latest one."""
    with _errors(debug):
        engine = create_catalog_engine(_settings(config, database_url=database_url).database_url)
        check_connection(engine)
        current, head = current_revision(engine), head_revision()
        state = "up to date" if current == head else "behind: run `catalog db upgrade`"
        stdout.print(
            f"{mask_url(engine.url)}: revision {current or 'none'} (latest {head}, {state})"
        )


@db_app.command("check")
def db_check(
    config: ConfigOpt = None,
    database_url: DatabaseOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Check what the schema cannot enforce: no link row points at a missing item, tag or genre."""
    with _errors(debug):
        engine = _open_catalog(_settings(config, database_url=database_url).database_url)
        with engine.connect() as conn:
            counts = orphan_counts(conn)
    bad = {k: v for k, v in counts.items() if v}
    if json_out:
        _print_json({"status": "failed" if bad else "ok", "orphans": counts})
    elif bad:
        for where, count in bad.items():
            stderr.print(f"[red]orphans:[/red] {count} rows of {where}")
    else:
        stdout.print("ok: no orphaned links")
    raise typer.Exit(1 if bad else 0)
