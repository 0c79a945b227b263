"""Build the source for a configured server: one HTTP client per command, closed with it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from catalog.config import ServerConfig, SyncConfig
from catalog.http import HttpStats, RetryPolicy
from catalog.sources import Source
from catalog.sources.jellyfin import JellyfinSource, auth_headers
from catalog.sources.plex import PlexSource, client_headers

CONNECT_TIMEOUT_S = 10.0


@asynccontextmanager
async def open_source(
    server: ServerConfig, sync: SyncConfig, stats: HttpStats | None = None
) -> AsyncIterator[Source]:
    """A ready source for `server` (Jellyfin, Emby or Plex); the token travels in a header only."""
    timeout = httpx.Timeout(sync.timeout_s, connect=min(CONNECT_TIMEOUT_S, sync.timeout_s))
    policy = RetryPolicy(
        retries=sync.retries, backoff_s=sync.backoff_s, backoff_max_s=sync.backoff_max_s
    )
    plex = server.kind == "plex"
    auth = client_headers(server.token) if plex else auth_headers(server.kind, server.token)
    headers = {"Accept": "application/json", **auth}
    async with httpx.AsyncClient(
        base_url=server.url.rstrip("/"),
        headers=headers,
        timeout=timeout,
        limits=httpx.Limits(max_connections=4, max_keepalive_connections=2),
        follow_redirects=True,
        trust_env=False,
    ) as client:
        options = {"page_size": sync.page_size, "policy": policy,
                   "max_page_bytes": sync.max_page_bytes, "stats": stats}  # fmt: skip
        if plex:
            yield PlexSource(client, **options)
        else:
            yield JellyfinSource(client, kind=server.kind, **options)
