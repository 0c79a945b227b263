"""sync_seen: the unchanged items a full sync has seen, so a re-sync writes nothing for them

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sync_seen",
        sa.Column("library_id", sa.Integer(), nullable=False),
        sa.Column("media_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.PrimaryKeyConstraint("library_id", "media_id", name=op.f("pk_sync_seen")),
        sqlite_with_rowid=False,
    )
    if op.get_bind().dialect.name == "postgresql":
        # Scratch rows of a pass in progress: no WAL for them. A crash empties the table, and
        # the pass it belonged to cannot reconcile then anyway.
        op.execute("ALTER TABLE sync_seen SET UNLOGGED")


def downgrade() -> None:
    op.drop_table("sync_seen")
