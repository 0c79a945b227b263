"""Shared fixtures: a real SQLite file and a real PostgreSQL database per test, the fake media
server on 127.0.0.1, and a way to run the real CLI against them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from catalog.cli import app
from catalog.db.engine import create_catalog_engine
from catalog.db.migrate import upgrade
from catalog.fakes.media_server import FakeLibrary, FakeMediaServer

POSTGRES_ADMIN_URL = os.environ.get(
    "CATALOG_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TOKEN = "s3cret-test-token"


def _admin_engine() -> Engine:
    return create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A migrated database to clone per test (CREATE DATABASE ... TEMPLATE is fast)."""
    admin = _admin_engine()
    try:
        with admin.connect():
            pass
    except Exception as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL at {POSTGRES_ADMIN_URL} is required in CI: {exc}")
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    name = f"catalog_tmpl_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    engine = create_catalog_engine(url)
    upgrade(engine)
    engine.dispose()
    yield name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """A fresh, migrated catalog database: a SQLite file, or a throwaway PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'catalog.db'}"
        engine = create_catalog_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url
        return
    template = request.getfixturevalue("postgres_template")
    name = f"catalog_test_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_catalog_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never read the developer's own config or write into their data directory."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    for var in list(os.environ):
        if var.startswith("CATALOG_") and var != "CATALOG_TEST_POSTGRES_URL":
            monkeypatch.delenv(var)


@pytest.fixture
def fake() -> Iterator[FakeMediaServer]:
    libraries = [FakeLibrary("Movies", "movies", 60), FakeLibrary("TV Shows", "tvshows", 44)]
    with FakeMediaServer(libraries, token=TOKEN) as server:
        yield server


@dataclass
class Outcome:
    """What one CLI run printed and returned."""

    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@pytest.fixture
def cli(database_url: str, fake: FakeMediaServer) -> Any:
    """Run the real `catalog` command against the fake server and the test database."""

    def run(*args: str, env: dict[str, str] | None = None, url: str | None = None) -> Outcome:
        base_env = {
            "CATALOG_DATABASE_URL": database_url,
            "CATALOG_SERVER_URL": url or fake.url,
            "CATALOG_SERVER_TOKEN": TOKEN,
            # Tests want failures fast: small backoff, few retries.
            "CATALOG_PAGE_SIZE": "25",
        }
        result = CliRunner().invoke(app, list(args), env={**base_env, **(env or {})})
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Outcome(result.exit_code, result.stdout, result.stderr)

    return run


def hold_lock(database_url: str, job: str, server: str) -> subprocess.Popen:
    """Another process holding the lock of `job` on `server` until its stdin closes."""
    code = (
        "import sys\n"
        "from catalog.db.engine import create_catalog_engine\n"
        "from catalog.db.locks import job_lock\n"
        f"engine = create_catalog_engine({database_url!r})\n"
        f"with job_lock(engine, {job!r}, {server!r}):\n"
        "    print('locked', flush=True)\n"
        "    sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc
