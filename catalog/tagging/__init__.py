"""The tagging service client: what we ask, what we get back, and how calls are paced.

`client.TaggerClient` sends one item's call through the HTTP seam (`catalog.http`, which does
the retrying), paced by a shared rate limiter (`flow.RateLimiter`, plugged in as the seam's
`Pacing`) and guarded by a circuit breaker (`flow.CircuitBreaker`); `backends` knows each
service's request and answer shapes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TagRequest:
    """What the tagging service is told about one catalog item."""

    media_id: int
    title: str
    input_hash: str  # the item's content hash when it was sent: recorded with the answer
    description: str | None = None
    genres: tuple[str, ...] = ()
    rating: str | None = None
    critical_rating: float | None = None
    audience_rating: float | None = None
    duration_minutes: int | None = None
    current_tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TagAnswer:
    """The service's tags (and taglines) for one item, cleaned of blanks and repeats."""

    tags: tuple[str, ...]
    taglines: tuple[str, ...] = ()
