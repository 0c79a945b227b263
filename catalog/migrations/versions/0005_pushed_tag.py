"""pushed_tag: the catalog tags `catalog push` wrote to the media server, per item

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 23:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import catalog.db.models

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pushed_tag",
        sa.Column("media_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("added", sa.Boolean(), nullable=False),
        sa.Column("pushed_at", catalog.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("media_id", "name", name=op.f("pk_pushed_tag")),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("pushed_tag")
