"""Benchmark of `catalog push` (issue 13): the real command against the fake Jellyfin server,
whose item reads and writes answer after a fixed latency.

    python bench/push_bench.py [--repeat 3] [--items 2000] [--out BENCHMARKS.md]

Each run: a fresh fake library of `--items` movies synced into a fresh SQLite catalog, every
item given three catalog (tagger) tags, then `catalog push --json --allow-many` at rate 50/s
and concurrency 16 against a server latency of 50 ms. On Jellyfin an item costs two calls, the
GET of the whole item and the POST of it; the rate limits calls, not items, so the ideal is
min(rate, concurrency / latency) calls per second and half that in items per second. The fake
records arrivals: the busiest 1-second window and the most calls in flight are what the server
saw. Figures are medians over --repeat runs; the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Run as `python bench/push_bench.py`: its own folder is on sys.path.
from report import machine, met, write_section
from sqlalchemy import text
from sync_bench import TOKEN, database

from catalog.db.engine import create_catalog_engine
from catalog.fakes.media_server import FakeLibrary, FakeMediaServer, Faults, ItemShape

ROOT = Path(__file__).resolve().parent.parent
HEADER = "## `catalog push` (issue 13)"
LATENCY_S, RATE, CONCURRENCY = 0.05, 50.0, 16
BURST = max(1, round(RATE / 10))  # the default burst: a tenth of a second's worth
CALLS_PER_ITEM = 2  # Jellyfin: GET /Items/{id}, POST /Items/{id}
CATALOG_TAGS = ("noir", "slow_burn", "found_family")


def give_every_item_tags(db_url: str) -> None:
    """Every item gets the same three tagger tags, in three statements."""
    engine = create_catalog_engine(db_url)
    with engine.begin() as conn:
        for name in CATALOG_TAGS:
            conn.execute(text("INSERT INTO tag (name) VALUES (:n)"), {"n": name})
        conn.execute(
            text("INSERT INTO media_tag (media_id, tag_id, origin) SELECT media.id, tag.id, "
                 "'tagger' FROM media CROSS JOIN tag WHERE tag.name IN (:a, :b, :c)"),
            dict(zip("abc", CATALOG_TAGS, strict=True)),
        )  # fmt: skip
    engine.dispose()


def one_run(items: int, workdir: Path) -> dict[str, Any]:
    library = [FakeLibrary("Movies", "movies", items)]
    shape = ItemShape(tags=5, genres=3, taglines=1, overview_chars=300)
    with (
        database("sqlite", "", workdir) as db_url,
        FakeMediaServer(library, token=TOKEN, shape=shape) as fake,
    ):
        env = {**os.environ, "CATALOG_DATABASE_URL": db_url, "CATALOG_SERVER_URL": fake.url,
               "CATALOG_SERVER_TOKEN": TOKEN, "CATALOG_PUSH_RATE": str(RATE),
               "CATALOG_PUSH_CONCURRENCY": str(CONCURRENCY)}  # fmt: skip
        subprocess.run([sys.executable, "-m", "catalog", "sync", "-q"], env=env, check=True)
        give_every_item_tags(db_url)
        fake.faults = Faults(push_latency_s=LATENCY_S)
        cmd = [sys.executable, "-m", "catalog", "push", "--json", "--allow-many"]
        start = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"push failed ({done.returncode}): {done.stderr[-500:]}")
        summary = json.loads(done.stdout)
        writes_before = sum(fake.writes.values())
        again = subprocess.run(cmd, env=env, capture_output=True, text=True)
        second = json.loads(again.stdout)
        log = fake.push_log
        return {
            "wall_s": wall,
            "run_s": summary["duration_s"],
            "pushed": summary["pushed"],
            "items_per_s": summary["pushed"] / summary["duration_s"],
            "calls": len(log.arrivals),
            "calls_per_s": len(log.arrivals) / summary["duration_s"],
            "max_window": log.max_in_window(1.0),
            "max_in_flight": log.max_in_flight,
            "second_selected": second["selected"],
            "second_writes": sum(fake.writes.values()) - writes_before,
        }


def render(runs: list[dict[str, Any]], args: argparse.Namespace) -> str:
    ideal_calls = min(RATE, CONCURRENCY / LATENCY_S)
    ideal_items = ideal_calls / CALLS_PER_ITEM
    best = sorted(runs, key=lambda r: r["items_per_s"])[len(runs) // 2]
    window = max(r["max_window"] for r in runs)
    in_flight = max(r["max_in_flight"] for r in runs)
    lines = [
        HEADER, "",
        f"Machine: {machine()}; figures are medians of {args.repeat} runs.",
        f"`python bench/push_bench.py --items {args.items} --repeat {args.repeat}`. The real "
        "command (`catalog push --json --allow-many`) in a subprocess against the fake Jellyfin "
        f"server (`catalog/fakes/media_server.py`) on loopback, item reads and writes answering "
        f"after {LATENCY_S * 1000:.0f} ms, `[push] rate = {RATE:.0f}`, `concurrency = "
        f"{CONCURRENCY}` (burst {BURST}); a fresh SQLite catalog of {args.items:,} items "
        f"filled by `catalog sync`, each given {len(CATALOG_TAGS)} tagger tags. Rates are over "
        "the run's own duration (start-up excluded).",
        "",
        "Reading of the target: the rate limits calls (every attempt waits its turn), and a "
        f"Jellyfin item costs {CALLS_PER_ITEM} (GET the whole item, POST it back), so the ideal "
        f"is min(rate, concurrency / latency) = {ideal_calls:.0f} calls/s = "
        f"{ideal_items:.0f} items/s.",
        "",
        "| items/s (median) | vs ideal | calls/s | busiest 1 s at the server | most in flight | "
        "second push: selected, writes |",
        "| ---: | ---: | ---: | ---: | ---: | --- |",
        f"| {best['items_per_s']:.1f} | {best['items_per_s'] / ideal_items:.0%} | "
        f"{best['calls_per_s']:.1f} | {window} | {in_flight} | {best['second_selected']}, "
        f"{best['second_writes']} |",
        "",
        f"- Items/s {best['items_per_s']:.1f} = {best['items_per_s'] / ideal_items:.1%} of "
        f"ideal (target ≥ 95%: {met(best['items_per_s'] >= 0.95 * ideal_items)}); runs "
        f"{[round(r['items_per_s'], 1) for r in runs]}; wall time with start-up "
        f"{best['wall_s']:.1f} s for {best['pushed']:,} items.",
        f"- Busiest 1-second window at the fake: {window} calls (target ≤ rate + burst = "
        f"{RATE + BURST:.0f}: {met(window <= RATE + BURST)}); most calls in flight "
        f"{in_flight} (cap {CONCURRENCY}: {met(in_flight <= CONCURRENCY)}).",
        f"- A second push right after selects {best['second_selected']} items and makes "
        f"{best['second_writes']} write calls.",
        "",
    ]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    args = parser.parse_args()
    workdir = Path(tempfile.gettempdir())
    runs = []
    for _ in range(args.repeat):
        runs.append(one_run(args.items, workdir))
        print(runs[-1], flush=True)
    section = render(runs, args)
    write_section(Path(args.out), HEADER, section)
    print(section)


if __name__ == "__main__":
    main()
