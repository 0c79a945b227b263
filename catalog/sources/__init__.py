"""Media-server sources: each yields a server's libraries and their items, parsed, page by page.

A source knows nothing about the database; `catalog.sync` knows nothing about HTTP. The domain
types live in `catalog.items` (re-exported here for the sources' own use).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from catalog.items import InvalidItem, Library, MediaItem, Page, RawItem

__all__ = ["InvalidItem", "Library", "MediaItem", "Page", "RawItem", "Source"]


class Source(Protocol):
    """What the sync pipeline needs from a media server."""

    url: str

    async def libraries(self) -> list[Library]: ...

    def syncs_by_default(self, library: Library) -> bool:
        """Whether a sync that names no library takes this one (the server's video libraries)."""
        ...

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
