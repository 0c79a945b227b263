"""Build the source for a configured server: one HTTP client per command, closed with it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from catalog.config import ServerConfig, SyncConfig
from catalog.errors import SOURCE_ERRORS
from catalog.http import HttpClient, HttpStats, Peer, RetryPolicy, safe_url
from catalog.sources.jellyfin import JellyfinSource, auth_headers


def source_peer(server: ServerConfig) -> Peer:
    """A media server as messages name it, failing with the Source* errors."""
    return Peer(
        f"{server.kind} server at {safe_url(server.url.rstrip('/'))}",
        SOURCE_ERRORS,
        token_hint="check the server token setting",
        size_hint=" (lower the page size or raise sync.max_page_bytes)",
    )


@asynccontextmanager
async def open_source(
    server: ServerConfig,
    sync: SyncConfig,
    stats: HttpStats | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[JellyfinSource]:
    """A ready source for `server` (Jellyfin or Emby); the token travels in a header only, and
    only to the server itself."""
    async with HttpClient(
        server.url,
        peer=source_peer(server),
        policy=RetryPolicy.of(
            sync, max_bytes=sync.max_page_bytes, redirect_hosts=server.redirect_hosts
        ),
        credentials=auth_headers(server.kind, server.token),
        headers={"Accept": "application/json"},
        stats=stats,
        transport=transport,
    ) as http:
        yield JellyfinSource(http, kind=server.kind, page_size=sync.page_size)
