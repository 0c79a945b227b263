"""Schema migrations with Alembic, shipped inside the package so an installed `catalog` migrates.

Alembic is imported only when it is needed (an upgrade, `catalog db`): every command checks the
schema on start, and importing Alembic for that would cost each cron run about 0.2 s.
"""

from __future__ import annotations

from importlib.resources import files
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text

from catalog.errors import SchemaTooNew, UnknownRevision

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

SCRIPT_LOCATION = str(files("catalog") / "migrations")
# The newest migration. A test checks it against Alembic's own head, so a new migration that
# forgets to move it fails the suite instead of leaving catalogs behind.
HEAD_REVISION = "0008"


def _config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    return cfg


def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config())


def head_revision() -> str | None:
    """The newest migration, as Alembic reads it from the migration scripts."""
    return _scripts().get_current_head()


def known_revisions() -> list[str]:
    """Every migration this program ships, oldest first."""
    return [script.revision for script in reversed(list(_scripts().walk_revisions()))]


def current_revision(engine: Engine) -> str | None:
    """The catalog's schema revision (None for an empty database)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def is_newer(revision: str | None) -> bool:
    """Whether a catalog at `revision` was migrated by a newer program than this one."""
    return revision is not None and revision not in known_revisions()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the catalog to `revision` in one transaction.

    Raises SchemaTooNew for a catalog a newer program migrated, UnknownRevision for a target
    no migration has (before anything is written)."""
    from alembic import command
    from alembic.util import CommandError

    refuse_newer(engine)
    cfg = _config()
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    except CommandError as exc:
        known = ", ".join([*known_revisions(), "head"])
        reason = str(exc).splitlines()[0]
        raise UnknownRevision(f"cannot upgrade to {revision!r}: {reason} (known: {known})") from exc


def refuse_newer(engine: Engine) -> None:
    """SchemaTooNew when the catalog's revision is one this program does not ship."""
    current = current_revision(engine)
    if is_newer(current):
        raise SchemaTooNew(
            f"the catalog's schema is at revision {current}, newer than this catalog program "
            f"knows (latest {HEAD_REVISION}): upgrade the program, not the catalog"
        )


def ensure_current(engine: Engine) -> None:
    """Bring the catalog up to the latest schema if it is behind (a no-op when it is current)."""
    if current_revision(engine) != HEAD_REVISION:
        upgrade(engine)
