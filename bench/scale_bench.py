"""Benchmark of scale (issue 14): the sync against its COPY bound and a baseline commit, start-up,
a million items on both databases, and cooperating retag workers.

    python bench/scale_bench.py [--parts bound,startup,million,workers] [--baseline REV]
                                [--items 100000] [--million 1000000] [--repeat 3]

The baseline is another commit of this repository (default: the one before the scale work),
checked out into a temporary worktree and run by the same interpreter in the same run, so the
ratios compare like with like on a shared, noisy machine. Figures are medians.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import CpuMeter, machine, met, run_catalog, write_section
from retag_bench import forget_tagging
from sync_bench import (
    DEFAULT_PG,
    ROOT,
    TOKEN,
    FakeUrl,
    count_statements,
    database,
    fake_server,
)

from catalog.db.engine import create_catalog_engine
from catalog.db.migrate import upgrade
from catalog.db.models import metadata
from catalog.fakes.tagger import FakeTagger

HEADER = "## Scale: the sync near its bound, start-up, a million items, retag workers (issue 14)"
BASELINE = "eab2cfd"  # main before the scale work
CPU_FIGURES = ("wall_s", "cpu_s", "pg_cpu_s", "fake_cpu_s")  # per sync, besides duration_s
SKIP_TABLES = {"alembic_version", "run", "setting"}  # not the sync's rows


# -- the code under test and the baseline -------------------------------------------------------


@dataclass(frozen=True)
class Code:
    """A version of `catalog` to run: ours (this checkout) or a worktree of another commit."""

    name: str
    path: Path | None = None

    def env(self, **extra: str) -> dict[str, str]:
        env = {**os.environ, **extra}
        if self.path is not None:
            env["PYTHONPATH"] = str(self.path)
        return env

    @property
    def cwd(self) -> Path:
        """Where to start it: `python -m` puts the working directory first on sys.path, ahead
        of PYTHONPATH, so the baseline must start in its own checkout."""
        return self.path or Path(tempfile.gettempdir())


@contextlib.contextmanager
def baseline_worktree(rev: str) -> Iterator[Code]:
    """`rev` checked out beside this one; removed afterwards."""
    where = Path(tempfile.mkdtemp(prefix="catalog-baseline-"))
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), rev],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        yield Code(f"baseline {rev}", where)
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(where)],
            check=False, capture_output=True,
        )  # fmt: skip


def sync(code: Code, db_url: str, server_url: str) -> dict[str, Any]:
    """`catalog sync --json` of `code`: its summary, plus wall time and peak RSS."""
    env = code.env(
        CATALOG_DATABASE_URL=db_url, CATALOG_SERVER_URL=server_url, CATALOG_SERVER_TOKEN=TOKEN,
        CATALOG_SERVER_KIND="jellyfin",
    )  # fmt: skip
    run = run_catalog(["sync", "--json", "--quiet"], env, cwd=code.cwd)
    summary = json.loads(run.stdout)
    summary.update(wall_s=run.wall_s, peak_rss_mb=run.peak_rss_mb, cpu_s=run.cpu_s)
    return summary


def metered_sync(code: Code, db_url: str, server_url: FakeUrl) -> dict[str, Any]:
    """`sync`, with the CPU seconds that PostgreSQL and the fake server spent meanwhile: what
    the run needed of the machine's cores besides its own."""
    with CpuMeter(names=("postgres",), pids={"fake": server_url.pid}) as meter:
        summary = sync(code, db_url, server_url)
    summary.update(pg_cpu_s=meter.seconds("postgres"), fake_cpu_s=meter.seconds("fake"))
    return summary


# -- the COPY bound -----------------------------------------------------------------------------


