"""Build the source for a configured server: one HTTP client per command, closed with it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from catalog.config import ServerConfig, SyncConfig
from catalog.errors import SourceAuthError, SourceResponseError, SourceUnreachable
from catalog.http import HttpClient, HttpStats, Peer, RetryPolicy, safe_url
from catalog.sources.jellyfin import JellyfinSource, auth_headers


def source_peer(server: ServerConfig) -> Peer:
    """A media server as messages name it, failing with the Source* errors."""
    return Peer(
        f"{server.kind} server at {safe_url(server.url.rstrip('/'))}",
        unreachable=SourceUnreachable,
        refused=SourceAuthError,
        failed=SourceResponseError,
        oversized=SourceResponseError,
        token_hint="check the server token setting",
        size_hint=" (lower the page size or raise sync.max_page_bytes)",
    )


def source_policy(server: ServerConfig, sync: SyncConfig) -> RetryPolicy:
    return RetryPolicy(
        retries=sync.retries,
        backoff_s=sync.backoff_s,
        backoff_max_s=sync.backoff_max_s,
        retry_after_max_s=sync.retry_after_max_s,
        timeout_s=sync.timeout_s,
        deadline_s=sync.deadline_s or None,
        max_bytes=sync.max_page_bytes,
        redirect_hosts=frozenset(server.redirect_hosts),
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
        policy=source_policy(server, sync),
        credentials=auth_headers(server.kind, server.token),
        headers={"Accept": "application/json"},
        stats=stats,
        transport=transport,
    ) as http:
        yield JellyfinSource(http, kind=server.kind, page_size=sync.page_size)
