"""Schema migrations with Alembic, shipped inside the package so an installed `catalog` migrates.

Alembic is imported only when it is needed (an upgrade, `catalog db`): every command checks the
schema on start, and importing Alembic for that would cost each cron run about 0.2 s.
"""

from __future__ import annotations

from importlib.resources import files
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text

if TYPE_CHECKING:
    from alembic.config import Config

SCRIPT_LOCATION = str(files("catalog") / "migrations")
# The newest migration. A test checks it against Alembic's own head, so a new migration that
# forgets to move it fails the suite instead of leaving catalogs behind.
HEAD_REVISION = "0004"


def _config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    return cfg


def head_revision() -> str | None:
    """The newest migration, as Alembic reads it from the migration scripts."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The catalog's schema revision (None for an empty database)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the catalog to `revision` in one transaction."""
    from alembic import command

    cfg = _config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def ensure_current(engine: Engine) -> None:
    """Bring the catalog up to the latest schema if it is behind (a no-op when it is current)."""
    if current_revision(engine) != HEAD_REVISION:
        upgrade(engine)