def copy_bound(db_url: str, pg_admin: str, workdir: Path) -> float:
    """Seconds to COPY the rows a sync left in `db_url` into an empty migrated catalog: what
    the same rows cost PostgreSQL with no client work at all."""
    tables = [t.name for t in metadata.sorted_tables if t.name not in SKIP_TABLES]
    source = psycopg.connect(_dsn(db_url))
    dumps = {}
    for table in tables:
        with source.cursor().copy(f"COPY {table} TO STDOUT") as copy:
            dumps[table] = b"".join(bytes(chunk) for chunk in copy)
    source.close()
    with database("postgresql", pg_admin, workdir) as target_url:
        upgrade(create_catalog_engine(target_url))
        target = psycopg.connect(_dsn(target_url))
        target.execute(f"TRUNCATE {', '.join(tables)}")  # rows the migrations seed
        target.commit()
        started = time.perf_counter()
        for table in tables:
            with target.cursor().copy(f"COPY {table} FROM STDIN") as copy:
                copy.write(dumps[table])
        target.commit()
        elapsed = time.perf_counter() - started
        target.close()
    return elapsed


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def bench_bound(args: argparse.Namespace, ours: Code, base: Code) -> dict[str, Any]:
    """Initial and unchanged re-sync of `args.items` on PostgreSQL, ours and the baseline
    alternately, and the COPY bound of what ours wrote; for ours, the CPU seconds the sync,
    PostgreSQL and the fake server each spent (what the run asked of the cores)."""
    runs: dict[str, list[float]] = defaultdict(list)
    workdir = Path(args.workdir)
    with fake_server(args.items) as url:
        for _ in range(args.repeat):
            for code, prefix in ((ours, ""), (base, "base_")):
                with database("postgresql", args.postgres, workdir) as db_url:
                    first = metered_sync(code, db_url, url)
                    again = metered_sync(code, db_url, url)
                    assert first["libraries"][0]["inserted"] == args.items, first
                    assert again["libraries"][0]["unchanged"] == args.items, again
                    for pass_, summary in (("initial", first), ("resync", again)):
                        runs[f"{prefix}{pass_}"].append(summary["duration_s"])
                        for figure in CPU_FIGURES:
                            runs[f"{prefix}{pass_}_{figure}"].append(summary[figure])
                    if code is ours:
                        with CpuMeter(names=("postgres",)) as meter:
                            runs["bound"].append(copy_bound(db_url, args.postgres, workdir))
                        runs["bound_pg_cpu_s"].append(meter.seconds("postgres"))
    result: dict[str, Any] = {k: statistics.median(v) for k, v in runs.items()}
    result["runs"] = dict(runs)
    return result


# -- start-up -----------------------------------------------------------------------------------


def timed(cmd: list[str], code: Code, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True, cwd=code.cwd)
    return time.perf_counter() - started


