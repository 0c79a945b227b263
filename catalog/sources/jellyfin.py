"""Jellyfin and Emby: libraries and their items, streamed page by page and parsed.

Real-server behaviour handled here (see DESIGN.md): null fields are omitted; dates carry 1 to 7
fractional digits and 0001-01-01 means unknown; ratings come only when set and may be whole
numbers; counting is expensive, so the total is asked for once; sort ties are unstable across
pages, so an item repeated at a page boundary is dropped here and a full sync reconciles.
"""

from __future__ import annotations

import hashlib
import logging
import platform
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

import msgspec

from catalog import __version__
from catalog.errors import SourceAuthError, SourceResponseError
from catalog.http import HttpClient
from catalog.sources import InvalidItem, Library, MediaItem, Page, RawItem

log = logging.getLogger(__name__)

ITEM_TYPES = ("Movie", "Series", "Episode")
FIELDS = "Overview,Genres,Tags,Taglines,ProviderIds,DateCreated,SortName,OfficialRating"
# Put new items last, so items added during a sync land on later pages rather than shifting
# earlier ones; ties (same second) are what makes the order unstable.
SORT_BY = "DateCreated,SortName"
TICKS_PER_SECOND = 10_000_000
UNKNOWN_DATE_PREFIX = "0001-01-01"
NON_VIDEO_KINDS = frozenset({"music", "books", "photos", "playlists", "boxsets", "livetv"})


class _RawItem(msgspec.Struct, rename="pascal"):
    id: str | None = None
    name: str | None = None
    type: str | None = None
    sort_name: str | None = None
    overview: str | None = None
    production_year: int | None = None
    premiere_date: str | None = None
    community_rating: float | None = None
    critic_rating: float | None = None
    official_rating: str | None = None
    has_subtitles: bool = False
    run_time_ticks: int | None = None
    series_id: str | None = None
    parent_index_number: int | None = None
    index_number: int | None = None
    provider_ids: dict[str, str | None] = {}
    date_created: str | None = None
    genres: list[str] = []
    tags: list[str] = []
    taglines: list[str] = []


class _Envelope(msgspec.Struct, rename="pascal"):
    items: list[msgspec.Raw] = []
    total_record_count: int | None = None


class _Key(msgspec.Struct, rename="pascal"):
    id: Any = None


class _VirtualFolder(msgspec.Struct, rename="pascal"):
    name: str
    item_id: str
    collection_type: str | None = None


class _View(msgspec.Struct, rename="pascal"):
    name: str
    id: str
    collection_type: str | None = None


class _Views(msgspec.Struct, rename="pascal"):
    items: list[_View] = []


class _Me(msgspec.Struct, rename="pascal"):
    id: str


class InvalidItemError(ValueError):
    """Raised by the parser with the reason an item is unusable."""


def auth_headers(kind: str, token: str) -> dict[str, str]:
    """The header a server of `kind` expects; a token never goes into a URL."""
    if kind == "emby":
        return {"X-Emby-Token": token}
    device = hashlib.sha1(platform.node().encode()).hexdigest()[:16]
    return {
        "Authorization": (
            f'MediaBrowser Client="catalog", Device="catalog", DeviceId="{device}", '
            f'Version="{__version__}", Token="{token}"'
        )
    }


class JellyfinSource:
    """A Jellyfin (or Emby, with kind="emby") server, read through the HTTP seam we are given
    (`catalog.sources.connect.open_source` builds it)."""

    def __init__(self, http: HttpClient, *, kind: str = "jellyfin", page_size: int = 500) -> None:
        self.http = http
        self.kind = kind
        self.page_size = page_size
        self.url = http.base_url

    @property
    def who(self) -> str:
        return self.http.peer.name

    async def _get(self, path: str, params: dict[str, Any] | None = None) -> bytes:
        return await self.http.get(path, params)

    def _decode(self, body: bytes, type_: Any, path: str) -> Any:
        try:
            return msgspec.json.decode(body, type=type_)
        except msgspec.DecodeError as exc:
            message = f"{self.who} sent an unexpected answer to {path}: {exc}"
            raise SourceResponseError(message) from exc

    async def libraries(self) -> list[Library]:
        """Every library: VirtualFolders with an API key, the user's views with a user token."""
        try:
            body = await self._get("/Library/VirtualFolders")
        except SourceAuthError:
            return await self._user_views()  # a non-admin user token may not list folders
        folders = self._decode(body, list[_VirtualFolder], "/Library/VirtualFolders")
        return [Library(f.item_id, f.name, f.collection_type) for f in folders]

    async def _user_views(self) -> list[Library]:
        me = self._decode(await self._get("/Users/Me"), _Me, "/Users/Me")
        body = await self._get("/UserViews", {"userId": me.id})
        views = self._decode(body, _Views, "/UserViews")
        return [Library(v.id, v.name, v.collection_type) for v in views.items]

    async def pages(self, library: Library, since: datetime | None = None) -> AsyncIterator[Page]:
        """The library's items, one parsed page at a time, until a page comes back short."""
        start, previous_ids, first = 0, frozenset[str](), True
        while True:
            params = self._items_params(library, start, since, count=first)
            body = await self._get("/Items", params)
            envelope = self._decode(body, _Envelope, "/Items")
            items = [raw_item(raw) for raw in envelope.items]
            page_ids = frozenset(i.external_id for i in items if i.external_id)
            total = envelope.total_record_count if first else None
            yield Page(_drop_repeats(items, previous_ids), total)
            if len(envelope.items) < self.page_size:
                return
            start += len(envelope.items)
            previous_ids, first = page_ids, False

    def parse(self, item: RawItem) -> MediaItem | InvalidItem:
        return parse_item(item.raw)

    def _items_params(
        self, library: Library, start: int, since: datetime | None, *, count: bool
    ) -> dict[str, Any]:
        params = {
            "ParentId": library.external_id,
            "Recursive": "true",
            "IncludeItemTypes": ",".join(ITEM_TYPES),
            "Fields": FIELDS,
            "SortBy": SORT_BY,
            "SortOrder": "Ascending",
            "StartIndex": start,
            "Limit": self.page_size,
            "EnableTotalRecordCount": "true" if count else "false",
            "EnableImages": "false",
            "EnableUserData": "false",
        }
        if since is not None:
            params["MinDateLastSaved"] = since.astimezone(UTC).isoformat().replace("+00:00", "Z")
        return params


