"""Drop sync_seen: a full sync keeps the unchanged items it has seen in memory (catalog.db.seen)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 20:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Scratch of a pass in progress only: nothing in it outlives the pass that wrote it.
    op.drop_table("sync_seen")


def downgrade() -> None:
    # Back as 0006 made it (empty, and unlogged on PostgreSQL), for the program before this one.
    media_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "sync_seen",
        sa.Column("library_id", sa.Integer(), primary_key=True),
        sa.Column("media_id", media_id, primary_key=True),
        sqlite_with_rowid=False,
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE sync_seen SET UNLOGGED")
