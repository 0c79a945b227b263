"""Which commands may create a catalog: a read (or a job on what the catalog holds) of a
catalog that does not exist is an error that creates nothing; sync and the demo create one, and
the demo replaces what an earlier demo left."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import POSTGRES_ADMIN_URL, TOKEN, _admin_engine
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from catalog.cli import app
from catalog.db.models import LIBRARY, MEDIA, SERVER

# Every command that works on an existing catalog; none of them may create one.
NEEDS_A_CATALOG = {
    "media list": ["media", "list"],
    "media show": ["media", "show", "1"],
    "tags": ["tags"],
    "status": ["status"],
    "db check": ["db", "check"],
    "db current": ["db", "current"],
    "retag dry run": ["retag", "--dry-run"],
    "push dry run": ["push", "--dry-run"],
    "tags normalize": ["tags", "normalize"],
    "tags rename": ["tags", "rename", "a", "b"],
}
# A server is configured, so a command fails on the catalog, not on the missing server.
SERVER_ENV = {"CATALOG_SERVER_URL": "http://127.0.0.1:9", "CATALOG_SERVER_TOKEN": TOKEN}


def run(args: list[str], url: str) -> Any:
    return CliRunner().invoke(app, [*args, "--database-url", url], env=SERVER_ENV)


@pytest.mark.parametrize("args", NEEDS_A_CATALOG.values(), ids=NEEDS_A_CATALOG.keys())
def test_a_missing_sqlite_catalog_is_one_line_naming_it_and_is_not_created(
    args: list[str], tmp_path: Path
):
    path = tmp_path / "typo" / "catalgo.db"
    out = run(args, f"sqlite:///{path}")
    assert out.exit_code == 1 and out.stdout == ""
    assert out.stderr.splitlines() == [
        f"error: no catalog database at {path}: the file does not exist (`catalog sync` creates "
        "it; check --database-url, CATALOG_DATABASE_URL or database_url in the config)"
    ]
    assert not path.parent.exists()


def test_libraries_before_the_first_sync_lists_the_server_and_creates_nothing(
    fake: Any, tmp_path: Path
):
    """A new user's first step against a real server: the server's libraries, nothing held."""
    path = tmp_path / "new" / "catalog.db"
    env = {"CATALOG_SERVER_URL": fake.url, "CATALOG_SERVER_TOKEN": TOKEN}
    out = CliRunner().invoke(
        app, ["libraries", "--json", "--database-url", f"sqlite:///{path}"], env=env
    )
    assert out.exit_code == 0, out.stderr
    rows = json.loads(out.stdout)["libraries"]
    assert [(r["name"], r["items"], r["last_sync_at"]) for r in rows] == [
        ("Movies", 0, None), ("TV Shows", 0, None),
    ]  # fmt: skip
    assert "nothing synced yet" in out.stderr and str(path) in out.stderr
    assert not path.parent.exists()


@pytest.fixture
def missing_postgres_url(postgres_template: str) -> str:
    """A URL, with a password, naming a database the PostgreSQL server does not have."""
    return (
        make_url(POSTGRES_ADMIN_URL)
        .set(database="catalog_no_such_db", password="hunter2")
        .render_as_string(hide_password=False)
    )


@pytest.mark.parametrize(
    "args", [*NEEDS_A_CATALOG.values(), ["sync"]], ids=[*NEEDS_A_CATALOG.keys(), "sync"]
)
def test_a_missing_postgresql_database_is_one_line_naming_it_without_the_password(
    args: list[str], missing_postgres_url: str
):
    out = run(args, missing_postgres_url)
    masked = make_url(missing_postgres_url).render_as_string(hide_password=True)
    assert out.exit_code == 1 and out.stdout == ""
    assert out.stderr.splitlines() == [
        f"error: no PostgreSQL database 'catalog_no_such_db' at {masked}: create it "
        "(createdb catalog_no_such_db) or fix the database URL"
    ]
    assert "hunter2" not in out.stderr
    admin = _admin_engine()
    try:
        with admin.connect() as conn:
            query = text("SELECT count(*) FROM pg_database WHERE datname = 'catalog_no_such_db'")
            assert conn.execute(query).scalar() == 0
    finally:
        admin.dispose()


def test_sync_creates_a_missing_sqlite_catalog(fake: Any, tmp_path: Path):
    path = tmp_path / "new" / "catalog.db"
    url = f"sqlite:///{path}"
    env = {"CATALOG_SERVER_URL": fake.url, "CATALOG_SERVER_TOKEN": TOKEN}
    synced = CliRunner().invoke(app, ["sync", "--quiet", "--database-url", url], env=env)
    assert synced.exit_code == 0, synced.stderr
    listed = CliRunner().invoke(app, ["media", "list", "--limit", "5", "--database-url", url])
    assert listed.exit_code == 0 and len(json.loads(listed.stdout)["items"]) == 5


# -- the demo -----------------------------------------------------------------------------------


def demo(url: str, *args: str) -> dict[str, Any]:
    out = CliRunner().invoke(app, ["demo", "--json", "--database-url", url, *args])
    assert out.exit_code == 0, out.stderr
    return json.loads(out.stdout)


def items_by_server(engine: Any) -> dict[str, int]:
    query = (
        select(SERVER.c.name, func.count(MEDIA.c.id))
        .join(LIBRARY, LIBRARY.c.server_id == SERVER.c.id)
        .join(MEDIA, MEDIA.c.library_id == LIBRARY.c.id)
        .group_by(SERVER.c.name)
    )
    with engine.connect() as conn:
        return dict(conn.execute(query).all())


def test_a_second_demo_of_another_size_replaces_the_first(database_url: str, engine: Any):
    assert sum(lib["inserted"] for lib in demo(database_url, "--items", "150")["libraries"]) == 150
    second = demo(database_url, "--items", "50")
    assert second["status"] == "ok"
    assert sum(lib["inserted"] + lib["unchanged"] for lib in second["libraries"]) == 50
    assert items_by_server(engine) == {"demo": 50}
    demo(database_url, "--items", "3", "--kind", "plex")
    assert items_by_server(engine) == {"demo": 3}


def test_the_demo_leaves_other_servers_items_alone(cli: Any, database_url: str, engine: Any):
    assert cli("sync", "--quiet").exit_code == 0
    theirs = items_by_server(engine)
    demo(database_url, "--items", "40")
    demo(database_url, "--items", "10")
    assert items_by_server(engine) == {**theirs, "demo": 10}
    out = cli("db", "check", "--json")
    assert out.exit_code == 0 and not any(out.json()["orphans"].values())
