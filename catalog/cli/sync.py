"""`catalog sync`, `catalog libraries` and `catalog demo`."""

from __future__ import annotations

import logging
from contextlib import nullcontext
from typing import Annotated, Any

import platformdirs
import typer
from rich.table import Table

from catalog.aio import run_interruptible
from catalog.cli.common import (
    ConfigOpt,
    DatabaseOpt,
    DebugOpt,
    HealthcheckOpt,
    JsonOpt,
    LogFormat,
    LogFormatOpt,
    MetricsFileOpt,
    QuietOpt,
    ServerOpt,
    errors,
    logs_are_json,
    open_catalog,
    print_json,
    setup_logging,
    stderr,
    stdout,
)
from catalog.config import APP_NAME, SERVER_KINDS, ServerConfig, Settings, load_settings
from catalog.db.engine import mask_url
from catalog.errors import CatalogError
from catalog.fakes.media_server import FakeLibrary, FakeMediaServer
from catalog.fakes.plex_server import FakePlexServer
from catalog.ops import JobOutcome, observed_job
from catalog.progress import LogReporter, QuietReporter, RichReporter
from catalog.queries import library_overview
from catalog.runs import FAILED, PARTIAL
from catalog.sources.connect import open_source
from catalog.sync import SyncOptions, SyncReport, run_sync

log = logging.getLogger(__name__)
app = typer.Typer()


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
        int | None, typer.Option("--chunk-size", help="Items per transaction (1 to 10000).")
    ] = None,
    page_size: Annotated[
        int | None, typer.Option("--page-size", help="Items per server request.")
    ] = None,
    server: ServerOpt = None,
    config: ConfigOpt = None,
    database_url: DatabaseOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    log_format: LogFormatOpt = LogFormat.text,
    metrics_file: MetricsFileOpt = None,
    healthcheck_url: HealthcheckOpt = None,
) -> None:
    """Sync the server's libraries into the catalog (full, or --since-last)."""
    setup_logging(quiet or json_out, debug, log_format)
    observe = observed_job(
        "sync", server, metrics_file=metrics_file, healthcheck_url=healthcheck_url
    )
    with errors(debug), observe as job:
        settings = load_settings(
            config, database_url=database_url, server=server,
            chunk_size=chunk_size, page_size=page_size,
        )  # fmt: skip
        target = settings.server()
        job.server, job.database_url = target.name, settings.database_url
        options = SyncOptions(
            libraries=tuple(library or ()),
            since_last=since_last,
            prune=prune,
            allow_mass_delete=allow_mass_delete,
            chunk_size=settings.sync.chunk_size,
            mass_delete_share=settings.sync.mass_delete_share,
        )
        job.exit_code = _run_sync(settings, target, options, json_out, quiet, job)
    raise typer.Exit(job.exit_code)


def _run_sync(
    settings: Settings,
    server: ServerConfig,
    options: SyncOptions,
    json_out: bool,
    quiet: bool,
    observed: JobOutcome | None = None,
) -> int:
    """Run one sync and render its summary, whatever the outcome."""
    engine = open_catalog(settings.database_url)
    report = SyncReport(server=server.name)
    bar = not (quiet or json_out) and stderr.is_terminal
    reporter = RichReporter(stderr) if bar else QuietReporter() if quiet else LogReporter()

    async def job() -> SyncReport:
        async with open_source(server, settings.sync, report.http) as source:
            return await run_sync(
                engine, source, server, options, reporter, report, settings.retention
            )

    try:
        with reporter if isinstance(reporter, RichReporter) else nullcontext():
            run_interruptible(job)
    finally:
        if observed is not None:
            observed.counts = report.run_counts()
        _render_sync(report, json_out, quiet)
        engine.dispose()
    if report.status == FAILED:  # a library failed without stopping the others
        raise CatalogError(report.error or "sync failed")
    return 3 if report.status == PARTIAL else 0


def _render_sync(report: SyncReport, json_out: bool, quiet: bool) -> None:
    if json_out:
        print_json(report.as_dict())
        return
    if (quiet and report.status == "ok") or not report.libraries:
        return
    if logs_are_json():  # a table would be the only non-JSON lines on stderr
        log.info(
            "sync of %r: %s", report.server, report.status, extra={"summary": report.as_dict()}
        )
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
    setup_logging(True, debug)
    with errors(debug):
        settings = load_settings(config, database_url=database_url, server=server)
        target = settings.server()
        engine = open_catalog(settings.database_url)

        async def fetch() -> list:
            async with open_source(target, settings.sync) as source:
                return await source.libraries()

        found = run_interruptible(fetch)
        with engine.connect() as conn:
            held = library_overview(conn, target.name)
        rows = [_library_row(lib, held.get(lib.external_id)) for lib in found]
    if json_out:
        print_json({"server": target.name, "libraries": rows})
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
    kind: Annotated[
        str, typer.Option("--kind", help="The server to fake: jellyfin, emby or plex.")
    ] = "jellyfin",
    database_url: DatabaseOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Start the bundled fake server on 127.0.0.1 and sync it into a demo catalog of its own."""
    setup_logging(quiet or json_out, debug)
    url = database_url or f"sqlite:///{platformdirs.user_data_path(APP_NAME) / 'demo.db'}"
    movies = max(items * 3 // 5, 1)
    libraries = [FakeLibrary("Movies", "movies", movies)]
    if items > movies:
        libraries.append(FakeLibrary("TV Shows", "tvshows", items - movies))
    if kind not in SERVER_KINDS:
        raise typer.BadParameter(f"must be one of {', '.join(SERVER_KINDS)}", param_hint="--kind")
    fake_server = (
        FakePlexServer(libraries, token=DEMO_TOKEN)
        if kind == "plex"
        else FakeMediaServer(libraries, kind=kind, token=DEMO_TOKEN)
    )
    with errors(debug), fake_server as fake:
        server = ServerConfig(name="demo", url=fake.url, kind=kind, token=DEMO_TOKEN)
        settings = Settings(database_url=url, servers={"demo": server})
        code = _run_sync(settings, server, SyncOptions(), json_out, quiet)
    if not (json_out or quiet):
        stderr.print(f"demo catalog: {mask_url(url)}", highlight=False)
    raise typer.Exit(code)


# -- db -----------------------------------------------------------------------------------------
