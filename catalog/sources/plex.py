"""Plex: library sections and their movies, shows and episodes, streamed page by page and parsed.

Real-server behaviour handled here (see DESIGN.md): the token travels in the X-Plex-Token header
only; JSON comes only with `Accept: application/json`; pages are asked for with the
X-Plex-Container-Start/-Size headers; fields without a value are left out of an item; external
ids come only with `includeGuids=1`. Plex has no etag and a label edit leaves `updatedAt` alone,
so an item's digest covers every field we store (labels included): a full sync catches a label
edit, an incremental one (`updatedAt>>=`) does not.
"""

from __future__ import annotations

import hashlib
import platform
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

import msgspec

from catalog import __version__
from catalog.digest import content_hash
from catalog.items import (
    OFFICIAL_RATING_CHARS,
    YEARS,
    InvalidItem,
    ItemCheck,
    Library,
    MediaItem,
    Page,
    RawItem,
    Unsafe,
)
from catalog.sources.listing import HttpSource, drop_repeats, rating

PRODUCT = "catalog"
# Plex metadata types: the numbers /library/sections/{key}/all?type= takes.
MOVIE, SHOW, EPISODE = 1, 2, 4
KINDS = {"movie": "movie", "show": "series", "episode": "episode"}
# Section types in the vocabulary the catalog (and sync.select_libraries) already speaks, so
# that music and photo sections are left out unless named.
SECTION_KINDS = {"movie": "movies", "show": "tvshows", "artist": "music", "photo": "photos"}
TYPES_BY_KIND = {"movies": (MOVIE,), "tvshows": (SHOW, EPISODE)}
ANY_VIDEO = (MOVIE, SHOW, EPISODE)  # a section of another type, synced because it was named
# New items last (addedAt), so an item added during a sync lands on a later page rather than
# shifting earlier ones; ties in addedAt are what can repeat an item at a page boundary.
SORT = "addedAt,titleSort"


class _Tag(msgspec.Struct, omit_defaults=True):
    tag: str | None = None


class _Guid(msgspec.Struct, omit_defaults=True):
    id: str | None = None


class _Item(msgspec.Struct, rename="camel", omit_defaults=True):
    """The fields of an item that the catalog stores, and nothing else: its encoding is what
    the digest covers, so per-user state (viewCount, viewOffset, lastViewedAt), artwork URLs
    and tag counts, which change without the item changing, cost no rewrite."""

    rating_key: str | int | None = None
    type: str | None = None
    title: str | None = None
    title_sort: str | None = None
    summary: str | None = None
    year: int | None = None
    originally_available_at: str | None = None
    audience_rating: float | None = None
    rating: float | None = None
    content_rating: str | None = None
    duration: int | None = None
    added_at: int | None = None
    grandparent_rating_key: str | int | None = None
    parent_index: int | None = None
    index: int | None = None
    tagline: str | None = None
    labels: list[_Tag] | None = msgspec.field(default=None, name="Label")
    genres: list[_Tag] | None = msgspec.field(default=None, name="Genre")
    guids: list[_Guid] | None = msgspec.field(default=None, name="Guid")


class _Key(msgspec.Struct, rename="camel"):
    rating_key: Any = None


class _Container(msgspec.Struct, rename="camel"):
    total_size: int | None = None
    metadata: list[msgspec.Raw] | None = msgspec.field(default=None, name="Metadata")


class _Envelope(msgspec.Struct):
    container: _Container = msgspec.field(name="MediaContainer")


class _Directory(msgspec.Struct):
    key: str | int
    title: str
    type: str | None = None


class _Directories(msgspec.Struct):
    directories: list[_Directory] | None = msgspec.field(default=None, name="Directory")


class _Sections(msgspec.Struct):
    container: _Directories = msgspec.field(name="MediaContainer")