def raw_item(raw: msgspec.Raw | bytes) -> RawItem:
    """Id and digest of one item, without parsing the rest of it."""
    body = bytes(raw)
    try:
        item_id = msgspec.json.decode(body, type=_Key).id
    except (msgspec.ValidationError, msgspec.DecodeError):
        item_id = None  # not an object: parsing it will say why
    external_id = item_id if isinstance(item_id, str) and item_id else None
    return RawItem(external_id, content_hash(body), body)


def _drop_repeats(items: list[RawItem], previous_ids: frozenset[str]) -> list[RawItem]:
    """Drop items already yielded on the previous page or earlier on this one."""
    seen = set(previous_ids)
    kept = []
    for item in items:
        if item.external_id:
            if item.external_id in seen:
                continue
            seen.add(item.external_id)
        kept.append(item)
    return kept


def parse_item(raw: msgspec.Raw | bytes) -> MediaItem | InvalidItem:
    """Validate one item of an /Items page; never raises."""
    try:
        item = msgspec.json.decode(raw, type=_RawItem)
    except msgspec.ValidationError as exc:
        return InvalidItem(_lenient_id(raw), f"invalid field: {exc}")
    except msgspec.DecodeError as exc:
        return InvalidItem(None, f"not JSON: {exc}")
    try:
        return _to_media_item(item, content_hash(bytes(raw)))
    except InvalidItemError as exc:
        return InvalidItem(item.id or None, str(exc))


def _lenient_id(raw: msgspec.Raw | bytes) -> str | None:
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None
    item_id = value.get("Id") if isinstance(value, dict) else None
    return item_id if isinstance(item_id, str) and item_id else None


def _to_media_item(raw: _RawItem, digest: str) -> MediaItem:
    if not raw.id:
        raise InvalidItemError("no Id")
    if not raw.name or not raw.name.strip():
        raise InvalidItemError("no Name")
    if raw.type not in ITEM_TYPES:
        raise InvalidItemError(f"unknown Type {raw.type!r}")
    values = (
        raw.id,
        raw.type.lower(),
        raw.name.strip(),
        (raw.sort_name or raw.name).strip(),
        raw.overview or None,
        raw.production_year,
        _date(raw.premiere_date, "PremiereDate"),
        _rating(raw.community_rating, 10, "CommunityRating"),
        _rating(raw.critic_rating, 100, "CriticRating"),
        raw.official_rating or None,
        raw.has_subtitles,
        raw.run_time_ticks // TICKS_PER_SECOND if raw.run_time_ticks else None,
        raw.series_id if raw.type == "Episode" else None,
        raw.parent_index_number,
        raw.index_number,
        {k: v for k, v in sorted(raw.provider_ids.items()) if v},
        _datetime(raw.date_created, "DateCreated"),
        _unique(raw.tags),
        _unique(raw.genres),
        _unique(raw.taglines),
    )  # in MediaItem's field order
    return MediaItem(*values, content_hash=digest)


def content_hash(body: bytes) -> str:
    """A digest of the item as served. Comparing it with the stored one lets a sync skip an
    unchanged item before parsing it; the price is that a change in a field we do not store
    (artwork tags, say) also rewrites the item, once."""
    return hashlib.blake2b(body, digest_size=16).hexdigest()


def _unique(values: list[str]) -> tuple[str, ...]:
    """Stripped, without blanks or repeats, in the server's order."""
    if not values:
        return ()
    unique = dict.fromkeys(map(str.strip, values))
    unique.pop("", None)
    return tuple(unique)


def _rating(value: float | None, top: int, name: str) -> float | None:
    if value is None:
        return None
    if not 0 <= value <= top:
        raise InvalidItemError(f"{name} {value:g} is outside 0-{top}")
    return float(value)


def _datetime(text: str | None, name: str) -> datetime | None:
    if not text or text.startswith(UNKNOWN_DATE_PREFIX):
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidItemError(f"{name} {text!r} is not a date") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _date(text: str | None, name: str) -> date | None:
    value = _datetime(text, name)
    return value.date() if value else None
