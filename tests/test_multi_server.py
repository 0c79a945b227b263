"""Every configured server in one run: a Jellyfin fake and a Plex fake in one config, synced by
one `catalog sync`, each under its own lock and run record, then read back per server."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import TOKEN, Outcome, hold_lock
from sqlalchemy import Engine, func, select
from test_ops import PingServer, samples
from typer.testing import CliRunner

from catalog.cli import app
from catalog.db.models import LIBRARY, MEDIA, RUN, SERVER
from catalog.fakes.media_server import FakeLibrary, FakeMediaServer, Faults
from catalog.fakes.plex_server import FakePlexServer
from catalog.fakes.tagger import FakeTagger
from catalog.sync import SyncReport


@pytest.fixture
def plex() -> Iterator[FakePlexServer]:
    libraries = [FakeLibrary("Movies", "movies", 30), FakeLibrary("TV Shows", "tvshows", 21)]
    with FakePlexServer(libraries, token=TOKEN) as server:
        yield server


def write_config(path: Path, fake: FakeMediaServer, plex: FakePlexServer, plex_token: str) -> None:
    path.write_text(
        f'[servers.jelly]\nurl = "{fake.url}"\ntoken = "{TOKEN}"\n\n'
        f'[servers.plex]\nkind = "plex"\nurl = "{plex.url}"\ntoken = "{plex_token}"\n'
    )
    path.chmod(0o600)


@pytest.fixture
def multi(database_url: str, fake: FakeMediaServer, plex: FakePlexServer, tmp_path: Path) -> Any:
    """Run the real `catalog` command with both servers configured (no --server, no
    CATALOG_SERVER_*): `plex_token` lets a test give the Plex server a wrong one."""
    config = tmp_path / "two.toml"

    def run(*args: str, env: dict[str, str] | None = None, plex_token: str = TOKEN) -> Outcome:
        write_config(config, fake, plex, plex_token)
        base = {
            "CATALOG_DATABASE_URL": database_url, "CATALOG_CONFIG": str(config),
            "CATALOG_PAGE_SIZE": "20",
        }  # fmt: skip
        result = CliRunner().invoke(app, list(args), env={**base, **(env or {})})
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Outcome(result.exit_code, result.stdout, result.stderr)

    return run


def held_by_server(engine: Engine) -> dict[str, dict[str, dict]]:
    """server name → external id → the catalog's row."""
    query = (
        select(MEDIA, SERVER.c.name.label("server"))
        .join(LIBRARY, LIBRARY.c.id == MEDIA.c.library_id)
        .join(SERVER, SERVER.c.id == LIBRARY.c.server_id)
    )
    found: dict[str, dict[str, dict]] = {}
    with engine.connect() as conn:
        for row in conn.execute(query):
            found.setdefault(row.server, {})[row.external_id] = dict(row._mapping)
    return found


def served(server: Any, key: str) -> dict[str, dict]:
    return {item[key]: item for lib in ("Movies", "TV Shows") for item in server.items(lib)}


