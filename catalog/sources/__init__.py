"""Media-server sources: each yields a server's libraries and their items, parsed, page by page.

A source knows nothing about the database; `catalog.sync` knows nothing about HTTP. The domain
types live in `catalog.items` (re-exported here for the sources' own use).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Protocol

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
