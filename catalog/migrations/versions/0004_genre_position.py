"""media_genre.position: genres keep the server's order (the first is the main genre)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 23:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "media_genre", sa.Column("position", sa.Integer(), nullable=False, server_default="0")
    )
    # The order of existing links is lost: forget the digest of every item with more than one
    # genre, so the next sync rewrites it (and its genres, in the server's order) once.
    op.execute(
        "UPDATE media SET content_hash = '' WHERE id IN "
        "(SELECT media_id FROM media_genre GROUP BY media_id HAVING count(*) > 1)"
    )


def downgrade() -> None:
    with op.batch_alter_table("media_genre") as batch_op:
        batch_op.drop_column("position")
