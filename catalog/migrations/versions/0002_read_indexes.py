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

# `catalog media list` pages on (sort key, id); with --library the planner walks these and
# skips other libraries' items. Every index on media costs each synced item a B-tree insert,
# so (library_id, sort_name, id) goes: (sort_name, id) serves the same pages. The tag_alias
# index serves the ON DELETE CASCADE check when a tag is deleted, which otherwise scans it.
INDEXES = (
    ("ix_media_sort_name_id", "media", ["sort_name", "id"]),
    ("ix_media_year_id", "media", ["year", "id"]),
    ("ix_media_added_id", "media", ["added_at", "id"]),
    ("ix_media_rating_id", "media", ["community_rating", "id"]),
    ("ix_tag_alias_tag_id", "tag_alias", ["tag_id"]),
)


REPLACED = ("ix_media_library_sort", "media", ["library_id", "sort_name", "id"])


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)
    op.drop_index(REPLACED[0], table_name=REPLACED[1])


def downgrade() -> None:
    op.create_index(*REPLACED, unique=False)
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
