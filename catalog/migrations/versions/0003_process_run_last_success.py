"""process_run.last_success_at: when an item's process last succeeded

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 01:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import catalog.db.models

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("process_run") as batch_op:
        batch_op.add_column(
            sa.Column(
                "last_success_at", catalog.db.models.UTCDateTime(timezone=True), nullable=True
            )
        )
    # Rows written before this column existed recorded successes only with status 'ok'.
    op.execute("UPDATE process_run SET last_success_at = last_run_at WHERE status = 'ok'")


def downgrade() -> None:
    with op.batch_alter_table("process_run") as batch_op:
        batch_op.drop_column("last_success_at")