def sync_runs(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        query = select(RUN.c.server, RUN.c.status).where(RUN.c.command == "sync")
        return dict(conn.execute(query.order_by(RUN.c.id)).all())


# -- one run, every server ----------------------------------------------------------------------


def test_one_sync_syncs_every_configured_server(multi, engine, fake, plex, tmp_path):
    metrics = tmp_path / "catalog.prom"
    out = multi("sync", "--json", "--metrics-file", str(metrics))
    assert out.exit_code == 0, out.stderr
    summary = out.json()
    assert list(summary) == ["status", "servers"] and summary["status"] == "ok"
    assert [s["server"] for s in summary["servers"]] == ["jelly", "plex"]
    for each in summary["servers"]:
        assert list(each) == SyncReport.json_keys() and each["status"] == "ok"
        assert [lib["name"] for lib in each["libraries"]] == ["Movies", "TV Shows"]
        assert all(lib["inserted"] == lib["seen"] > 0 for lib in each["libraries"])

    held = held_by_server(engine)
    jelly, plex_items = served(fake, "Id"), served(plex, "ratingKey")
    assert set(held) == {"jelly", "plex"}
    assert set(held["jelly"]) == set(jelly) and set(held["plex"]) == set(plex_items)
    for external_id, raw in jelly.items():
        assert held["jelly"][external_id]["name"] == raw["Name"]
    for external_id, raw in plex_items.items():
        row = held["plex"][external_id]
        assert row["name"] == raw["title"] and row["overview"] == raw.get("summary")
    assert sum(
        s["libraries"][0]["seen"] + s["libraries"][1]["seen"] for s in summary["servers"]
    ) == (len(jelly) + len(plex_items))
    assert sync_runs(engine) == {"jelly": "ok", "plex": "ok"}
    run_ids = [s["run_id"] for s in summary["servers"]]
    assert len(set(run_ids)) == 2 and None not in run_ids
    # Each server's run observed on its own: metrics labelled by server, none for the command.
    for name, items in (("jelly", jelly), ("plex", plex_items)):
        got = samples(metrics, server=name)
        assert got["catalog_job_exit_code"] == 0 and got["catalog_job_items:seen"] == len(items)
    assert samples(metrics, server="") == {}


def test_a_failing_server_leaves_the_others_synced_and_exits_1(multi, engine, fake):
    out = multi("sync", "--json", plex_token="not-the-token")
    assert out.exit_code == 1, out.stderr
    summary = out.json()
    assert summary["status"] == "failed"
    jelly, plex = summary["servers"]
    assert (jelly["server"], jelly["status"]) == ("jelly", "ok")
    assert (plex["server"], plex["status"]) == ("plex", "failed") and plex["error"]
    assert "not-the-token" not in out.stdout + out.stderr
    assert "server 'plex'" in out.stderr
    held = held_by_server(engine)
    assert set(held) == {"jelly"} and set(held["jelly"]) == set(served(fake, "Id"))
    assert sync_runs(engine) == {"jelly": "ok", "plex": "failed"}


def test_healthcheck_one_ping_for_the_worst_or_one_per_server(multi):
    with PingServer() as pings:
        out = multi("sync", "--healthcheck-url", f"{pings.url}/ping/{{job}}", plex_token="wrong")
        assert out.exit_code == 1
        assert pings.paths == ["/ping/sync/fail"]  # one check: a success can't hide a failure
        pings.paths.clear()
        each = f"{pings.url}/ping/{{job}}-{{server}}"
        assert multi("sync", "--healthcheck-url", each, plex_token="wrong").exit_code == 1
        assert pings.paths == ["/ping/sync-jelly", "/ping/sync-plex/fail"]


def test_a_partial_server_alone_makes_the_run_partial(multi, engine, fake, plex):
    fake.faults = Faults(malformed_every=7)
    out = multi("sync", "--json")
    assert out.exit_code == 3, out.stderr
    summary = out.json()
    assert summary["status"] == "partial"
    assert [s["status"] for s in summary["servers"]] == ["partial", "ok"]
    assert set(held_by_server(engine)["plex"]) == set(served(plex, "ratingKey"))


def test_each_server_has_its_own_lock(multi, engine, database_url, fake):
    holder = hold_lock(database_url, "sync", "plex")
    try:
        out = multi("sync", "--json")
    finally:
        holder.stdin.close()
        holder.wait()
    assert out.exit_code == 75, out.stderr
    jelly, plex = out.json()["servers"]
    assert (jelly["status"], plex["status"]) == ("ok", "locked")
    assert "another `catalog sync` of server 'plex'" in plex["error"]
    assert set(held_by_server(engine)) == {"jelly"}
    assert sync_runs(engine) == {"jelly": "ok"}  # a locked run records nothing
    again = multi("sync", "--json")  # the lock was plex's only
    assert again.exit_code == 0 and sync_runs(engine) == {"jelly": "ok", "plex": "ok"}


def test_an_interruption_stops_every_server_and_wins(database_url, engine, fake, plex, tmp_path):
    config = tmp_path / "two.toml"
    write_config(config, fake, plex, TOKEN)
    fake.faults = Faults(latency_s=0.1)
    env = {**os.environ, "CATALOG_DATABASE_URL": database_url, "CATALOG_CONFIG": str(config)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "catalog", "sync", "--json", "--page-size", "10",
         "--chunk-size", "10"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not held_by_server(engine).get("jelly"):
        assert time.monotonic() < deadline and proc.poll() is None, "no chunk committed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    summary = json.loads(stdout)
    assert summary["status"] == "interrupted"
    assert [(s["server"], s["status"]) for s in summary["servers"]] == [("jelly", "interrupted")]
    assert sync_runs(engine) == {"jelly": "interrupted"}  # plex never started
    assert "plex" not in held_by_server(engine)


def test_server_flag_syncs_one_with_todays_summary(multi, engine, plex):
    out = multi("sync", "--json", "--server", "plex")
    assert out.exit_code == 0, out.stderr
    summary = out.json()
    assert list(summary) == SyncReport.json_keys() and summary["server"] == "plex"
    held = held_by_server(engine)
    assert set(held) == {"plex"} and set(held["plex"]) == set(served(plex, "ratingKey"))
    both = multi("sync", "--json")  # without it, every server, in the wrapper
    assert both.exit_code == 0 and [s["server"] for s in both.json()["servers"]] == [
        "jelly", "plex",
    ]  # fmt: skip
    assert sync_runs(engine) == {"plex": "ok", "jelly": "ok"}


def test_the_worst_exit_code_wins():
    from catalog.jobs import worst_exit

    assert worst_exit([0, 3, 75, 1]) == 1
    assert worst_exit([0, 3, 75]) == 75
    assert worst_exit([0, 3]) == 3
    assert worst_exit([0, 0]) == 0 and worst_exit([]) == 0
    assert worst_exit([1, 130, 75]) == 130


# -- reads across servers -----------------------------------------------------------------------


def test_libraries_lists_every_servers(multi):
    assert multi("sync").exit_code == 0
    out = multi("libraries", "--json")
    assert out.exit_code == 0, out.stderr
    listed = out.json()
    assert listed["servers"] == ["jelly", "plex"]
    by_server = {(lib["server"], lib["name"]): lib for lib in listed["libraries"]}
    assert {key for key in by_server if key[1] in ("Movies", "TV Shows")} == {
        (s, n) for s in ("jelly", "plex") for n in ("Movies", "TV Shows")
    }
    assert by_server[("plex", "Movies")]["items"] == 30
    assert by_server[("jelly", "Movies")]["items"] == 60
    one = multi("libraries", "--json", "--server", "plex").json()
    assert one["server"] == "plex" and {lib["server"] for lib in one["libraries"]} == {"plex"}
    table = multi("libraries")
    assert table.exit_code == 0 and "jelly" in table.stdout and "plex" in table.stdout


def test_media_list_and_show_carry_the_server(multi, engine):
    assert multi("sync").exit_code == 0
    held = held_by_server(engine)
    out = multi("media", "list", "--format", "json", "--all")
    assert out.exit_code == 0, out.stderr
    items = out.json()["items"]
    assert {(i["server"], i["external_id"]) for i in items} == {
        (server, external_id) for server, rows in held.items() for external_id in rows
    }
    plex_only = multi("media", "list", "--format", "ndjson", "--all", "--server", "plex")
    lines = [json.loads(line) for line in plex_only.stdout.splitlines()]
    assert {i["external_id"] for i in lines} == set(held["plex"])
    assert {i["server"] for i in lines} == {"plex"}
    rows = list(csv.DictReader(io.StringIO(multi("media", "list", "--format", "csv").stdout)))
    assert rows and all(row["server"] in ("jelly", "plex") for row in rows)
    some = next(iter(held["plex"].values()))
    shown = multi("media", "show", str(some["id"]), "--json").json()
    assert shown["server"] == "plex" and shown["external_id"] == some["external_id"]


def test_an_unknown_library_is_named_with_every_servers_libraries(multi):
    assert multi("sync").exit_code == 0
    out = multi("media", "list", "--library", "Cartoons")
    assert out.exit_code == 2
    assert "'Movies' on 'jelly', 'Movies' on 'plex'" in out.stderr
    synced = multi("sync", "--library", "Cartoons")
    assert synced.exit_code == 1
    assert "no library named 'Cartoons' on server 'jelly'" in synced.stderr
    assert "no library named 'Cartoons' on server 'plex'" in synced.stderr


# -- retag one server ---------------------------------------------------------------------------


@pytest.fixture
def tagger() -> Iterator[FakeTagger]:
    with FakeTagger(token="tagger-token") as fake:
        yield fake


def test_retag_server_takes_only_that_servers_items(multi, engine, tagger):
    assert multi("sync").exit_code == 0
    env = {"CATALOG_TAGGER_URL": tagger.url, "CATALOG_TAGGER_TOKEN": "tagger-token"}
    out = multi("retag", "--json", "--server", "plex", "--rate", "500", env=env)
    assert out.exit_code == 0, out.stderr
    plex_ids = {str(row["id"]) for row in held_by_server(engine)["plex"].values()}
    assert out.json()["tagged"] == len(plex_ids)
    assert set(tagger.log.answered) == plex_ids
    unknown = multi("retag", "--server", "nosuch", env=env)
    assert unknown.exit_code == 2 and "no server named 'nosuch'" in unknown.stderr
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(RUN)).scalar() == 3


def test_push_without_server_writes_to_every_configured_server(multi, engine, fake, plex, tagger):
    assert multi("sync").exit_code == 0
    env = {"CATALOG_TAGGER_URL": tagger.url, "CATALOG_TAGGER_TOKEN": "tagger-token"}
    assert multi("retag", "--rate", "500", "--limit", "1000", env=env).exit_code == 0
    out = multi("push", "--json", "--allow-many")
    assert out.exit_code == 0, out.stderr
    summary = out.json()
    assert summary["status"] == "ok"
    pushed = {s["server"]: s["pushed"] for s in summary["servers"]}
    held = held_by_server(engine)
    assert set(pushed) == {"jelly", "plex"} and all(pushed.values())
    assert sum(fake.writes.values()) == pushed["jelly"]
    assert sum(plex.writes.values()) >= 1 and pushed["plex"] <= len(held["plex"])
    with engine.connect() as conn:
        runs = conn.execute(select(RUN.c.command, RUN.c.server).where(RUN.c.command == "push"))
        assert sorted(runs) == [("push", "jelly"), ("push", "plex")]
    again = multi("push", "--json")
    assert [s["pushed"] for s in again.json()["servers"]] == [0, 0]
