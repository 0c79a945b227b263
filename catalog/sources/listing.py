"""What every source's listing shares: the HTTP plumbing of a source, the drop of items
repeated at a page boundary, and the bounds of a rating (the digest of an item is in
`catalog.digest`)."""

from __future__ import annotations

from typing import Any

import msgspec

from catalog.errors import SourceResponseError
from catalog.http import HttpClient
from catalog.items import RawItem, Unsafe


class HttpSource:
    """A media server read through the HTTP seam we are given
    (`catalog.sources.connect.open_source` builds it); answers decoded with msgspec."""

    def __init__(self, http: HttpClient, *, page_size: int = 500) -> None:
        self.http = http
        self.page_size = page_size
        self.url = http.base_url

    @property
    def who(self) -> str:
        return self.http.peer.name

    def _decode(self, body: bytes, type_: Any, path: str) -> Any:
        try:
            return msgspec.json.decode(body, type=type_)
        except msgspec.DecodeError as exc:
            message = f"{self.who} sent an unexpected answer to {path}: {exc}"
            raise SourceResponseError(message) from exc


def drop_repeats(items: list[RawItem], previous_ids: frozenset[str]) -> list[RawItem]:
    """Drop items already yielded on the previous page or earlier on this one: sort ties are
    unstable across pages, and a full sync reconciles what a boundary skipped."""
    ids = [item.external_id for item in items]
    if None not in ids and len(set(ids)) == len(ids) and previous_ids.isdisjoint(ids):
        return items  # the usual page: nothing repeated, one pass in C
    seen = set(previous_ids)
    kept = []
    for item in items:
        if item.external_id:
            if item.external_id in seen:
                continue
            seen.add(item.external_id)
        kept.append(item)
    return kept


def rating(value: float | None, top: int, name: str) -> float | None:
    """A rating on 0..top, or Unsafe: a rating outside its scale is a broken item, not a value
    to guess at."""
    if value is None:
        return None
    if not 0 <= value <= top:
        raise Unsafe(f"{name} {value:g} is outside 0-{top}")
    return float(value)