def import_evidence(code: Code) -> dict[str, Any]:
    """`python -X importtime -m catalog --help`: the cumulative import time of the top-level
    modules that matter, in ms (absent: not imported at all)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "catalog", "--help"],
        env=code.env(), capture_output=True, text=True, check=True, cwd=code.cwd,
    )  # fmt: skip
    cumulative: dict[str, float] = {}
    for line in proc.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\s*)(\S+)", line)
        if match and match.group(3) not in cumulative:
            cumulative[match.group(3)] = int(match.group(1)) / 1000
    watched = ("catalog.cli", "sqlalchemy", "alembic", "httpx", "rich.table", "psycopg", "typer")
    return {name: cumulative.get(name) for name in watched}


def bench_startup(args: argparse.Namespace, ours: Code, base: Code) -> dict[str, Any]:
    """`catalog --help` and the first page of `catalog media list` (a 10,000-item SQLite
    catalog), alternating ours and the baseline."""
    workdir = Path(args.workdir)
    result: dict[str, Any] = {}
    with (
        fake_server(10_000) as url,
        database("sqlite", args.postgres, workdir) as ours_url,
        database("sqlite", args.postgres, workdir) as base_url,
    ):
        urls = {"ours": ours_url, "base": base_url}  # each at its own schema
        sync(ours, ours_url, url)
        sync(base, base_url, url)
        cases = {
            "help": [sys.executable, "-m", "catalog", "--help"],
            "first_page": [sys.executable, "-m", "catalog", "media", "list", "--limit", "20"],
        }
        for case, cmd in cases.items():
            times: dict[str, list[float]] = {"ours": [], "base": []}
            for _ in range(args.repeat * 5):
                for key, code in (("ours", ours), ("base", base)):
                    env = code.env(CATALOG_DATABASE_URL=urls[key])
                    times[key].append(timed(cmd, code, env))
            result[case] = {k: statistics.median(v) for k, v in times.items()}
    result["imports"] = {"ours": import_evidence(ours), "base": import_evidence(base)}
    return result


# -- a million items ----------------------------------------------------------------------------


@dataclass
class Progress:
    """(seconds since start, highest media id) samples of a sync, taken from another
    connection while it runs."""

    samples: list[tuple[float, int]] = field(default_factory=list)

    def step_seconds(self, step: int, total: int) -> list[float]:
        """Seconds each `step` items took, interpolated between samples."""
        crossings = [0.0]
        for mark in range(step, total + 1, step):
            crossings.append(self._time_at(mark))
        return [b - a for a, b in itertools.pairwise(crossings)]

    def _time_at(self, count: int) -> float:
        previous = (0.0, 0)
        for t, n in self.samples:
            if n >= count:
                t0, n0 = previous
                return t0 + (t - t0) * (count - n0) / max(n - n0, 1)
            previous = (t, n)
        return self.samples[-1][0]


def watch_inserts(db_url: str, progress: Progress, stop: threading.Event) -> None:
    """Sample max(media.id) (an index lookup, not a count) twice a second until `stop`."""
    engine = create_catalog_engine(db_url)
    started = time.perf_counter()
    while not stop.is_set():
        with contextlib.suppress(Exception), engine.connect() as conn:  # not migrated yet
            top = conn.exec_driver_sql("SELECT coalesce(max(id), 0) FROM media").scalar()
            progress.samples.append((time.perf_counter() - started, top))
        stop.wait(0.5)
    engine.dispose()


def million_sync(db_url: str, url: str, total: int) -> dict[str, Any]:
    progress, stop = Progress(), threading.Event()
    watcher = threading.Thread(target=watch_inserts, args=(db_url, progress, stop))
    watcher.start()
    try:
        summary = sync(Code("ours"), db_url, url)
    finally:
        stop.set()
        watcher.join()
    steps = progress.step_seconds(total // 10, total)
    return {
        "duration_s": summary["duration_s"], "peak_rss_mb": summary["peak_rss_mb"],
        "steps_s": steps, "inserted": summary["libraries"][0]["inserted"],
    }  # fmt: skip


def read_rss(db_url: str) -> dict[str, float]:
    """Peak RSS of `catalog media list --all` streamed to /dev/null, and of walking the whole
    retag selection (the command's own selection code, without calling a tagger)."""
    env = {**os.environ, "CATALOG_DATABASE_URL": db_url}
    with open(os.devnull, "wb") as sink:
        listing = run_catalog(["media", "list", "--all", "--format", "ndjson"], env, sink)
    walk = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--walk-overdue", db_url],
        env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    out, _ = walk.communicate()
    return {"media_list_mb": listing.peak_rss_mb, "selection_mb": float(out.split()[-1])}


def walk_overdue(db_url: str) -> None:
    """(In a child process.) Stream every overdue item the way `catalog retag` selects them;
    print how many and the process's peak RSS in MB."""
    from datetime import UTC, datetime

    from catalog.retag import Selection, iter_overdue

    engine = create_catalog_engine(db_url)
    count = sum(len(batch) for batch in iter_overdue(engine, Selection(), datetime.now(UTC)))
    status = Path("/proc/self/status").read_text()
    peak_kib = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))
    print(count, peak_kib / 1024)


def bench_million(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(args.workdir)
    results: dict[str, Any] = {}
    with fake_server(args.million) as big, fake_server(10_000) as small:
        for kind in args.databases.split(","):
            print(f"a million items on {kind} ...", file=sys.stderr, flush=True)
            with database(kind, args.postgres, workdir) as db_url:
                small_rss = sync(Code("ours"), db_url, small)["peak_rss_mb"]
                small_reads = read_rss(db_url)
            with database(kind, args.postgres, workdir) as db_url:
                row = million_sync(db_url, big, args.million)
                row["reads"] = read_rss(db_url)
            row.update(small_rss=small_rss, small_reads=small_reads)
            with database(kind, args.postgres, workdir) as db_url:
                row["statements_10k"] = _per_1000(*count_statements(db_url, small))
            with fake_server(100_000) as mid, database(kind, args.postgres, workdir) as db_url:
                row["statements_100k"] = _per_1000(*count_statements(db_url, mid))
            results[kind] = row
            print(json.dumps({kind: row}), file=sys.stderr, flush=True)
    return results


def _per_1000(statements: int, items: int) -> float:
    return statements / items * 1000


# -- retag workers ------------------------------------------------------------------------------


def run_workers(db_url: str, workers: int, rate: float, concurrency: int) -> dict[str, Any]:
    """`workers` retag processes started together on one PostgreSQL catalog against one fake
    tagger (50 ms a call): items/s over the wall time of the slowest, and what the tagger saw."""
    forget_tagging(db_url)
    with FakeTagger(latency_s=0.05) as tagger:
        env = {
            **os.environ, "CATALOG_DATABASE_URL": db_url, "CATALOG_TAGGER_URL": tagger.url,
            "CATALOG_RETAG_HEARTBEAT_S": "1", "CATALOG_RETAG_LEASE_S": "3",
        }  # fmt: skip
        cmd = [sys.executable, "-m", "catalog", "retag", "--json", "--quiet", "--rate",
               str(rate), "--concurrency", str(concurrency)]  # fmt: skip
        started = time.perf_counter()
        procs = [
            subprocess.Popen(
                cmd, env=env, stdout=subprocess.PIPE, text=True, cwd=tempfile.gettempdir()
            )
            for _ in range(workers)
        ]
        summaries = [json.loads(p.communicate()[0]) for p in procs]
        wall = time.perf_counter() - started
        answered = list(tagger.log.answered.values())
        tagged = sum(s["tagged"] for s in summaries)
        return {
            "items_per_s": tagged / wall, "tagged": tagged,
            "max_window": tagger.log.max_in_window(1.0), "max_in_flight": tagger.log.max_in_flight,
            "exactly_once": bool(answered) and set(answered) == {1},
            "by_worker": [s["tagged"] for s in summaries],
        }  # fmt: skip


def bench_workers(args: argparse.Namespace) -> dict[str, Any]:
    """N = 1, 2, 4 workers, with limits far above what one worker sends, then with a rate that
    binds."""
    results: dict[str, Any] = {"rows": []}
    with (
        fake_server(args.worker_items) as url,
        database("postgresql", args.postgres, Path(args.workdir)) as db_url,
    ):
        sync(Code("ours"), db_url, url)
        for rate, concurrency in ((5000.0, 256), (args.bound_rate, 256)):
            for workers in (1, 2, 4):
                row = run_workers(db_url, workers, rate, concurrency)
                row.update(workers=workers, rate=rate, burst=max(1, round(rate / 10)))
                results["rows"].append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    return results


# -- the report ---------------------------------------------------------------------------------


def render(results: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        HEADER,
        "",
        "Each part says the day and the machine it was measured on (parts are run one at a "
        f"time). The baseline is commit `{args.baseline}`, run by the same interpreter in the "
        "same run. Figures are medians of the runs each part names.",
        "",
    ]
    renderers = (
        ("bound", render_bound),
        ("startup", render_startup),
        ("million", render_million),
        ("workers", render_workers),
    )
    for part, render_part in renderers:
        if part in results:
            part_lines = render_part(results[part], args)
            if part in results.get("measured", {}):  # parts can be run on different days
                part_lines[0] += f", measured {results['measured'][part]}"
            if part in results.get("machines", {}):  # ... and on different machines
                part_lines[0] += f" on {results['machines'][part]}"
            if part in results.get("repeats", {}):  # ... and with more or fewer runs
                part_lines[0] += f"; medians of {results['repeats'][part]} runs"
            lines += part_lines
    lines += ["Reproduce: `python bench/scale_bench.py` (needs PostgreSQL).", ""]
    return "\n".join(lines)


def render_bound(r: dict[str, Any], args: argparse.Namespace) -> list[str]:
    ratio = r["initial"] / r["bound"]
    speedup = r["base_resync"] / r["resync"]
    n = args.items
    lines = [
        f"### The sync near its bound (PostgreSQL, {n:,} items, the fake Jellyfin on loopback)",
        "",
        "| | ours | baseline | bound |",
        "| --- | ---: | ---: | ---: |",
        f"| initial sync, s | {r['initial']:.1f} | {r['base_initial']:.1f} | "
        f"{r['bound']:.1f} (COPY of the same rows) |",
        f"| unchanged re-sync, items/s | {n / r['resync']:,.0f} | {n / r['base_resync']:,.0f} | |",
        "",
        f"- Initial sync within 1.5x of the COPY bound: {ratio:.2f}x ({met(ratio <= 1.5)}); "
        f"the baseline took {r['base_initial'] / r['bound']:.2f}x.",
        f"- Unchanged re-sync at least 4x the baseline: {speedup:.1f}x ({met(speedup >= 4)}).",
        "",
    ]
    if "initial_cpu_s" in r:
        lines += render_cores(r, args)
    return [*lines, f"- Every run (s): {json.dumps(r['runs'])}", ""]


def render_cores(r: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """What each pass asked of the cores: no schedule can finish before the busiest process
    is done, nor before all the CPU seconds fit on the machine's cores."""
    cores = os.cpu_count() or 1
    lines = [
        f"What each pass of ours asked of the {cores} cores (CPU seconds, medians; the sync's "
        "include its start-up, as its wall time does):",
        "",
        "| | wall | sync | PostgreSQL | fake server | floor on these cores |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for pass_, name in (("initial", "initial sync"), ("resync", "unchanged re-sync")):
        cpu = [r[f"{pass_}_{figure}"] for figure in ("cpu_s", "pg_cpu_s", "fake_cpu_s")]
        floor = max(cpu[0], sum(cpu) / cores)
        lines.append(
            f"| {name} | {r[f'{pass_}_wall_s']:.2f} | "
            + " | ".join(f"{c:.2f}" for c in cpu)
            + f" | {floor:.2f} |"
        )
    lines.append(f"| COPY bound | {r['bound']:.2f} | | {r['bound_pg_cpu_s']:.2f} | | |")
    return [*lines, ""]


def render_startup(r: dict[str, Any], args: argparse.Namespace) -> list[str]:
    lines = [
        "### Start-up (wall time of the whole process)",
        "",
        "| command | ours, ms | baseline, ms | ratio |",
        "| --- | ---: | ---: | ---: |",
    ]
    verdicts = []
    for case, label in (("help", "`catalog --help`"), ("first_page", "`catalog media list`")):
        ours, base = r[case]["ours"], r[case]["base"]
        lines.append(f"| {label} | {ours * 1000:.0f} | {base * 1000:.0f} | {ours / base:.2f} |")
        verdicts.append(f"- {label} in at most half: {ours / base:.2f} ({met(ours <= base / 2)})")
    lines += ["", *verdicts, "", "`python -X importtime -m catalog --help`, cumulative ms:", ""]
    lines += ["| module | ours | baseline |", "| --- | ---: | ---: |"]
    for name, base_ms in r["imports"]["base"].items():
        ours_ms = r["imports"]["ours"][name]
        lines.append(f"| {name} | {_ms(ours_ms)} | {_ms(base_ms)} |")
    return [*lines, ""]


def _ms(value: float | None) -> str:
    return "not imported" if value is None else f"{value:.0f}"


def render_million(r: dict[str, Any], args: argparse.Namespace) -> list[str]:
    step = args.million // 10
    lines = [
        f"### {args.million:,} items (one run per database)",
        "",
        f"Time per {step:,}-item step of the initial sync, sampled from another connection.",
        "",
        "| database | sync, s | steps, s (first .. last) | last / median step | peak RSS MB "
        "(10,000 items) | media list --all MB (10,000) | retag selection MB (10,000) | "
        "statements / 1,000 items at 10k, 100k |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    verdicts = []
    for kind, row in r.items():
        steps = row["steps_s"]
        flat = steps[-1] / statistics.median(steps)
        growth = row["peak_rss_mb"] / row["small_rss"] - 1
        reads, small = row["reads"], row["small_reads"]
        lines.append(
            f"| {kind} | {row['duration_s']:.0f} | {', '.join(f'{s:.1f}' for s in steps)} | "
            f"{flat:.2f} | {row['peak_rss_mb']:.0f} ({row['small_rss']:.0f}) | "
            f"{reads['media_list_mb']:.0f} ({small['media_list_mb']:.0f}) | "
            f"{reads['selection_mb']:.0f} ({small['selection_mb']:.0f}) | "
            f"{row['statements_10k']:.1f}, {row['statements_100k']:.1f} |"
        )
        verdicts.append(
            f"- {kind}: peak RSS within 15% of a 10,000-item sync: {growth:+.0%} "
            f"({met(growth <= 0.15)}); no step slower than linear (the last step within 1.5x "
            f"of the median): {steps[-1] / statistics.median(steps):.2f} "
            f"({met(steps[-1] <= 1.5 * statistics.median(steps))})"
        )
    return [*lines, "", *verdicts, ""]


def render_workers(r: dict[str, Any], args: argparse.Namespace) -> list[str]:
    lines = [
        f"### Retag workers on one PostgreSQL catalog ({r['rows'][0]['tagged']:,} overdue items, "
        "50 ms a call, one run each)",
        "",
        "| rate limit (burst) | workers | items/s | busiest second at the tagger | most in "
        "flight | each worker tagged | every item once |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for row in r["rows"]:
        lines.append(
            f"| {row['rate']:,.0f} ({row['burst']}) | {row['workers']} | "
            f"{row['items_per_s']:,.0f} | {row['max_window']} | {row['max_in_flight']} | "
            f"{', '.join(f'{n:,}' for n in row['by_worker'])} | {row['exactly_once']} |"
        )
    over = [row for row in r["rows"] if row["max_window"] > row["rate"] + row["burst"]]
    lines += [
        "",
        f"- The rate never exceeded at the tagger (rate + burst in any second): "
        f"{met(not over)}; every item called exactly once in every run: "
        f"{met(all(row['exactly_once'] for row in r['rows']))}.",
        "",
    ]
    return lines


# How many runs the medians of a part are of (the million and the workers run once, and say so).
REPEATS = {"bound": lambda args: args.repeat, "startup": lambda args: args.repeat * 5}


def keep(results: dict[str, Any], part: str, saved: Path, args: argparse.Namespace) -> None:
    """Save the figures with the day, the machine and the number of runs of `part`."""
    results.setdefault("measured", {})[part] = time.strftime("%Y-%m-%d")
    results.setdefault("machines", {})[part] = machine()
    if part in REPEATS:
        results.setdefault("repeats", {})[part] = REPEATS[part](args)
    saved.write_text(json.dumps(results, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="bound,startup,million,workers")
    parser.add_argument("--baseline", default=BASELINE, help="commit to compare with")
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--million", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--postgres", default=DEFAULT_PG, help="admin URL to create databases")
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    parser.add_argument("--workdir", default=tempfile.gettempdir())
    parser.add_argument("--worker-items", type=int, default=5_000)
    parser.add_argument("--bound-rate", type=float, default=300.0, help="a rate that binds")
    parser.add_argument(
        "--results",
        default=str(ROOT / "bench" / "scale-results.json"),
        help="figures of each part, kept (and committed) so that parts can be run one at a time",
    )
    parser.add_argument("--walk-overdue", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.walk_overdue:
        walk_overdue(args.walk_overdue)
        return
    parts, ours = args.parts.split(","), Code("ours")
    saved = Path(args.results)
    results = json.loads(saved.read_text()) if saved.exists() else {}
    with baseline_worktree(args.baseline) as base:
        for part, bench in (("bound", bench_bound), ("startup", bench_startup)):
            if part in parts:
                results[part] = bench(args, ours, base)
                keep(results, part, saved, args)
    for part, bench in (("million", bench_million), ("workers", bench_workers)):
        if part in parts:
            figures = bench(args)
            # the million part is per database, and `--databases` may name only some
            results[part] = {**results.get(part, {}), **figures} if part == "million" else figures
            keep(results, part, saved, args)
    section = render(results, args)
    write_section(Path(args.out), HEADER, section)
    print(section)


if __name__ == "__main__":
    main()
