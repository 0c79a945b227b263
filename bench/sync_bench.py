"""Benchmark of `catalog sync` (issue 2): the real command against the fake server on loopback,
on SQLite and PostgreSQL, with the naive per-item baseline measured in the same run.

    python bench/sync_bench.py [--items 100000] [--repeat 3] [--postgres URL] [--out BENCHMARKS.md]

Figures are medians over --repeat runs; the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent))
from naive_baseline import write_naively
from report import machine, run_catalog, write_section

from catalog.config import ServerConfig, SyncConfig
from catalog.db.engine import create_catalog_engine
from catalog.db.migrate import upgrade
from catalog.items import MediaItem
from catalog.progress import QuietProgress
from catalog.sources.connect import open_source
from catalog.sync import SyncOptions, SyncReport, register_library, register_server, run_sync

TOKEN = "bench-token"
FAKES = {"jellyfin": "media_server", "plex": "plex_server"}
HEADER = "## `catalog sync` (issue 2)"
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG = os.environ.get(
    "CATALOG_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


# -- the fake server, in a process of its own ---------------------------------------------------


class FakeUrl(str):
    """The fake server's URL, which also names its process (`pid`), for CPU accounting."""

    pid: int


@contextmanager
def fake_server(items: int, server: str = "jellyfin"):
    """A fake Jellyfin (or Plex) serving one library of `items` items shaped as the issue asks,
    kept encoded in memory and warmed up, so that what we time is the client."""
    module = FAKES[server]
    cmd = [
        sys.executable, "-m", f"catalog.fakes.{module}", "--items", str(items),
        "--tags", "5", "--genres", "3", "--taglines", "1", "--overview-chars", "300",
        "--token", TOKEN, "--cache-items", str(items + 1000),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        url = FakeUrl(proc.stdout.readline().split()[1])
        url.pid = proc.pid
        asyncio.run(_read_all(url, keep=0, server=server))  # warm the fake's cache
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


async def _read_all(url: str, keep: int, server: str = "jellyfin") -> list[MediaItem]:
    """Read the whole library; keep the first `keep` items."""
    server = ServerConfig("bench", url, kind=server, token=TOKEN)
    items: list[MediaItem] = []
    async with open_source(server, SyncConfig(page_size=1000)) as source:
        library = (await source.libraries())[0]
        async for page in source.pages(library):
            parsed = (source.parse(raw) for raw in page.items[: keep - len(items)])
            items.extend(i for i in parsed if isinstance(i, MediaItem))
    return items


# -- databases ----------------------------------------------------------------------------------


@contextmanager
def database(kind: str, pg_admin: str, workdir: Path):
    """A fresh catalog database URL of `kind`, dropped afterwards."""
    if kind == "sqlite":
        path = workdir / f"bench-{uuid.uuid4().hex[:8]}.db"
        yield f"sqlite:///{path}"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    admin = create_engine(pg_admin, isolation_level="AUTOCOMMIT")
    name = f"catalog_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(pg_admin).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# -- measurements -------------------------------------------------------------------------------


@dataclass
class CommandRun:
    wall_s: float
    sync_s: float
    peak_rss_mb: float
    summary: dict[str, Any]


def run_command(db_url: str, server_url: str, server: str = "jellyfin") -> CommandRun:
    """`catalog sync --json` as a user runs it: process wall time, the sync's own duration
    (what it reports), and the process's peak RSS."""
    env = {
        **os.environ, "CATALOG_DATABASE_URL": db_url, "CATALOG_SERVER_URL": server_url,
        "CATALOG_SERVER_TOKEN": TOKEN, "CATALOG_SERVER_KIND": server,
    }  # fmt: skip
    run = run_catalog(["sync", "--json", "--quiet"], env)
    summary = json.loads(run.stdout)
    return CommandRun(run.wall_s, summary["duration_s"], run.peak_rss_mb, summary)


def count_statements(db_url: str, server_url: str, kind: str = "jellyfin") -> tuple[int, int]:
    """(statements, items) for one initial sync, counted on the engine, COPYs included (the
    writer notes those on the connection, and they are summed as connections go back)."""
    engine = create_catalog_engine(db_url)
    upgrade(engine)
    counted = {"statements": 0}

    def on_execute(*_args: Any) -> None:
        counted["statements"] += 1

    def on_checkin(_dbapi: Any, record: Any) -> None:
        counted["statements"] += record.info.pop("copies", 0)

    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine.pool, "checkin", on_checkin)
    server = ServerConfig("default", server_url, kind=kind, token=TOKEN)

    async def go() -> SyncReport:
        async with open_source(server, SyncConfig()) as source:
            return await run_sync(
                engine, source, server, SyncOptions(), QuietProgress(), SyncReport("default")
            )

    report = asyncio.run(go())
    engine.dispose()
    return counted["statements"], report.libraries[0].seen


