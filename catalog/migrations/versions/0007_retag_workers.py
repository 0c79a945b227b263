"""retag_worker, retag_claim: several `catalog retag` processes share a PostgreSQL catalog

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import catalog.db.models

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "retag_worker",
        sa.Column("id", sa.String(length=120), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("started_at", catalog.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", catalog.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("slots", sa.Integer(), nullable=False),
        sa.Column("starts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retag_worker")),
    )
    op.create_table(
        "retag_claim",
        sa.Column("media_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("worker_id", sa.String(length=120), nullable=False),
        sa.Column("lease_until", catalog.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("media_id", name=op.f("pk_retag_claim")),
    )
    op.create_index(op.f("ix_retag_claim_worker_id"), "retag_claim", ["worker_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_retag_claim_worker_id"), table_name="retag_claim")
    op.drop_table("retag_claim")
    op.drop_table("retag_worker")
