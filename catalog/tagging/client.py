"""One run's client of the tagging service: a pooled httpx.AsyncClient, the shared rate limiter
and circuit breaker, retries with capped jittered backoff, Retry-After for every worker."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx

from catalog.config import TaggerConfig
from catalog.errors import MalformedAnswer, TaggerAuthError, TaggerCallFailed, TaggerError
from catalog.http import HttpStats, RetryPolicy, parse_retry_after
from catalog.tagging import TagAnswer, TagRequest
from catalog.tagging.backends import Backend, backend_for
from catalog.tagging.flow import CircuitBreaker, RateLimiter

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
CONNECT_TIMEOUT_S = 10.0


class _Retry(Exception):
    """An attempt failed in a way worth retrying (after `wait` seconds, or backoff if None)."""

    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.wait = wait


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
        self.stats = HttpStats()
        self.limiter = RateLimiter(config.rate, config.effective_burst)
        self.breaker = CircuitBreaker(
            config.breaker_failures, config.breaker_cooldown_s, config.breaker_max_opens
        )
        self.policy = RetryPolicy(config.retries, config.backoff_s, config.backoff_max_s)
        headers = {"Authorization": f"Bearer {config.token}"} if config.token else {}
        pool = httpx.Limits(
            max_connections=config.concurrency, max_keepalive_connections=config.concurrency
        )
        self._http = httpx.AsyncClient(
            base_url=config.url.rstrip("/"),
            headers={**headers, "Accept": "application/json", "User-Agent": "catalog"},
            timeout=httpx.Timeout(
                config.timeout_s, connect=min(CONNECT_TIMEOUT_S, config.timeout_s)
            ),
            limits=pool,
            transport=transport,
        )

    async def __aenter__(self) -> TaggerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    async def tag(self, request: TagRequest, existing_tags: list[str]) -> TagAnswer:
        """The service's answer for one item. Raises TaggerCallFailed (or MalformedAnswer) when
        this item fails, TaggerAuthError or CircuitOpen when the whole run must stop."""
        await self.breaker.admit()
        payload = self.backend.payload(request, existing_tags)
        try:
            body = await self._call_with_retries(payload)
        except MalformedAnswer:
            self.breaker.success()
            raise
        except TaggerCallFailed as exc:
            self.breaker.failure(str(exc))
            raise
        self.breaker.success()  # the service answered; whether with tags is the item's problem
        return self.backend.parse(body)

    async def _call_with_retries(self, payload: dict[str, Any]) -> bytes:
        for attempt in range(self.policy.retries + 1):
            await self.limiter.acquire()
            try:
                return await self._attempt(payload)
            except _Retry as retry:
                if attempt == self.policy.retries:
                    raise TaggerCallFailed(f"{retry} after {attempt + 1} attempts") from None
                self.stats.retries += 1
                await asyncio.sleep(self.policy.delay(attempt, retry.wait))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(self, payload: dict[str, Any]) -> bytes:
        self.stats.requests += 1
        try:
            async with self._http.stream("POST", self.backend.path, json=payload) as response:
                self._check(response)
                return await self._read_capped(response)
        except httpx.TimeoutException as exc:
            raise _Retry(f"timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise _Retry(f"{type(exc).__name__}: {_first_line(exc)}") from None

    def _check(self, response: httpx.Response) -> None:
        status = response.status_code
        if status < 400:
            self.limiter.recover()
            return
        if status in (401, 403):
            raise TaggerAuthError(
                f"the tagging service refused the token (HTTP {status}); "
                "check CATALOG_TAGGER_TOKEN / [tagger] token"
            )
        if status in (404, 405):
            raise TaggerError(
                f"the tagging service at {self.config.url} answered HTTP {status} to POST "
                f"{self.backend.path}; check CATALOG_TAGGER_URL / [tagger] url and kind"
            )
        if status not in RETRY_STATUSES:
            raise TaggerCallFailed(f"the tagging service answered HTTP {status}")
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if status == 429 or retry_after is not None:
            # The service said how long to back off: every worker holds, and the pace drops.
            self.stats.rate_limited += 1
            self.limiter.pause(min(retry_after or 1.0, self.policy.retry_after_max_s))
            self.limiter.slow_down()
        raise _Retry(f"HTTP {status}", retry_after)

    async def _read_capped(self, response: httpx.Response) -> bytes:
        cap = self.config.max_answer_bytes
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > cap:
            raise MalformedAnswer(f"answer of {declared} bytes refused (cap {cap})")
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > cap:
                raise MalformedAnswer(f"answer over {cap} bytes refused")
        return bytes(body)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no detail"