def naive_rate(db_url: str, items: list[MediaItem]) -> float:
    engine = create_catalog_engine(db_url)
    upgrade(engine)
    with engine.begin() as conn:
        server_id = register_server(conn, ServerConfig("naive", "http://x", token=""))
        from catalog.items import Library

        library_id, _ = register_library(conn, server_id, Library("lib", "Naive", "movies"))
    started = time.perf_counter()
    write_naively(engine, library_id, items)
    rate = len(items) / (time.perf_counter() - started)
    engine.dispose()
    return rate


# -- the run ------------------------------------------------------------------------------------


def bench_database(
    kind: str, args: argparse.Namespace, urls: dict[str, str], slice_: list, server: str
) -> dict:
    """One row: `kind` of database fed by the fake `server`. The naive baseline is measured
    only when `slice_` is given (it does not depend on the server)."""
    workdir = Path(args.workdir)
    runs: dict[str, list[float]] = {
        k: [] for k in ("initial", "resync", "initial_wall", "resync_wall", "rss_big", "rss_small")
    }
    for _ in range(args.repeat):
        with database(kind, args.postgres, workdir) as db_url:
            first = run_command(db_url, urls["big"], server)
            again = run_command(db_url, urls["big"], server)
        assert first.summary["libraries"][0]["inserted"] == args.items, first.summary
        assert again.summary["libraries"][0]["unchanged"] == args.items, again.summary
        runs["initial"].append(args.items / first.sync_s)
        runs["resync"].append(args.items / again.sync_s)
        runs["initial_wall"].append(args.items / first.wall_s)
        runs["resync_wall"].append(args.items / again.wall_s)
        runs["rss_big"].append(first.peak_rss_mb)
        with database(kind, args.postgres, workdir) as db_url:
            runs["rss_small"].append(run_command(db_url, urls["small"], server).peak_rss_mb)
    with database(kind, args.postgres, workdir) as db_url:
        statements, seen = count_statements(db_url, urls["small"], server)
    result: dict[str, Any] = {k: statistics.median(v) for k, v in runs.items()}
    if slice_:
        naive = []
        for _ in range(args.repeat):
            with database(kind, args.postgres, workdir) as db_url:
                naive.append(naive_rate(db_url, slice_))
        result["naive"] = statistics.median(naive)
        assert result["naive"] > 0 and len(slice_) == args.slice, "the naive baseline wrote nothing"
    result["statements_per_1000"] = statements / seen * 1000
    result["runs"] = runs
    return result


