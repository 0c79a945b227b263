"""Typed SQLAlchemy mappings of the catalog schema (the latest migration must agree with these).

Link tables (media_tag, media_genre, media_tagline) carry no foreign keys: a per-row FK check
costs about as much as the rest of the insert on PostgreSQL. Code that deletes media deletes
their links in the same transaction, and `catalog db check` proves there are no orphans.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

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


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


class Server(Base):
    __tablename__ = "server"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    url: Mapped[str] = mapped_column(Text)


class Library(Base):
    __tablename__ = "library"
    __table_args__ = (UniqueConstraint("server_id", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    server_id: Mapped[int] = mapped_column(ForeignKey("server.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_CHARS))
    name: Mapped[str] = mapped_column(Text)
    kind: Mapped[str | None] = mapped_column(String(40))
    last_full_sync_at: Mapped[datetime | None]
    last_sync_at: Mapped[datetime | None]


class Media(Base):
    __tablename__ = "media"
    __table_args__ = (
        UniqueConstraint("library_id", "external_id"),
        # Keyset pages of `catalog media list`, one per sort (migration 0002, which dropped
        # (library_id, sort_name, id): every index costs the sync, and with --library the
        # planner walks these and skips other libraries' items).
        Index("ix_media_sort_name_id", "sort_name", "id"),
        Index("ix_media_year_id", "year", "id"),
        Index("ix_media_added_id", "added_at", "id"),
        Index("ix_media_rating_id", "community_rating", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    library_id: Mapped[int] = mapped_column(ForeignKey("library.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_CHARS))
    kind: Mapped[str] = mapped_column(String(KIND_CHARS))
    name: Mapped[str] = mapped_column(Text)
    sort_name: Mapped[str] = mapped_column(Text)
    overview: Mapped[str | None] = mapped_column(Text)
    year: Mapped[int | None] = mapped_column(Integer)
    premiere: Mapped[date | None] = mapped_column(Date)
    community_rating: Mapped[float | None] = mapped_column(Float)
    critic_rating: Mapped[float | None] = mapped_column(Float)
    official_rating: Mapped[str | None] = mapped_column(String(OFFICIAL_RATING_CHARS))
    subtitles: Mapped[bool] = mapped_column(Boolean, default=False)
    runtime_s: Mapped[int | None] = mapped_column(Integer)
    # The series an episode belongs to, as the server names it: episodes may arrive before
    # their series, so an integer key would need a second pass.
    parent_external_id: Mapped[str | None] = mapped_column(String(EXTERNAL_ID_CHARS))
    season: Mapped[int | None] = mapped_column(Integer)
    episode: Mapped[int | None] = mapped_column(Integer)
    provider_ids: Mapped[dict[str, Any] | None]
    added_at: Mapped[datetime | None]
    content_hash: Mapped[str] = mapped_column(String(32))
    first_seen_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    missing_since: Mapped[datetime | None]


class Tag(Base):
    __tablename__ = "tag"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_CHARS), unique=True)


class MediaTag(Base):
    __tablename__ = "media_tag"
    __table_args__ = (Index("ix_media_tag_tag_media", "tag_id", "media_id"), NO_ROWID)

    media_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True
    )
    tag_id: Mapped[int] = mapped_column(primary_key=True)
    origin: Mapped[str] = mapped_column(String(10), primary_key=True)


class TagAlias(Base):
    """What normalization decided for a raw tag name; tag_id NULL means the tag is dropped."""

    __tablename__ = "tag_alias"
    # Deleting a tag makes the ON DELETE CASCADE check look its aliases up by tag_id.
    __table_args__ = (Index("ix_tag_alias_tag_id", "tag_id"),)

    raw_name: Mapped[str] = mapped_column(String(NAME_CHARS), primary_key=True)
    tag_id: Mapped[int | None] = mapped_column(ForeignKey("tag.id", ondelete="CASCADE"))


class Genre(Base):
    __tablename__ = "genre"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_CHARS), unique=True)


class MediaGenre(Base):
    __tablename__ = "media_genre"
    __table_args__ = (Index("ix_media_genre_genre_media", "genre_id", "media_id"), NO_ROWID)

    media_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True
    )
    genre_id: Mapped[int] = mapped_column(primary_key=True)
    # The server's order: the first genre is the main one (migration 0004).
    position: Mapped[int] = mapped_column(Integer, server_default="0")


class MediaTagline(Base):
    __tablename__ = "media_tagline"
    __table_args__ = (NO_ROWID,)

    media_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True
    )
    origin: Mapped[str] = mapped_column(String(10), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(Text)


class ProcessRun(Base):
    """The last run of a per-item process (e.g. tagging) for one item: when it last ran and how
    that went, when it last succeeded, and the item's content hash it succeeded on."""

    __tablename__ = "process_run"
    __table_args__ = (NO_ROWID,)

    media_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True
    )
    process: Mapped[str] = mapped_column(String(40), primary_key=True)
    last_run_at: Mapped[datetime]
    # The last run that succeeded: a failed retry must not make a freshly tagged item overdue,
    # nor hide that an item was never tagged.
    last_success_at: Mapped[datetime | None]
    input_hash: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text)


class Run(Base):
    """One invocation of a command, kept for a bounded number of runs."""

    __tablename__ = "run"
    __table_args__ = (Index("ix_run_command_started", "command", "started_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    command: Mapped[str] = mapped_column(String(40))
    server: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(20))
    counts: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)


class PushedTag(Base):
    """A catalog tag `catalog push` wrote to the server for one item. `added`: the server did
    not have it before, so push owns it (removes it when the catalog drops it, takes it back on
    undo, and a sync does not link it as a server tag); otherwise the server had it already and
    it stays whatever the catalog does."""

    __tablename__ = "pushed_tag"
    __table_args__ = (NO_ROWID,)

    media_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    added: Mapped[bool] = mapped_column(Boolean)
    pushed_at: Mapped[datetime]


class SyncSeen(Base):
    """Scratch of a full sync in progress: the unchanged items of a library it has seen. They
    are not rewritten (that is what makes a re-sync cheap), so this is how the reconciliation
    tells them from the items gone from the server. Emptied when the pass is reconciled, and
    when the next pass starts after one that was killed."""

    __tablename__ = "sync_seen"
    __table_args__ = (NO_ROWID,)

    library_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    media_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True
    )


class RetagWorker(Base):
    """A `catalog retag` process sharing a PostgreSQL catalog's overdue items with others: alive
    while its heartbeat is younger than `tagger.lease_s`; `slots` and `starts` are the calls in
    flight and the call starts per second it holds of the tagging service's limits."""

    __tablename__ = "retag_worker"

    id: Mapped[str] = mapped_column(String(120), primary_key=True)
    run_id: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]
    slots: Mapped[int] = mapped_column(Integer)
    starts: Mapped[int] = mapped_column(Integer)


class RetagClaim(Base):
    """An overdue item a retag worker took: no other worker calls it while `lease_until` is to
    come (the worker renews it with each heartbeat, and deletes it with the item's answer)."""

    __tablename__ = "retag_claim"

    media_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True
    )
    worker_id: Mapped[str] = mapped_column(String(120), index=True)
    lease_until: Mapped[datetime]


LINK_TABLES = (
    MediaTag.__table__,
    MediaGenre.__table__,
    MediaTagline.__table__,
    ProcessRun.__table__,
    PushedTag.__table__,
)
