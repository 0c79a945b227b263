"""The tag listing: tags with the number of items carrying each, keyset-paged."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, distinct, func, or_, select

from catalog.cursors import decode_cursor as unpack_cursor
from catalog.cursors import encode_cursor as pack_cursor
from catalog.db.models import MEDIA_TAG, TAG
from catalog.errors import BadCursor

BY_COUNT, BY_NAME = "count", "name"


@dataclass
class TagPage:
    """One page of tags with the number of items carrying each; `next_cursor` None at the end."""

    items: list[dict[str, Any]]
    next_cursor: str | None


def list_tags(
    conn: Connection, order: str = BY_COUNT, limit: int = 100, after: str | None = None
) -> TagPage:
    """Tags by usage (most used first, then by name) or by name, keyset-paged: `after` is the
    cursor the previous page gave. A bad cursor raises BadCursor."""
    key = decode_cursor(after, order) if after else None
    query = _by_count(key) if order == BY_COUNT else _by_name(key)
    rows = conn.execute(query.limit(limit + 1)).all()
    items = [{"name": name, "count": count} for name, count in rows[:limit]]
    more = len(rows) > limit
    last = items[-1] if items else None
    cursor = encode_cursor(order, last) if more and last else None
    return TagPage(items, cursor)


def _by_count(key: list[Any] | None) -> Any:
    # Every tag's count is needed to know which come first; the vocabulary is small.
    usage = (
        select(TAG.c.name, func.count(distinct(MEDIA_TAG.c.media_id)).label("count"))
        .select_from(TAG.outerjoin(MEDIA_TAG, MEDIA_TAG.c.tag_id == TAG.c.id))
        .group_by(TAG.c.id, TAG.c.name)
        .subquery()
    )
    query = select(usage.c.name, usage.c["count"]).order_by(usage.c["count"].desc(), usage.c.name)
    if key is not None:
        count, name = key
        after = or_(usage.c["count"] < count, and_(usage.c["count"] == count, usage.c.name > name))
        query = query.where(after)
    return query


def _by_name(key: list[Any] | None) -> Any:
    # Only the page's tags are counted, each through the (tag_id, media_id) index.
    count = (
        select(func.count(distinct(MEDIA_TAG.c.media_id)))
        .where(MEDIA_TAG.c.tag_id == TAG.c.id)
        .scalar_subquery()
    )
    query = select(TAG.c.name, count.label("count")).order_by(TAG.c.name)
    return query.where(TAG.c.name > key[0]) if key is not None else query


def encode_cursor(order: str, last: dict[str, Any]) -> str:
    key = [last["count"], last["name"]] if order == BY_COUNT else [last["name"]]
    return pack_cursor({"order": order, "key": key})


def decode_cursor(cursor: str, order: str) -> list[Any]:
    """The keyset position in `cursor`; BadCursor unless a listing in `order` gave it out."""
    data = unpack_cursor(cursor)
    try:
        key = data["key"]
    except (TypeError, KeyError) as exc:
        raise BadCursor("it is not a cursor `catalog tags` gave out") from exc
    shape = (int, str) if order == BY_COUNT else (str,)
    valid = len(key) == len(shape) and all(
        isinstance(k, t) for k, t in zip(key, shape, strict=True)
    )
    if data.get("order") != order or not valid:
        raise BadCursor(f"it is not a cursor of a listing by {order}")
    return key