def render(results: dict[str, dict], args: argparse.Namespace) -> str:
    rows = [
        f"| {kind} | {r['initial']:,.0f} ({r['initial_wall']:,.0f}) | "
        f"{r['resync']:,.0f} ({r['resync_wall']:,.0f}) | {r['naive']:,.0f} | "
        f"{r['initial'] / r['naive']:.0f}x | {r['rss_small']:.0f} | {r['rss_big']:.0f} | "
        f"{(r['rss_big'] / r['rss_small'] - 1) * 100:+.0f}% | {r['statements_per_1000']:.1f} |"
        for kind, r in results.items()
    ]
    spread = "; ".join(
        f"{kind}: initial {', '.join(f'{v:,.0f}' for v in r['runs']['initial'])}, "
        f"re-sync {', '.join(f'{v:,.0f}' for v in r['runs']['resync'])}"
        for kind, r in results.items()
    )
    lines = [
        HEADER,
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {machine()}; PostgreSQL 15 on the same "
        f"machine. {args.items:,} items (5 tags, 3 genres, 1 tagline, ~300-character overview) "
        "served by the fake Jellyfin server (rows marked plex: the fake Plex server) in its own "
        "process on 127.0.0.1, read by the real "
        "`catalog sync` command (page 500, chunk 1,000). Medians of "
        f"{args.repeat} runs. Throughput is items over the duration the command reports (from "
        "taking the lock to recording the run); in brackets, over the wall time of the whole "
        "process, interpreter start-up and imports included. The naive baseline is the "
        "predecessor's pattern (one transaction per item, a statement per tag and genre row) "
        f"on the same schema, on a {args.slice:,}-item slice, in the same run. Peak RSS is the "
        "`catalog` process's VmHWM. Statements are counted on the engine (COPYs included) "
        f"over a {args.small:,}-item initial sync.",
        "",
        "| database | initial items/s | unchanged re-sync items/s | naive items/s | initial vs "
        f"naive | peak RSS MB, {args.small:,} items | peak RSS MB, {args.items:,} items | RSS "
        "growth | statements / 1,000 items |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        *targets(results),
        "",
        f"Every run (items/s): {spread}.",
        "",
        "Reproduce: `python bench/sync_bench.py` "
        "(needs PostgreSQL at `CATALOG_TEST_POSTGRES_URL`).",
        "",
    ]
    return "\n".join(lines)


TARGETS = (  # (database, figure, at least, label) from issue 2
    ("postgresql", "initial", 8_000, "PostgreSQL initial >= 8,000 items/s"),
    ("postgresql", "resync", 30_000, "PostgreSQL unchanged re-sync >= 30,000 items/s"),
    ("sqlite", "initial", 15_000, "SQLite initial >= 15,000 items/s"),
)


def targets(results: dict[str, dict]) -> list[str]:
    """One line per target of the issues: the figure and whether it was met."""
    lines = ["Targets:"]
    for label, r in results.items():
        database, _, server = label.partition(", ")
        if server and database in results:  # issue 12: Plex within 20% of Jellyfin
            ratio = r["initial"] / results[database]["initial"]
            lines.append(
                f"- {label} initial within 20% of the Jellyfin row: {ratio:.0%} "
                f"({'met' if ratio >= 0.8 else 'missed'})"
            )
    for kind, key, floor, label in TARGETS:
        if kind in results:
            value = results[kind][key]
            lines.append(f"- {label}: {value:,.0f} ({'met' if value >= floor else 'missed'})")
    for kind, r in results.items():
        ratio = r["initial"] / r["naive"]
        lines.append(
            f"- {kind} >= 15x the naive baseline: {ratio:.0f}x "
            f"({'met' if ratio >= 15 else 'missed'})"
        )
        growth = r["rss_big"] / r["rss_small"] - 1
        ok = r["rss_big"] <= 150 and growth <= 0.15
        lines.append(
            f"- {kind} peak RSS <= 150 MB and within 15%: {r['rss_big']:.0f} MB, "
            f"{growth:+.0%} ({'met' if ok else 'missed'})"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--slice", type=int, default=3_000, help="items for the naive baseline")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--postgres", default=DEFAULT_PG, help="admin URL to create databases")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--servers", default="jellyfin,plex", help="fake servers to read from")
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    parser.add_argument("--workdir", default=tempfile.gettempdir())
    args = parser.parse_args()
    results: dict[str, dict] = {}
    for server in args.servers.split(","):
        with fake_server(args.items, server) as big, fake_server(args.small, server) as small:
            urls = {"big": big, "small": small}
            slice_ = asyncio.run(_read_all(small, keep=args.slice, server=server))
            for kind in args.databases.split(","):
                label = kind if server == "jellyfin" else f"{kind}, {server}"
                print(f"benchmarking {label} ...", file=sys.stderr, flush=True)
                baseline = results.get(kind)  # the naive baseline does not depend on the server
                results[label] = bench_database(
                    kind, args, urls, [] if baseline else slice_, server
                )
                if baseline:
                    results[label]["naive"] = baseline["naive"]
                print(json.dumps({label: results[label]}, indent=1), file=sys.stderr)
    section = render(results, args)
    write_section(Path(args.out), HEADER, section)
    print(section)


if __name__ == "__main__":
    main()
