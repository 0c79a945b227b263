"""indexes for keyset pages of media and for deleting tags

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 01:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# `catalog media list` pages on (sort key, id) over every library; with --library the planner
# filters these (the name sort has ix_media_library_sort). The tag_alias index serves the
# ON DELETE CASCADE check when a tag is deleted, which otherwise scans tag_alias.
INDEXES = (
    ("ix_media_sort_name_id", "media", ["sort_name", "id"]),
    ("ix_media_year_id", "media", ["year", "id"]),
    ("ix_media_added_id", "media", ["added_at", "id"]),
    ("ix_media_rating_id", "media", ["community_rating", "id"]),
    ("ix_tag_alias_tag_id", "tag_alias", ["tag_id"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
