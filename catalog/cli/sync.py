"""`catalog sync`, `catalog libraries` and `catalog demo`."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import platformdirs
import typer
from sqlalchemy import Engine

from catalog.aio import run_interruptible
from catalog.cli.common import (
    ConfigOpt,
    DatabaseOpt,
    DebugOpt,
    JsonOpt,
    QuietOpt,
    ServerOpt,
    error_line,
    errors,
    open_catalog,
    print_json,
    setup_logging,
    stderr,
    stdout,
)
from catalog.cli.jobs import JobOptions, JobRun, each_server, job_command, run_job
from catalog.cli.parsing import CatalogTyper, closed_set
from catalog.cli.tables import Kind, columns, count, moment, new_table, print_table, took
from catalog.config import APP_NAME, SERVER_KINDS, ServerConfig, Settings, load_settings
from catalog.db.engine import mask_url
from catalog.errors import CatalogError, CatalogMissing
from catalog.jobs import FAILURE, SIGINT_EXIT, SIGTERM_EXIT, JobReport, ServerRuns, exit_code_of
from catalog.reads.libraries import library_overview
from catalog.sources.connect import open_source
from catalog.sync import SyncOptions, SyncReport, forget_server, run_sync

log = logging.getLogger(__name__)
app = CatalogTyper()

LibraryOpt = Annotated[
    list[str] | None, typer.Option("--library", "-l", help="Sync only this library (repeatable).")
]
SinceLastOpt = Annotated[
    bool, typer.Option("--since-last", help="Only items saved since the last sync.")
]
PruneOpt = Annotated[bool, typer.Option("--prune", help="Delete items the server no longer lists.")]
MassDeleteOpt = Annotated[
    bool,
    typer.Option("--allow-mass-delete", help="Allow marking more than the configured share "
                 "(default 50%) of a library missing."),
]  # fmt: skip
PageSizeOpt = Annotated[int | None, typer.Option("--page-size", help="Items per server request.")]


@job_command(app)
def sync(
    job: JobOptions,
    library: LibraryOpt = None,
    since_last: SinceLastOpt = False,
    prune: PruneOpt = False,
    allow_mass_delete: MassDeleteOpt = False,
    chunk_size: Annotated[
        int | None, typer.Option("--chunk-size", help="Items per transaction (1 to 10000).")
    ] = None,
    page_size: PageSizeOpt = None,
    server: ServerOpt = None,
) -> None:
    """Sync the server's libraries into the catalog (full, or --since-last); with several
    servers configured and no --server, each of them in turn."""

    def recipe(run: JobRun) -> JobReport:
        run.observe(server=server)
        settings = run.settings(server=server, chunk_size=chunk_size, page_size=page_size)
        options = SyncOptions(
            tuple(library or ()), since_last, prune, allow_mass_delete,
            settings.sync.chunk_size, settings.sync.mass_delete_share,
        )  # fmt: skip
        return sync_configured(run, settings, server, options)

    run_job("sync", job, recipe, sync_table)


def sync_configured(
    run: JobRun, settings: Settings, server: str | None, options: SyncOptions
) -> JobReport:
    """The server named (or the only one): one sync; none named: every configured server's."""
    if server is None and len(settings.servers) > 1:
        return sync_servers(run, settings, options)
    target = settings.server()
    run.observe(server=target.name)
    return sync_job(run, settings, target, options)


def sync_job(
    run: JobRun, settings: Settings, server: ServerConfig, options: SyncOptions
) -> SyncReport:
    """One recorded sync of `server` into the configured catalog."""
    engine, progress = run.catalog(settings, create=True), run.progress()
    report = SyncReport(server=server.name)

    async def work() -> SyncReport:
        async with open_source(server, settings.sync, report.http) as source:
            return await run_sync(engine, source, server, options, progress, report,
                                  settings.retention)  # fmt: skip

    return run.job(report, work)


def sync_servers(run: JobRun, settings: Settings, options: SyncOptions) -> ServerRuns:
    """One recorded sync of each configured server in turn (see `each_server`)."""
    return each_server(
        run, settings, lambda server: sync_job(run, settings, server, options), SyncReport
    )


def sync_table(report: JobReport) -> None:
    if isinstance(report, ServerRuns):
        for each in report.servers:
            sync_table(each)
        return
    assert isinstance(report, SyncReport)
    if not report.libraries:
        return
    title = f"sync of {report.server!r}: {report.status} in {took(report.duration_s)}"
    table = new_table(title)
    counts = ("seen", "inserted", "updated", "unchanged", "skipped", "missing")
    columns(table, [("library", Kind.TEXT), *((name, Kind.NUMBER) for name in counts)])
    for lib in report.libraries:
        table.add_row(lib.name, *(count(getattr(lib, name)) for name in counts))
    print_table(table, stderr)


# -- libraries ----------------------------------------------------------------------------------


