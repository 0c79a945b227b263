"""Media-server sources: each yields a server's libraries and their items, parsed, page by page.

A source knows nothing about the database; `catalog.sync` knows nothing about HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Protocol


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
