"""HTTP plumbing shared by every outbound client: retries with capped, jittered backoff that
honour Retry-After, a cap on response size, and one-line errors that never carry a secret."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from catalog.errors import SourceAuthError, SourceResponseError, SourceUnreachable

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a request."""

    retries: int = 5
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0
    retry_after_max_s: float = 300.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `attempt` (0-based): Retry-After if the server
        gave one, else full-jitter exponential backoff."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_max_s)
        return random.uniform(0, min(self.backoff_max_s, self.backoff_s * 2**attempt))


@dataclass
class HttpStats:
    """What the retry loop did, for the run summary."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


async def get_bytes(
    client: httpx.AsyncClient,
    path: str,
    *,
    params: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    policy: RetryPolicy,
    stats: HttpStats,
    max_bytes: int = DEFAULT_MAX_BYTES,
    who: str = "the server",
) -> bytes:
    """GET `path` and return the (decompressed) body, retrying what is worth retrying."""
    for attempt in range(policy.retries + 1):
        last = attempt == policy.retries
        stats.requests += 1
        try:
            async with client.stream("GET", path, params=params, headers=headers) as response:
                retry_in = _check_status(response, path, who, last)
                if retry_in is None:
                    return await _read_capped(response, max_bytes, path, who)
                if response.status_code in (429, 503):
                    stats.rate_limited += 1
        except httpx.TransportError as exc:
            if last:
                raise SourceUnreachable(
                    f"{who} did not answer GET {path} after {attempt + 1} attempts: "
                    f"{type(exc).__name__}: {_reason(exc)}"
                ) from exc
            retry_in = -1.0
            log.warning("GET %s failed (%s), retrying", path, type(exc).__name__)
        stats.retries += 1
        await asyncio.sleep(policy.delay(attempt, retry_in if retry_in >= 0 else None))
    raise AssertionError("unreachable")  # pragma: no cover


def _check_status(response: httpx.Response, path: str, who: str, last: bool) -> float | None:
    """None when the response is good; seconds to wait (or -1: backoff) when it should be
    retried; raises when it never will be good."""
    status = response.status_code
    if status < 400:
        return None
    if status in (401, 403):
        raise SourceAuthError(
            f"{who} refused the token (HTTP {status}); check the server token setting"
        )
    if status in RETRY_STATUSES and not last:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        log.warning("GET %s answered HTTP %s, retrying", path, status)
        return -1.0 if retry_after is None else retry_after
    raise SourceResponseError(f"{who} answered HTTP {status} to GET {path}")


async def _read_capped(response: httpx.Response, max_bytes: int, path: str, who: str) -> bytes:
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(path, who, max_bytes)
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > max_bytes:
            raise _too_large(path, who, max_bytes)
    return bytes(body)


def _too_large(path: str, who: str, max_bytes: int) -> SourceResponseError:
    return SourceResponseError(
        f"{who} sent more than {max_bytes // (1024 * 1024)} MiB for GET {path}; refused "
        "(lower the page size or raise sync.max_page_bytes)"
    )


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no detail"
