"""One run's client of the tagging service: the HTTP seam (`catalog.http`), paced by the shared
rate limiter and guarded by the circuit breaker; the seam retries, this maps the answers."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx

from catalog.config import TaggerConfig
from catalog.errors import (
    TAGGER_ERRORS,
    CatalogError,
    MalformedAnswer,
    TaggerCallFailed,
    TaggerError,
)
from catalog.http import HttpClient, Peer, RetryPolicy, safe_url
from catalog.tagging import TagAnswer, TagRequest
from catalog.tagging.backends import Backend, backend_for
from catalog.tagging.flow import CircuitBreaker, LimiterPacing, RateLimiter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaggerPeer(Peer):
    """The tagging service: a 404/405 means the URL or kind is wrong, which no retry mends."""

    url: str = ""

    def status_error(self, status: int, request: str) -> CatalogError:
        if status in (404, 405):
            return TaggerError(
                f"the tagging service at {self.url} answered HTTP {status} to {request}; "
                "check CATALOG_TAGGER_URL / [tagger] url and kind"
            )
        return super().status_error(status, request)


def tagger_peer(config: TaggerConfig) -> TaggerPeer:
    url = safe_url(config.url.rstrip("/"))
    return TaggerPeer(
        f"the tagging service at {url}",
        TAGGER_ERRORS,
        token_hint="check CATALOG_TAGGER_TOKEN / [tagger] token",
        size_hint=" (raise tagger.max_answer_bytes)",
        url=url,
    )


class TaggerClient:
    """Tags one item per `tag` call; many calls may run at once, paced together."""

    def __init__(
        self,
        config: TaggerConfig,
        *,
        backend: Backend | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.backend = backend or backend_for(config.kind, config.model)
        self.limiter = RateLimiter(config.rate, config.effective_burst, slots=config.concurrency)
        self.breaker = CircuitBreaker(
            config.breaker_failures, config.breaker_cooldown_s, config.breaker_max_opens
        )
        pool = httpx.Limits(
            max_connections=config.concurrency, max_keepalive_connections=config.concurrency
        )
        self._http = HttpClient(
            config.url,
            peer=tagger_peer(config),
            policy=RetryPolicy.of(
                config, max_bytes=config.max_answer_bytes, redirect_hosts=config.redirect_hosts
            ),
            credentials={"Authorization": f"Bearer {config.token}"} if config.token else {},
            headers={"Accept": "application/json"},
            pacing=LimiterPacing(self.limiter),
            limits=pool,
            transport=transport,
        )
        self.stats = self._http.stats
        self.policy = self._http.policy

    async def __aenter__(self) -> TaggerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    async def tag(self, request: TagRequest, existing_tags: list[str]) -> TagAnswer:
        """The service's answer for one item. Raises TaggerCallFailed (or MalformedAnswer) when
        this item fails, TaggerAuthError or CircuitOpen when the whole run must stop. The call
        holds one of the limiter's slots, its retries included."""
        async with self.limiter.slot():
            return await self._tag(request, existing_tags)

    async def _tag(self, request: TagRequest, existing_tags: list[str]) -> TagAnswer:
        await self.breaker.admit()
        payload = self.backend.payload(request, existing_tags)
        try:
            body = await self._http.request("POST", self.backend.path, json=payload)
        except MalformedAnswer:
            self.breaker.success()
            raise
        except TaggerCallFailed as exc:
            self.breaker.failure(str(exc))
            raise
        self.breaker.success()  # the service answered; whether with tags is the item's problem
        return self.backend.parse(body)
