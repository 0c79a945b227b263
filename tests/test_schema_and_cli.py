"""The schema (migrations agree with the models) and the command surface."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from conftest import TOKEN
from typer.main import get_command
from typer.testing import CliRunner

from catalog.cli import app
from catalog.cli.lazy import COMMANDS, load_command
from catalog.db.migrate import HEAD_REVISION, current_revision, head_revision
from catalog.db.models import metadata


def test_latest_migration_matches_the_models(engine):
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, metadata)
    assert diff == []


def test_database_is_at_the_latest_revision(engine):
    assert current_revision(engine) == head_revision() is not None


def all_commands(group, prefix=()):
    for name in group.list_commands(None):  # the root loads its commands as they are asked for
        command = group.get_command(None, name)
        path = (*prefix, name)
        if hasattr(command, "commands"):
            yield from all_commands(command, path)
        else:
            yield path, command


@pytest.mark.parametrize("path", [p for p, _ in all_commands(get_command(app))], ids=" ".join)
def test_every_command_has_help(path):
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0
    command = dict(all_commands(get_command(app)))[path]
    assert command.help and len(command.help.strip()) > 10


def test_the_command_table_matches_the_commands():
    """`catalog --help` lists COMMANDS without loading them: each summary must be what the
    command says of itself."""
    root = get_command(app)
    for name, entry in COMMANDS.items():
        command = load_command(name, entry)
        assert command.get_short_help_str(1000) == entry.summary, name
    assert list(COMMANDS) == root.list_commands(None)


def test_help_loads_no_command_and_no_database_library():
    """Start-up: `catalog --help` imports neither a command module nor SQLAlchemy, httpx,
    alembic or psycopg (the point of catalog.cli.lazy)."""
    probe = (
        "import sys, atexit\n"
        "heavy = ('sqlalchemy', 'httpx', 'alembic', 'psycopg', 'catalog.cli.common',"
        " 'catalog.cli.sync', 'catalog.cli.media')\n"
        "atexit.register(lambda: print(sorted(m for m in heavy if m in sys.modules)))\n"
        "sys.argv = ['catalog', '--help']\n"
        "from catalog.cli import main\n"
        "main()\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "Commands" in out.stdout and "schedule" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "[]"


# What a page of `catalog media list` on a SQLite catalog has no use for, and whose import
# would cost its start-up more than the page's queries do.
NOT_FOR_A_PAGE = (
    "sqlalchemy.orm", "sqlalchemy.dialects.postgresql", "psycopg", "pydantic", "rich", "httpx",
    "alembic", "croniter", "catalog.schedule", "catalog.tags.apply", "catalog.fakes",
)  # fmt: skip


def loaded_by(args: list[str], heavy: tuple[str, ...], env: dict[str, str]) -> tuple[str, list]:
    """What `catalog ARGS` printed, and which of `heavy` (packages or modules) it imported."""
    probe = (
        "import atexit, json, sys\n"
        f"heavy = {heavy!r}\n"
        "def loaded(): return [h for h in heavy if any(m == h or m.startswith(h + '.')"
        " for m in sys.modules)]\n"
        "atexit.register(lambda: print(json.dumps(loaded()), file=sys.stderr))\n"
        f"sys.argv = ['catalog', *{args!r}]\n"
        "from catalog.cli import main\n"
        "main()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env={**os.environ, **env}
    )
    assert out.returncode == 0, out.stderr
    return out.stdout, json.loads(out.stderr.strip().splitlines()[-1])


def test_a_page_of_media_imports_neither_the_orm_nor_what_other_commands_need(tmp_path, fake):
    env = {"CATALOG_DATABASE_URL": f"sqlite:///{tmp_path / 'catalog.db'}"}
    synced = CliRunner().invoke(
        app, ["sync"], env={**env, "CATALOG_SERVER_URL": fake.url, "CATALOG_SERVER_TOKEN": TOKEN}
    )
    assert synced.exit_code == 0, synced.stderr
    page, loaded = loaded_by(["media", "list", "--limit", "20"], NOT_FOR_A_PAGE, env)
    items = json.loads(page)["items"]
    assert len(items) == 20 and any(i["genres"] for i in items) and any(i["tags"] for i in items)
    assert loaded == []


def test_sync_imports_the_fake_servers_only_for_the_demo(tmp_path):
    demo = ["demo", "--items", "5", "--quiet", "--database-url", f"sqlite:///{tmp_path / 'd.db'}"]
    assert loaded_by(["sync", "--help"], ("catalog.fakes",), {})[1] == []
    assert loaded_by(demo, ("catalog.fakes",), {})[1] == ["catalog.fakes"]


def test_a_command_ends_with_what_it_made_frozen_for_the_exit():
    """`main` freezes the collector as the command ends: the interpreter's collections at exit
    then skip what the command imported instead of walking all of it."""
    probe = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print(gc.get_freeze_count(), file=sys.stderr))\n"
        "sys.argv = ['catalog', '--version']\n"
        "from catalog.cli import main\n"
        "main()\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("catalog ")
    assert int(out.stderr.split()[-1]) > 10_000


def test_help_documents_exit_codes():
    result = CliRunner().invoke(app, ["--help"])
    assert "75" in result.stdout and "130/143" in result.stdout


def test_db_upgrade_and_current_on_a_new_catalog(tmp_path):
    path = tmp_path / "new.db"
    url = f"sqlite:///{path}"
    runner = CliRunner()
    out = runner.invoke(app, ["db", "current", "--database-url", url])
    assert out.exit_code == 1 and f"no catalog database at {path}" in out.stderr
    assert not path.exists()  # only an upgrade (or a sync) creates the catalog
    path.touch()  # an empty database: no schema yet
    out = runner.invoke(app, ["db", "current", "--database-url", url])
    assert "revision none" in out.stdout and "behind" in out.stdout
    out = runner.invoke(app, ["db", "upgrade", "--database-url", url])
    assert out.exit_code == 0 and f"revision {head_revision()}" in out.stdout
    out = runner.invoke(app, ["db", "current", "--database-url", url])
    assert "up to date" in out.stdout


def test_db_check_reports_orphaned_links(cli, engine):
    from catalog.db.models import MEDIA_TAG

    assert cli("db", "check").exit_code == 0
    with engine.begin() as conn:
        conn.execute(MEDIA_TAG.insert(), {"media_id": 999, "tag_id": 1, "origin": "server"})
    out = cli("db", "check", "--json")
    assert out.exit_code == 1
    assert out.json()["orphans"]["media_tag.media_id"] == 1


def test_libraries_lists_the_server_and_the_catalog(cli):
    cli("sync", "--library", "Movies")
    out = cli("libraries", "--json")
    assert out.exit_code == 0
    rows = {lib["name"]: lib for lib in out.json()["libraries"]}
    assert rows["Movies"]["items"] == 60 and rows["Movies"]["last_sync_at"]
    assert rows["TV Shows"]["items"] == 0 and rows["TV Shows"]["last_sync_at"] is None


def test_demo_syncs_into_its_own_catalog(tmp_path):
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    out = CliRunner().invoke(app, ["demo", "--items", "150", "--database-url", url, "--json"])
    assert out.exit_code == 0, out.stderr
    import json

    summary = json.loads(out.stdout)
    assert summary["status"] == "ok"
    assert sum(lib["inserted"] for lib in summary["libraries"]) == 150


def test_demo_never_touches_the_users_catalog(tmp_path):
    from catalog.config import default_database_url

    out = CliRunner().invoke(app, ["demo", "--items", "20", "--quiet"])
    assert out.exit_code == 0, out.stderr
    user_catalog = default_database_url().removeprefix("sqlite:///")
    assert not __import__("os").path.exists(user_catalog)


def test_the_head_revision_constant_is_alembics_head() -> None:
    """Every command compares the catalog with HEAD_REVISION; a migration must move it."""
    assert head_revision() == HEAD_REVISION


def test_db_upgrade_to_an_unknown_revision_is_one_line_and_exit_2(cli, engine):
    out = cli("db", "upgrade", "nosuchrev")
    assert out.exit_code == 2
    versions = Path(__file__).parents[1] / "catalog" / "migrations" / "versions"
    known = ", ".join(sorted(path.name[:4] for path in versions.glob("0*.py")))
    assert out.stderr.strip().splitlines() == [
        "error: cannot upgrade to 'nosuchrev': Can't locate revision identified by 'nosuchrev' "
        f"(known: {known}, head)"
    ]
    assert current_revision(engine) == HEAD_REVISION


def test_a_catalog_newer_than_the_program_says_so_and_is_left_alone(cli, engine):
    from sqlalchemy import text

    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    message = (
        "error: the catalog's schema is at revision 0099, newer than this catalog program knows "
        f"(latest {HEAD_REVISION}): upgrade the program, not the catalog"
    )
    for args in (("db", "upgrade"), ("sync",), ("media", "list"), ("status",)):
        out = cli(*args)
        assert out.exit_code == 1, args
        assert out.stderr.strip().splitlines() == [message], args
    assert "newer than this program" in cli("db", "current").stdout
    assert current_revision(engine) == "0099"


def test_the_cli_starts_without_the_postgresql_driver() -> None:
    """A SQLite user's every command pays for what `import catalog.cli` loads: psycopg only
    comes in when a PostgreSQL catalog is opened."""
    import subprocess
    import sys

    probe = "import sys, catalog.cli; print('psycopg' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
