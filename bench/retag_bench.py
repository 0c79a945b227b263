"""Benchmark of `catalog retag` (issue 3): the real command against the fake tagger, with the
predecessor's single-worker throttler measured in the same run.

    python bench/retag_bench.py [--repeat 3] [--items 2000] [--out BENCHMARKS.md]

1. Throughput: `--items` overdue items, tagger latency 100 ms, rate 100/s, concurrency 32.
   Ideal: min(rate, concurrency / latency). The fake records arrivals, so the busiest
   1-second window and the most calls in flight are what the server saw.
2. Faults: the same with 10% 503s and 2% 429s (Retry-After 1 s): exactly-once and throughput.
3. Selection: 100,000 items on PostgreSQL, half overdue: time to stream the overdue set and
   the statements issued.

Figures are medians over --repeat runs; the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

# Run as `python bench/retag_bench.py`: its own folder is on sys.path.
from report import machine, met, write_section
from sqlalchemy import text
from sync_bench import TOKEN, database, fake_server

from catalog.db.engine import create_catalog_engine, recorded_statements
from catalog.fakes.tagger import FakeTagger, TaggerFaults
from catalog.retag import Selection, iter_overdue

ROOT = Path(__file__).resolve().parent.parent
HEADER = "## `catalog retag` (issue 3)"
DEFAULT_PG = os.environ.get(
    "CATALOG_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
LATENCY_S, RATE, CONCURRENCY = 0.1, 100.0, 32
BURST = max(1, round(RATE / 10))  # the default burst: a tenth of a second's worth
FAULTS = TaggerFaults(unavailable=0.10, rate_limited=0.02, retry_after_s=1.0)


# -- catalogs -----------------------------------------------------------------------------------


def sync_catalog(db_url: str, items: int) -> None:
    """Fill the catalog with `items` items the real way: `catalog sync` from the fake server."""
    with fake_server(items) as url:
        env = {**os.environ, "CATALOG_DATABASE_URL": db_url, "CATALOG_SERVER_URL": url,
               "CATALOG_SERVER_TOKEN": TOKEN}  # fmt: skip
        subprocess.run([sys.executable, "-m", "catalog", "sync", "-q"], env=env, check=True)


def forget_tagging(db_url: str) -> None:
    """Make every item overdue again, as before the first retag."""
    engine = create_catalog_engine(db_url)
    with engine.begin() as conn:
        for statement in (
            "DELETE FROM process_run",
            "DELETE FROM media_tag WHERE origin = 'tagger'",
            "DELETE FROM media_tagline WHERE origin = 'tagger'",
        ):
            conn.execute(text(statement))
    engine.dispose()


# -- the command --------------------------------------------------------------------------------


def run_retag(db_url: str, faults: TaggerFaults | None) -> dict[str, Any]:
    forget_tagging(db_url)
    with FakeTagger(latency_s=LATENCY_S, faults=faults or TaggerFaults()) as tagger:
        env = {**os.environ, "CATALOG_DATABASE_URL": db_url, "CATALOG_TAGGER_URL": tagger.url}
        cmd = [sys.executable, "-m", "catalog", "retag", "--json", "--rate", str(RATE),
               "--concurrency", str(CONCURRENCY)]  # fmt: skip
        start = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"retag failed ({done.returncode}): {done.stderr}")
        summary = json.loads(done.stdout)
        log = tagger.log
        answered = list(log.answered.values())
        return {
            "wall_s": wall,
            "run_s": summary["duration_s"],
            "items_per_s": summary["tagged"] / summary["duration_s"],
            "tagged": summary["tagged"],
            "retries": summary["retries"],
            "rate_limited": summary["rate_limited"],
            "requests": len(log.arrivals),
            "max_window": log.max_in_window(1.0),
            "max_in_flight": log.max_in_flight,
            "exactly_once": bool(answered) and set(answered) == {1},
        }


def median_run(db_url: str, faults: TaggerFaults | None, repeat: int) -> dict[str, Any]:
    runs = [run_retag(db_url, faults) for _ in range(repeat)]
    best = sorted(runs, key=lambda r: r["items_per_s"])[len(runs) // 2]
    return {
        **best,
        "items_per_s_all": [round(r["items_per_s"], 1) for r in runs],
        "max_window": max(r["max_window"] for r in runs),
        "max_in_flight": max(r["max_in_flight"] for r in runs),
        "exactly_once": all(r["exactly_once"] for r in runs),
    }


# -- the predecessor ----------------------------------------------------------------------------


def predecessor(db_url: str, items: int) -> float:
    """One worker, one call at a time, sleeping to the rate; each item's last tagging read
    with its own query and its result written in its own transaction. Items per second."""
    forget_tagging(db_url)
    engine = create_catalog_engine(db_url)
    with FakeTagger(latency_s=LATENCY_S) as tagger, httpx.Client(base_url=tagger.url) as http:
        with engine.connect() as conn:
            query = text("SELECT id, name FROM media ORDER BY id LIMIT :n")
            media = conn.execute(query, {"n": items}).all()
        start = time.perf_counter()
        for media_id, name in media:
            began = time.perf_counter()
            with engine.begin() as conn:
                last = conn.execute(
                    text("SELECT last_run_at FROM process_run WHERE media_id = :m"), {"m": media_id}
                ).scalar()
            if last is None:
                answer = http.post("/tags", json={"media": {"id": str(media_id), "title": name}})
                with engine.begin() as conn:
                    conn.execute(
                        text("INSERT INTO process_run (media_id, process, last_run_at, status) "
                             "VALUES (:m, 'tagging', :t, :s)"),
                        {"m": media_id, "t": datetime.now(UTC), "s": str(answer.status_code)},
                    )  # fmt: skip
            time.sleep(max(0.0, 1 / RATE - (time.perf_counter() - began)))
        elapsed = time.perf_counter() - start
    engine.dispose()
    return len(media) / elapsed


# -- selection ----------------------------------------------------------------------------------


def half_tagged(db_url: str) -> None:
    """Every even item tagged a day ago: the odd half is overdue."""
    engine = create_catalog_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM process_run"))
        conn.execute(
            text("INSERT INTO process_run (media_id, process, last_run_at, last_success_at, "
                 "input_hash, status) SELECT id, 'tagging', :t, :t, content_hash, 'ok' "
                 "FROM media WHERE id % 2 = 0"),
            {"t": datetime.now(UTC).replace(microsecond=0)},
        )  # fmt: skip
        if engine.dialect.name == "postgresql":
            conn.execute(text("ANALYZE"))
    engine.dispose()


def selection(db_url: str, repeat: int) -> dict[str, Any]:
    half_tagged(db_url)
    engine = create_catalog_engine(db_url)
    times, selected, statements = [], 0, 0
    for _ in range(repeat):
        with recorded_statements(engine) as seen:
            start = time.perf_counter()
            selected = sum(len(b) for b in iter_overdue(engine, Selection(), datetime.now(UTC)))
            times.append(time.perf_counter() - start)
        statements = len(seen)
    engine.dispose()
    return {"seconds": statistics.median(times), "selected": selected, "statements": statements}


# -- report -------------------------------------------------------------------------------------


def render(r: dict[str, Any], args: argparse.Namespace) -> str:
    ideal = min(RATE, CONCURRENCY / LATENCY_S)
    clean, faulty, sel = r["clean"], r["faulty"], r["selection"]
    ratio = faulty["items_per_s"] / clean["items_per_s"]
    # While a Retry-After pause holds every worker, nothing is sent: each 429 costs its
    # Retry-After in wall time. The ceiling that leaves, given the 429s the run saw:
    ceiling = args.items / (args.items / ideal + faulty["rate_limited"] * FAULTS.retry_after_s)
    lines = [
        HEADER, "",
        f"Machine: {machine()}; figures are medians of {args.repeat} runs.",
        f"`python bench/retag_bench.py --items {args.items} --repeat {args.repeat}`. The real "
        "command (`catalog retag --json`) in a subprocess against the fake tagger "
        f"(`catalog/fakes/tagger.py`) on loopback, latency {LATENCY_S * 1000:.0f} ms, "
        f"--rate {RATE:.0f} --concurrency {CONCURRENCY} (burst {BURST}); the catalog "
        f"({args.items:,} items) is a SQLite file filled by `catalog sync` from the fake "
        "media server. Items/s are over the run's own duration (start-up excluded).",
        "",
        "| scenario | items/s (median) | vs ideal | busiest 1 s at the server | most in flight | "
        "retries | 429s | exactly once |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        _row("fault-free", clean, ideal),
        _row("10% 503, 2% 429 (Retry-After 1 s)", faulty, ideal),
        f"| predecessor: one worker, sleeping to the rate ({args.baseline_items} items) | "
        f"{r['baseline']:.1f} | {r['baseline'] / ideal:.0%} | | 1 | | | |",
        "",
        f"- Ideal: min(rate, concurrency / latency) = {ideal:.0f} items/s. Fault-free: "
        f"{clean['items_per_s']:.1f} items/s = {clean['items_per_s'] / ideal:.1%} of ideal "
        f"(target ≥ 95%: {met(clean['items_per_s'] >= 0.95 * ideal)}); runs "
        f"{clean['items_per_s_all']}; wall time with start-up {clean['wall_s']:.1f} s.",
        f"- Busiest 1-second window at the fake: {max(clean['max_window'], faulty['max_window'])}"
        f" requests (target ≤ rate + burst = {RATE + BURST:.0f}: "
        f"{met(max(clean['max_window'], faulty['max_window']) <= RATE + BURST)}); most calls "
        f"in flight {max(clean['max_in_flight'], faulty['max_in_flight'])} (cap {CONCURRENCY}).",
        f"- {clean['items_per_s'] / r['baseline']:.0f} times the predecessor's single worker "
        f"({r['baseline']:.1f} items/s, bound by one call's latency).",
        f"- With faults: every item tagged exactly once: {met(faulty['exactly_once'])}; "
        f"{faulty['items_per_s']:.1f} items/s = {ratio:.0%} of fault-free (target ≥ 80%: "
        f"{met(ratio >= 0.8)}). Each of the run's {faulty['rate_limited']} 429s pauses every "
        "worker for its Retry-After, as the issue requires, and nothing is sent meanwhile: "
        f"counted in full, those pauses cap the run at {ceiling:.1f} items/s "
        f"({ceiling / clean['items_per_s']:.0%} of fault-free); it does "
        f"{'better' if faulty['items_per_s'] > ceiling else 'about that'} because 429s that "
        "arrive during one pause share it. At 2% 429s and 100 calls/s a 1-second pause falls "
        "due every half second of work, so ≥ 80% is out of reach for any client that honours "
        "Retry-After for all workers; the 503s (no Retry-After) cost only their retries.",
        f"- Selection on PostgreSQL: {sel['selected']:,} overdue of {2 * sel['selected']:,} "
        f"items streamed in {sel['seconds']:.2f} s ({sel['selected'] / sel['seconds']:,.0f} "
        f"items/s) with {sel['statements']} statements (target ≤ 1 + items/1,000 = "
        f"{1 + sel['selected'] // 1000}: {met(sel['statements'] <= 1 + sel['selected'] / 1000)})"
        ". Each batch of 1,000 is one statement that also brings the items' genres and tags.",
        "",
    ]  # fmt: skip
    return "\n".join(lines)


def _row(name: str, r: dict[str, Any], ideal: float) -> str:
    return (
        f"| {name} | {r['items_per_s']:.1f} | {r['items_per_s'] / ideal:.0%} | {r['max_window']} "
        f"| {r['max_in_flight']} | {r['retries']} | {r['rate_limited']} | "
        f"{'yes' if r['exactly_once'] else 'NO'} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--baseline-items", type=int, default=200)
    parser.add_argument("--selection-items", type=int, default=100_000)
    parser.add_argument("--postgres", default=DEFAULT_PG, help="admin URL to create databases")
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    args = parser.parse_args()
    workdir = Path(tempfile.gettempdir())
    results: dict[str, Any] = {}
    with database("sqlite", args.postgres, workdir) as url:
        sync_catalog(url, args.items)
        results["clean"] = median_run(url, None, args.repeat)
        print("fault-free", results["clean"], flush=True)
        results["faulty"] = median_run(url, FAULTS, args.repeat)
        print("faults", results["faulty"], flush=True)
        results["baseline"] = predecessor(url, args.baseline_items)
        print("predecessor", results["baseline"], flush=True)
    with database("postgresql", args.postgres, workdir) as url:
        sync_catalog(url, args.selection_items)
        results["selection"] = selection(url, args.repeat)
        print("selection", results["selection"], flush=True)
    section = render(results, args)
    write_section(Path(args.out), HEADER, section)
    print(section)


if __name__ == "__main__":
    main()
