"""Media-server sources: each yields a server's libraries and their items, parsed, page by page.

A source knows nothing about the database; `catalog.sync` knows nothing about HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Library:
    """A library (Jellyfin "virtual folder") as the server names it."""

    external_id: str
    name: str
    kind: str | None


@dataclass(frozen=True, slots=True)
class MediaItem:
    """One movie, series or episode, validated and normalised."""

    external_id: str
    kind: str
    name: str
    sort_name: str
    overview: str | None = None
    year: int | None = None
    premiere: date | None = None
    community_rating: float | None = None
    critic_rating: float | None = None
    official_rating: str | None = None
    subtitles: bool = False
    runtime_s: int | None = None
    parent_external_id: str | None = None
    season: int | None = None
    episode: int | None = None
    provider_ids: dict[str, str] = field(default_factory=dict)
    added_at: datetime | None = None
    tags: tuple[str, ...] = ()
    genres: tuple[str, ...] = ()
    taglines: tuple[str, ...] = ()
    content_hash: str = ""


@dataclass(frozen=True, slots=True)
class InvalidItem:
    """An item the server sent that failed validation; counted, logged and skipped."""

    external_id: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class RawItem:
    """An item as the server sent it: its id and a digest of its bytes, enough to tell whether
    it changed since the last sync. It is parsed (by its source) only when it did."""

    external_id: str | None
    digest: str
    raw: bytes


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a library listing; `total` is known only on the first page."""

    items: list[RawItem]
    total: int | None = None


class Source(Protocol):
    """What the sync pipeline needs from a media server."""

    url: str

    async def libraries(self) -> list[Library]: ...

    def pages(self, library: Library, since: datetime | None = None) -> AsyncIterator[Page]: ...

    def parse(self, item: RawItem) -> MediaItem | InvalidItem: ...


@dataclass(frozen=True, slots=True)
class PushItem:
    """An item as `catalog push` addresses it on its server."""

    external_id: str
    kind: str  # movie, series, episode (the catalog's kinds)
    library_external_id: str


@dataclass(frozen=True, slots=True)
class ServerTags:
    """An item's tags as the server holds them now, in its order, and whatever else the writer
    read that the write needs (Jellyfin: the whole item, to send back)."""

    tags: tuple[str, ...]
    state: Any = None


class TagWriter(Protocol):
    """What `catalog push` needs from a media server: read an item's tags, write a new set."""

    # Kinds whose tags are not written (Jellyfin: series, see jellyfin_write).
    kinds_left_alone: frozenset[str]

    async def read(self, item: PushItem) -> ServerTags: ...

    async def write(self, item: PushItem, current: ServerTags, goal: tuple[str, ...]) -> None: ...
