"""Alembic environment: runs on the connection `catalog` hands over, or on CATALOG_DATABASE_URL."""

from __future__ import annotations

from alembic import context

from catalog.db.models import metadata

config = context.config
target_metadata = metadata


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite rebuilds tables to ALTER
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from catalog.config import load_settings
    from catalog.db.engine import create_catalog_engine

    engine = create_catalog_engine(
        config.get_main_option("sqlalchemy.url") or load_settings().database_url
    )
    with engine.begin() as conn:
        _run(conn)


if context.is_offline_mode():
    raise SystemExit("catalog migrations run online only: `catalog db upgrade`")
run_migrations_online()
