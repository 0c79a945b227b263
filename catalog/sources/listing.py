"""What every source's listing shares: the digest that tells an unchanged item before it is
parsed, the drop of items repeated at a page boundary, and the bounds of a rating."""

from __future__ import annotations

import hashlib

from catalog.items import RawItem, Unsafe


def content_hash(body: bytes) -> str:
    """A digest of the item as served. Comparing it with the stored one lets a sync skip an
    unchanged item before parsing it; the price is that a change in a field we do not store
    (artwork tags, say) also rewrites the item, once."""
    return hashlib.blake2b(body, digest_size=16).hexdigest()


def drop_repeats(items: list[RawItem], previous_ids: frozenset[str]) -> list[RawItem]:
    """Drop items already yielded on the previous page or earlier on this one: sort ties are
    unstable across pages, and a full sync reconciles what a boundary skipped."""
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
