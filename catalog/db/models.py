"""The catalog schema as SQLAlchemy Core tables (the latest migration must agree with these).

Link tables (media_tag, media_genre, media_tagline) carry no foreign keys: a per-row FK check
costs about as much as the rest of the insert on PostgreSQL. Code that deletes media deletes
their links in the same transaction, and `catalog db check` proves there are no orphans.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)

from catalog.items import EXTERNAL_ID_CHARS, KIND_CHARS, NAME_CHARS, OFFICIAL_RATING_CHARS

NAMING = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# On SQLite, link tables keyed by their whole row are stored in their primary-key B-tree alone
# (a rowid table keeps the rows and that index separately): one B-tree less per link inserted.
NO_ROWID = {"sqlite_with_rowid": False}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every dialect (SQLite would otherwise hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        # SQLite keeps datetimes as ISO text, which SQLAlchemy parses with a regular expression
        # per value: reading a page of items cost more in that than in SQLite. fromisoformat
        # reads the same text in C.
        if dialect.name == "sqlite":
            return _utc_from_sqlite
        return super().result_processor(dialect, coltype)


def _utc_from_sqlite(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


metadata = MetaData(naming_convention=NAMING)

BIG_ID = BigInteger().with_variant(Integer, "sqlite")  # media ids; SQLite's INTEGER is 64-bit


def _media_id(**options: Any) -> Column[int]:
    return Column("media_id", BIG_ID, nullable=False, **options)


SERVER = Table(
    "server", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("kind", String(20), nullable=False),
    Column("url", Text, nullable=False),
)  # fmt: skip

LIBRARY = Table(
    "library", metadata,
    Column("id", Integer, primary_key=True),
    Column("server_id", Integer, ForeignKey("server.id", ondelete="CASCADE"), nullable=False),
    Column("external_id", String(EXTERNAL_ID_CHARS), nullable=False),
    Column("name", Text, nullable=False),
    Column("kind", String(40)),
    Column("last_full_sync_at", UTCDateTime()),
    Column("last_sync_at", UTCDateTime()),
    UniqueConstraint("server_id", "external_id"),
)  # fmt: skip

MEDIA = Table(
    "media", metadata,
    Column("id", BIG_ID, primary_key=True),
    Column("library_id", Integer, ForeignKey("library.id", ondelete="CASCADE"), nullable=False),
    Column("external_id", String(EXTERNAL_ID_CHARS), nullable=False),
    Column("kind", String(KIND_CHARS), nullable=False),
    Column("name", Text, nullable=False),
    Column("sort_name", Text, nullable=False),
    Column("overview", Text),
    Column("year", Integer),
    Column("premiere", Date),
    Column("community_rating", Float),
    Column("critic_rating", Float),
    Column("official_rating", String(OFFICIAL_RATING_CHARS)),
    Column("subtitles", Boolean, nullable=False, default=False),
    Column("runtime_s", Integer),
    # The series an episode belongs to, as the server names it: episodes may arrive before
    # their series, so an integer key would need a second pass.
    Column("parent_external_id", String(EXTERNAL_ID_CHARS)),
    Column("season", Integer),
    Column("episode", Integer),
    Column("provider_ids", JSON()),
    Column("added_at", UTCDateTime()),
    Column("content_hash", String(32), nullable=False),
    Column("first_seen_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("last_seen_at", UTCDateTime(), nullable=False),
    Column("missing_since", UTCDateTime()),
    UniqueConstraint("library_id", "external_id"),
    # Keyset pages of `catalog media list`, one per sort (migration 0002, which dropped
    # (library_id, sort_name, id): every index costs the sync, and with --library the
    # planner walks these and skips other libraries' items).
    Index("ix_media_sort_name_id", "sort_name", "id"),
    Index("ix_media_year_id", "year", "id"),
    Index("ix_media_added_id", "added_at", "id"),
    Index("ix_media_rating_id", "community_rating", "id"),
)  # fmt: skip

TAG = Table(
    "tag", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(NAME_CHARS), nullable=False, unique=True),
)  # fmt: skip

MEDIA_TAG = Table(
    "media_tag", metadata,
    _media_id(primary_key=True),
    Column("tag_id", Integer, primary_key=True),
    Column("origin", String(10), primary_key=True),
    Index("ix_media_tag_tag_media", "tag_id", "media_id"),
    **NO_ROWID,
)  # fmt: skip

# What normalization decided for a raw tag name; tag_id NULL means the tag is dropped.
TAG_ALIAS = Table(
    "tag_alias", metadata,
    Column("raw_name", String(NAME_CHARS), primary_key=True),
    Column("tag_id", Integer, ForeignKey("tag.id", ondelete="CASCADE")),
    # Deleting a tag makes the ON DELETE CASCADE check look its aliases up by tag_id.
    Index("ix_tag_alias_tag_id", "tag_id"),
)  # fmt: skip

GENRE = Table(
    "genre", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(NAME_CHARS), nullable=False, unique=True),
)  # fmt: skip

MEDIA_GENRE = Table(
    "media_genre", metadata,
    _media_id(primary_key=True),
    Column("genre_id", Integer, primary_key=True),
    # The server's order: the first genre is the main one (migration 0004).
    Column("position", Integer, nullable=False, server_default="0"),
    Index("ix_media_genre_genre_media", "genre_id", "media_id"),
    **NO_ROWID,
)  # fmt: skip

MEDIA_TAGLINE = Table(
    "media_tagline", metadata,
    _media_id(primary_key=True),
    Column("origin", String(10), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("text", Text, nullable=False),
    **NO_ROWID,
)  # fmt: skip

# The last run of a per-item process (e.g. tagging) for one item: when it last ran and how that
# went, when it last succeeded, and the item's content hash it succeeded on.
PROCESS_RUN = Table(
    "process_run", metadata,
    _media_id(primary_key=True),
    Column("process", String(40), primary_key=True),
    Column("last_run_at", UTCDateTime(), nullable=False),
    # The last run that succeeded: a failed retry must not make a freshly tagged item overdue,
    # nor hide that an item was never tagged.
    Column("last_success_at", UTCDateTime()),
    Column("input_hash", String(32)),
    Column("status", String(20), nullable=False),
    Column("error", Text),
    **NO_ROWID,
)  # fmt: skip

# One invocation of a command, kept for a bounded number of runs.
RUN = Table(
    "run", metadata,
    Column("id", Integer, primary_key=True),
    Column("command", String(40), nullable=False),
    Column("server", String(200)),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime()),
    Column("status", String(20), nullable=False),
    Column("counts", JSON()),
    Column("error", Text),
    Index("ix_run_command_started", "command", "started_at"),
)  # fmt: skip

# A catalog tag `catalog push` wrote to the server for one item. `added`: the server did not
# have it before, so push owns it (removes it when the catalog drops it, takes it back on undo,
# and a sync does not link it as a server tag); otherwise the server had it already and it
# stays whatever the catalog does.
PUSHED_TAG = Table(
    "pushed_tag", metadata,
    _media_id(primary_key=True),
    Column("name", String(200), primary_key=True),
    Column("added", Boolean, nullable=False),
    Column("pushed_at", UTCDateTime(), nullable=False),
    **NO_ROWID,
)  # fmt: skip

# A `catalog retag` process sharing a PostgreSQL catalog's overdue items with others: alive while
# its heartbeat is younger than `tagger.lease_s`; `slots` and `starts` are the calls in flight
# and the call starts per second it holds of the tagging service's limits.
RETAG_WORKER = Table(
    "retag_worker", metadata,
    Column("id", String(120), primary_key=True),
    Column("run_id", Integer),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("heartbeat_at", UTCDateTime(), nullable=False),
    Column("slots", Integer, nullable=False),
    Column("starts", Integer, nullable=False),
)  # fmt: skip

# An overdue item a retag worker took: no other worker calls it while `lease_until` is to come
# (the worker renews it with each heartbeat, and deletes it with the item's answer).
RETAG_CLAIM = Table(
    "retag_claim", metadata,
    _media_id(primary_key=True),
    Column("worker_id", String(120), nullable=False, index=True),
    Column("lease_until", UTCDateTime(), nullable=False),
)  # fmt: skip

LINK_TABLES = (MEDIA_TAG, MEDIA_GENRE, MEDIA_TAGLINE, PROCESS_RUN, PUSHED_TAG)