def client_headers() -> dict[str, str]:
    """What a well-behaved Plex client sends with every request, besides its token."""
    identifier = hashlib.sha1(f"{PRODUCT}:{platform.node()}".encode()).hexdigest()[:16]
    return {
        "Accept": "application/json",
        "X-Plex-Client-Identifier": identifier,
        "X-Plex-Product": PRODUCT,
        "X-Plex-Version": __version__,
    }


def credentials(token: str) -> dict[str, str]:
    """The token, in a header only: Plex would take it in the query string, where it would end
    up in proxy and server logs."""
    return {"X-Plex-Token": token}


class PlexSource(HttpSource):
    """A Plex Media Server, read through the HTTP seam we are given
    (`catalog.sources.connect.open_source` builds it, with `client_headers`)."""

    kind = "plex"

    async def _get(
        self, path: str, params: dict[str, Any] | None = None, window: tuple[int, int] | None = None
    ) -> bytes:
        headers = None
        if window is not None:  # paging goes in headers, like the token
            headers = {"X-Plex-Container-Start": str(window[0]),
                       "X-Plex-Container-Size": str(window[1])}  # fmt: skip
        return await self.http.get(path, params, headers=headers)

    def syncs_by_default(self, library: Library) -> bool:
        """Movie and show sections; music and photo sections only when named."""
        return library.kind in TYPES_BY_KIND

    async def libraries(self) -> list[Library]:
        """Every library section, its type mapped to the catalog's library kinds."""
        path = "/library/sections"
        sections = self._decode(await self._get(path), _Sections, path)
        return [
            Library(str(d.key), d.title, SECTION_KINDS.get(d.type or "", d.type))
            for d in sections.container.directories or []
        ]

    async def pages(self, library: Library, since: datetime | None = None) -> AsyncIterator[Page]:
        """The section's items, one page at a time: shows before episodes, each type paged
        until it runs out. The total (every type) comes with the first page."""
        types = TYPES_BY_KIND.get(library.kind or "", ANY_VIDEO)
        others = [await self._count(library, t, since) for t in types[1:]]
        first = True
        for plex_type in types:
            async for items, total in self._type_pages(library, plex_type, since):
                counted = None if total is None or None in others else total + sum(others)
                yield Page(items, counted if first else None)
                first = False

    def parse(self, item: RawItem) -> MediaItem | InvalidItem:
        return parse_item(item.raw, item.digest)

    async def _type_pages(
        self, library: Library, plex_type: int, since: datetime | None
    ) -> AsyncIterator[tuple[list[RawItem], int | None]]:
        path = f"/library/sections/{library.external_id}/all"
        params = _params(plex_type, since)
        start, previous_ids = 0, frozenset[str]()
        while True:
            body = await self._get(path, params, (start, self.page_size))
            container = self._decode(body, _Envelope, path).container
            served = container.metadata or []
            items = [raw_item(raw) for raw in served]
            if served or not start:  # the first page carries the total, even when empty
                yield drop_repeats(items, previous_ids), container.total_size
            start += len(served)
            total = container.total_size
            # A short page ends the listing, unless the total says a server cap cut it short.
            if not served or (len(served) < self.page_size and (total is None or start >= total)):
                return
            previous_ids = frozenset(i.external_id for i in items if i.external_id)

    async def _count(self, library: Library, plex_type: int, since: datetime | None) -> int | None:
        """The number of items of one type, from a page of size 0 (Plex still counts)."""
        path = f"/library/sections/{library.external_id}/all"
        body = await self._get(path, _params(plex_type, since), (0, 0))
        return self._decode(body, _Envelope, path).container.total_size


def _params(plex_type: int, since: datetime | None) -> dict[str, Any]:
    params: dict[str, Any] = {"type": plex_type, "includeGuids": 1, "sort": SORT}
    if since is not None:
        aware = since if since.tzinfo else since.replace(tzinfo=UTC)
        params["updatedAt>>"] = int(aware.timestamp())  # sent as updatedAt%3E%3E=<epoch s>
    return params


