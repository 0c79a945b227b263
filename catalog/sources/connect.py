"""Build the source for a configured server: one HTTP client per command, closed with it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from catalog.config import ServerConfig, SyncConfig
from catalog.errors import SOURCE_ERRORS
from catalog.http import HttpClient, HttpStats, Pacing, Peer, RetryPolicy, safe_url
from catalog.sources import Source, TagWriter, plex
from catalog.sources.jellyfin import JellyfinSource, auth_headers
from catalog.sources.jellyfin_write import EmbyTagWriter, JellyfinTagWriter
from catalog.sources.plex_write import PlexTagWriter


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
) -> AsyncIterator[Source]:
    """A ready source for `server` (Jellyfin, Emby or Plex); the token travels in a header only,
    and only to the server itself."""
    credentials, headers = _headers(server)
    async with HttpClient(
        server.url,
        peer=source_peer(server),
        policy=RetryPolicy.of(
            sync, max_bytes=sync.max_page_bytes, redirect_hosts=server.redirect_hosts
        ),
        credentials=credentials,
        headers=headers,
        stats=stats,
        transport=transport,
    ) as http:
        if server.kind == "plex":
            yield plex.PlexSource(http, page_size=sync.page_size)
        else:
            yield JellyfinSource(http, kind=server.kind, page_size=sync.page_size)


def _headers(server: ServerConfig) -> tuple[dict[str, str], dict[str, str]]:
    """(credentials, other headers) for `server`: the seam keeps credentials to its origin."""
    if server.kind == "plex":
        return plex.credentials(server.token), plex.client_headers()
    return auth_headers(server.kind, server.token), {"Accept": "application/json"}


# An item read or a write answers in a few KiB; a server sending more is misbehaving.
WRITE_ANSWER_BYTES = 4 * 1024 * 1024


@asynccontextmanager
async def open_writer(
    server: ServerConfig,
    policy: RetryPolicy,
    *,
    pacing: Pacing | None = None,
    concurrency: int = 4,
    stats: HttpStats | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[TagWriter]:
    """A tag writer for `server`, its calls paced by `pacing` over `concurrency` connections."""
    credentials, headers = _headers(server)
    pool = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with HttpClient(
        server.url,
        peer=source_peer(server),
        policy=policy,
        credentials=credentials,
        headers=headers,
        stats=stats,
        pacing=pacing,
        limits=pool,
        transport=transport,
    ) as http:
        if server.kind == "plex":
            yield PlexTagWriter(http)
        elif server.kind == "emby":
            yield EmbyTagWriter(http)
        else:
            yield JellyfinTagWriter(http)