@app.command()
def libraries(
    server: ServerOpt = None,
    config: ConfigOpt = None,
    database_url: DatabaseOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """The server's libraries and what the catalog holds of each; with several servers
    configured and no --server, every server's."""
    setup_logging(True, debug)
    with errors(debug):
        settings = load_settings(config, database_url=database_url, server=server)
        several = server is None and len(settings.servers) > 1
        targets = list(settings.servers.values()) if several else [settings.server()]
        try:
            engine: Engine | None = open_catalog(settings.database_url)
        except CatalogMissing as exc:  # a new user lists the libraries before a first sync
            stderr.print(f"note: nothing synced yet; {exc}", markup=False, highlight=False)
            engine = None
        try:
            rows, failed = _libraries_of(engine, settings, targets, debug)
        finally:
            if engine is not None:
                engine.dispose()
    if json_out:
        where = {"servers": [t.name for t in targets]} if several else {"server": targets[0].name}
        print_json({**where, "libraries": rows})
    else:
        _libraries_table(rows, targets, several)
    if failed:
        raise typer.Exit(FAILURE)


def _libraries_of(
    engine: Engine | None, settings: Settings, targets: list[ServerConfig], debug: bool
) -> tuple[list[dict[str, Any]], bool]:
    """Each server's libraries as rows; a server that cannot be listed is one error line
    (with several servers, the others are still listed)."""
    rows: list[dict[str, Any]] = []
    failed = False
    for target in targets:

        async def fetch(target: ServerConfig = target) -> list:
            async with open_source(target, settings.sync) as source:
                return await source.libraries()

        try:
            found = run_interruptible(fetch)
        except CatalogError as exc:
            if len(targets) == 1 or exit_code_of(exc) in (SIGINT_EXIT, SIGTERM_EXIT):
                raise
            if debug:
                stderr.print_exception()
            error_line(f"server {target.name!r}: {exc}")
            failed = True
            continue
        held: dict[str, Any] = {}
        if engine is not None:
            with engine.connect() as conn:
                held = library_overview(conn, target.name)
        rows += [_library_row(target.name, lib, held.get(lib.external_id)) for lib in found]
    return rows, failed


LIBRARY_COLUMNS = (
    ("server", Kind.TEXT), ("name", Kind.TEXT), ("kind", Kind.LABEL), ("id", Kind.TEXT),
    ("items", Kind.NUMBER), ("missing", Kind.NUMBER), ("last sync", Kind.MOMENT),
)  # fmt: skip


def _libraries_table(
    rows: list[dict[str, Any]], targets: list[ServerConfig], several: bool
) -> None:
    first = targets[0]
    names = ", ".join(repr(t.name) for t in targets)
    table = new_table(
        f"libraries of {names}" if several else f"libraries of {first.name!r} ({first.url})"
    )
    columns(table, LIBRARY_COLUMNS if several else LIBRARY_COLUMNS[1:])
    for row in rows:
        cells = [
            row["name"], row["kind"] or "", row["id"], count(row["items"]), count(row["missing"]),
            moment(row["last_sync_at"], never="never"),
        ]  # fmt: skip
        table.add_row(*([row["server"], *cells] if several else cells))
    print_table(table, stdout)


def _library_row(server: str, lib: Any, held: dict[str, Any] | None) -> dict[str, Any]:
    held = held or {}
    return {
        "server": server,
        "name": lib.name,
        "kind": lib.kind,
        "id": lib.external_id,
        "items": held.get("items", 0),
        "missing": held.get("missing", 0),
        "last_sync_at": held.get("last_sync_at"),
    }


# -- demo ---------------------------------------------------------------------------------------

DEMO_TOKEN = "demo-token"
DEMO_SERVER = "demo"
ServerKind = closed_set("ServerKind", SERVER_KINDS)


@app.command()
def demo(
    items: Annotated[int, typer.Option("--items", min=1, help="Items in the demo server.")] = 2000,
    kind: Annotated[
        ServerKind, typer.Option("--kind", help="The server to fake.")
    ] = ServerKind.jellyfin,
    database_url: DatabaseOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Start the bundled fake server on 127.0.0.1 and sync it into a demo catalog of its own
    (what an earlier demo left there is replaced)."""
    url = database_url or f"sqlite:///{platformdirs.user_data_path(APP_NAME) / 'demo.db'}"
    fake_server = _demo_server(items, kind.value)

    def recipe(run: JobRun) -> SyncReport:
        fake = run.enter(fake_server)
        server = ServerConfig(name=DEMO_SERVER, url=fake.url, kind=kind.value, token=DEMO_TOKEN)
        settings = Settings(database_url=url, servers={DEMO_SERVER: server})
        # The demo server's items are the demo's own: another size or kind replaces them
        # (a sync would refuse to mark most of them missing), other servers' stay.
        with run.catalog(settings, create=True).begin() as conn:
            forget_server(conn, DEMO_SERVER)
        return sync_job(run, settings, server, SyncOptions())

    options = JobOptions(database_url=url, json_out=json_out, quiet=quiet, debug=debug)
    run_job("sync", options, recipe, lambda report: _demo_table(report, url), observed=False)


def _demo_server(items: int, kind: str) -> Any:
    """The fake server of `catalog demo`: three fifths movies, the rest episodes. Its modules
    are imported here, so that `catalog sync` of a real server does not load them."""
    from catalog.fakes.media_server import FakeLibrary, FakeMediaServer
    from catalog.fakes.plex_server import FakePlexServer

    movies = max(items * 3 // 5, 1)
    libraries = [FakeLibrary("Movies", "movies", movies)]
    if items > movies:
        libraries.append(FakeLibrary("TV Shows", "tvshows", items - movies))
    if kind == "plex":
        return FakePlexServer(libraries, token=DEMO_TOKEN)
    return FakeMediaServer(libraries, kind=kind, token=DEMO_TOKEN)


def _demo_table(report: SyncReport, url: str) -> None:
    sync_table(report)
    stderr.print(f"demo catalog: {mask_url(url)}", highlight=False)


# -- db -----------------------------------------------------------------------------------------