def raw_item(raw: msgspec.Raw | bytes) -> RawItem:
    """Id and digest of one item: the digest covers the stored fields only (see _Item), and
    those fields, re-encoded, are what is kept for parsing. An item that does not decode is
    kept as served, for the parser to say why."""
    body = bytes(raw)
    try:
        item = msgspec.json.decode(body, type=_Item)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return RawItem(_lenient_key(body), content_hash(body), body)
    stored = msgspec.json.encode(item)
    return RawItem(_key(item.rating_key), content_hash(stored), stored)


def parse_item(raw: bytes, digest: str | None = None) -> MediaItem | InvalidItem:
    """Validate one item of a /library/sections/{key}/all page; never raises."""
    try:
        item = msgspec.json.decode(raw, type=_Item)
    except msgspec.ValidationError as exc:
        return InvalidItem(_lenient_key(raw), f"invalid field: {exc}")
    except msgspec.DecodeError as exc:
        return InvalidItem(None, f"not JSON: {exc}")
    if digest is None:
        digest = raw_item(raw).digest
    try:
        return _to_media_item(item, digest)
    except Unsafe as exc:
        return InvalidItem(_key(item.rating_key), str(exc))


def _key(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    text = str(value).strip()
    return text or None


def _lenient_key(raw: bytes) -> str | None:
    try:
        return _key(msgspec.json.decode(raw, type=_Key).rating_key)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None


def _to_media_item(raw: _Item, digest: str) -> MediaItem:
    check = ItemCheck(_key(raw.rating_key), raw.title)
    external_id = check.external_id("ratingKey", _key(raw.rating_key), required=True)
    if not external_id:
        raise Unsafe("no ratingKey")
    title = check.text("title", raw.title)
    if not title or not title.strip():
        raise Unsafe("no title")
    kind = KINDS.get(raw.type or "")
    if kind is None:
        raise Unsafe(f"unknown type {raw.type!r}")
    episode = kind == "episode"
    critic = rating(raw.rating, 10, "rating")
    values = (
        external_id,
        kind,
        title.strip(),
        (check.text("titleSort", raw.title_sort) or title).strip(),
        check.text("summary", raw.summary),
        check.number("year", raw.year, YEARS),
        _date(raw.originally_available_at),
        rating(raw.audience_rating, 10, "audienceRating"),
        None if critic is None else round(critic * 10, 1),
        check.text("contentRating", raw.content_rating, OFFICIAL_RATING_CHARS),
        False,  # a section listing does not say whether there are subtitles
        check.number("duration", raw.duration // 1000) if raw.duration else None,
        check.external_id("grandparentRatingKey", _key(raw.grandparent_rating_key))
        if episode
        else None,
        check.number("parentIndex", raw.parent_index) if episode else None,
        check.number("index", raw.index) if episode else None,
        check.provider_ids(_provider_ids(raw.guids)),
        check.moment("addedAt", _epoch(check, raw.added_at)),
        check.names("Label", [t.tag for t in raw.labels or () if t.tag]),
        check.names("Genre", [t.tag for t in raw.genres or () if t.tag]),
        check.names("tagline", [raw.tagline] if raw.tagline else [], None),
    )  # in MediaItem's field order
    return MediaItem(*values, content_hash=digest)


def _epoch(check: ItemCheck, seconds: int | None) -> datetime | None:
    if not seconds:
        return None
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        check.fixed("addedAt", f"{seconds} is outside years 1..9999: dropped")
        return None


def _provider_ids(guids: list[_Guid] | None) -> dict[str, str]:
    """`imdb://tt0083658`, `tmdb://78`, `tvdb://…` as {"imdb": "tt0083658", ...}."""
    ids = {}
    for guid in guids or ():
        scheme, sep, value = (guid.id or "").partition("://")
        if sep and scheme and value.strip():
            ids[scheme.lower()] = value.strip()
    return dict(sorted(ids.items()))


def _date(text: str | None) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise Unsafe(f"originallyAvailableAt {text!r} is not a date") from None
