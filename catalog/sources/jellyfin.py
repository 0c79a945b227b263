"""Jellyfin and Emby: libraries and their items, streamed page by page and parsed.

Real-server behaviour handled here (see DESIGN.md): null fields are omitted (but some chains send
explicit nulls); dates carry 1 to 7 fractional digits and 0001-01-01 means unknown; ratings come
only when set and may be whole numbers; Emby sends tags only as TagItems and has no
HasSubtitles; counting is expensive, so the total is asked for once; sort ties are unstable
across pages, so an item repeated at a page boundary is dropped here and a full sync reconciles.
A page whose JSON has undecodable text (a lone surrogate escape, invalid UTF-8) is read again
with that text replaced, so one bad item never costs the others. Values meet the schema's
rules in `catalog.items.ItemCheck`, not here.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import platform
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import msgspec

from catalog import __version__
from catalog.digest import content_hash
from catalog.errors import SourceAuthError, SourceResponseError
from catalog.http import HttpClient
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

log = logging.getLogger(__name__)

ITEM_TYPES = ("Movie", "Series", "Episode", "Video", "MusicVideo")
# What each kind of library holds; a library of another kind (mixed, or none given) may hold any.
TYPES_BY_LIBRARY = {"movies": ("Movie",), "tvshows": ("Series", "Episode")}
# OfficialRating is not a Fields value (10.8-10.11 ignore it): servers send it unasked.
FIELDS = "Overview,Genres,Tags,Taglines,ProviderIds,DateCreated,SortName"
# Put new items last, so items added during a sync land on later pages rather than shifting
# earlier ones; ties (same second) are what makes the order unstable.
SORT_BY = "DateCreated,SortName"
TICKS_PER_SECOND = 10_000_000
UNKNOWN_DATE_PREFIX = "0001-01-01"
NON_VIDEO_KINDS = frozenset({"music", "books", "photos", "playlists", "boxsets", "livetv"})


class _Named(msgspec.Struct, rename="pascal"):
    """Emby's TagItems / GenreItems entries: {"Name", "Id"}."""

    name: str | None = None


class _RawItem(msgspec.Struct, rename="pascal"):
    # Every field may also come as an explicit null.
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
    has_subtitles: bool | None = None
    run_time_ticks: int | None = None
    series_id: str | None = None
    parent_index_number: int | None = None
    index_number: int | None = None
    provider_ids: dict[str, str | int | float | bool | None] | None = None
    date_created: str | None = None
    genres: list[str | None] | None = None
    genre_items: list[_Named] | None = None
    tags: list[str | None] | None = None
    tag_items: list[_Named] | None = None
    taglines: list[str | None] | None = None


class _Envelope(msgspec.Struct, rename="pascal"):
    items: list[msgspec.Raw] = []
    total_record_count: int | None = None


class _Key(msgspec.Struct, rename="pascal"):
    id: Any = None


class _Keys(msgspec.Struct, rename="pascal"):
    items: list[_Key] = []


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


class _Session(msgspec.Struct, rename="pascal"):
    user_id: str | None = None


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


class JellyfinSource(HttpSource):
    """A Jellyfin (or Emby, with kind="emby") server, read through the HTTP seam we are given
    (`catalog.sources.connect.open_source` builds it)."""

    def __init__(self, http: HttpClient, *, kind: str = "jellyfin", page_size: int = 500) -> None:
        super().__init__(http, page_size=page_size)
        self.kind = kind

    async def _get(self, path: str, params: dict[str, Any] | None = None) -> bytes:
        return await self.http.get(path, params)

    async def libraries(self) -> list[Library]:
        """Every library: VirtualFolders with an API key, the user's views with a user token."""
        try:
            body = await self._get("/Library/VirtualFolders")
        except SourceAuthError:
            return await self._user_views()  # a non-admin user token may not list folders
        folders = self._decode(body, list[_VirtualFolder], "/Library/VirtualFolders")
        return [Library(f.item_id, f.name, f.collection_type) for f in folders]

    def syncs_by_default(self, library: Library) -> bool:
        return library.kind not in NON_VIDEO_KINDS

    async def _user_views(self) -> list[Library]:
        """/UserViews (Jellyfin 10.9+), else /Users/{id}/Views (Jellyfin 10.8, Emby)."""
        user_id = await self._user_id()
        path = f"/Users/{user_id}/Views"
        try:
            if self.kind == "emby":
                body = await self._get(path)
            else:
                body, path = await self._get("/UserViews", {"userId": user_id}), "/UserViews"
        except SourceResponseError:  # 404 where the endpoint does not exist
            body = await self._get(path)
        views = self._decode(body, _Views, path)
        return [Library(v.id, v.name, v.collection_type) for v in views.items]

    async def _user_id(self) -> str:
        """The token's user: /Users/Me (Jellyfin 10.7+); Emby has no such endpoint, but lists
        a user token's own sessions, each naming its user."""
        if self.kind != "emby":
            try:
                return self._decode(await self._get("/Users/Me"), _Me, "/Users/Me").id
            except SourceResponseError:
                pass  # a server without it
        sessions = self._decode(await self._get("/Sessions"), list[_Session], "/Sessions")
        for session in sessions:
            if session.user_id:
                return session.user_id
        raise SourceResponseError(f"{self.who} did not say which user the token belongs to")

    async def pages(self, library: Library, since: datetime | None = None) -> AsyncIterator[Page]:
        """The library's items, one parsed page at a time, until a page comes back short. The
        next page is asked for as soon as this one is decoded, so the server prepares it while
        this one's items are digested (one request ahead, never more)."""
        start, previous_ids = 0, frozenset[str]()
        ahead: asyncio.Future[bytes] | None = self._items(library, start, since, count=True)
        try:
            while ahead is not None:
                body, ahead = await ahead, None
                envelope, body, repaired = self._decode_page(body, library, start)
                if len(envelope.items) >= self.page_size:
                    ahead = self._items(library, start + len(envelope.items), since, count=False)
                items = raw_items(body, envelope.items, repaired)
                page_ids = frozenset(i.external_id for i in items if i.external_id)
                total = envelope.total_record_count if start == 0 else None
                yield Page(drop_repeats(items, previous_ids), total)
                start += len(envelope.items)
                previous_ids = page_ids
        finally:
            if ahead is not None:
                ahead.cancel()
                await asyncio.gather(ahead, return_exceptions=True)

    def _items(
        self, library: Library, start: int, since: datetime | None, *, count: bool
    ) -> asyncio.Future[bytes]:
        """The /Items page at `start`, requested now and read in the background."""
        params = self._items_params(library, start, since, count=count)
        return asyncio.ensure_future(self._get("/Items", params))

    def _decode_page(
        self, body: bytes, library: Library, start: int
    ) -> tuple[_Envelope, bytes, bool]:
        """The envelope, strictly; failing that, read again with undecodable text replaced
        (only a failing page pays for that). (envelope, the body it was read from, whether
        that was repaired)."""
        try:
            return _ENVELOPE.decode(body), body, False
        except msgspec.DecodeError:
            repaired = repair_text(body)
            if repaired == body:
                raise  # not a text problem: the page is malformed
        log.warning(
            "library %r: the page at StartIndex %d has undecodable text; read with it replaced",
            library.name, start,
        )  # fmt: skip
        try:
            return _ENVELOPE.decode(repaired), repaired, True
        except msgspec.DecodeError as exc:
            message = f"{self.who} sent an unexpected answer to /Items: {exc}"
            raise SourceResponseError(message) from exc

    def parse(self, item: RawItem) -> MediaItem | InvalidItem:
        return parse_item(item.raw, item.digest, item.repaired)

    def _items_params(
        self, library: Library, start: int, since: datetime | None, *, count: bool
    ) -> dict[str, Any]:
        params = {
            "ParentId": library.external_id,
            "Recursive": "true",
            "IncludeItemTypes": ",".join(TYPES_BY_LIBRARY.get(library.kind or "", ITEM_TYPES)),
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


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_ITEM = msgspec.json.Decoder(_RawItem)
_KEY = msgspec.json.Decoder(_Key)
_KEYS = msgspec.json.Decoder(_Keys)
# A JSON string escape: an escaped backslash (kept), a surrogate pair (kept), or a lone
# surrogate (msgspec refuses it; replaced). Scanning left to right keeps `\\ud800` intact.
_ESCAPE = re.compile(
    rb"(\\\\)"  # an escaped backslash
    rb"|(\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2})"  # a surrogate pair
    rb"|(\\u[dD][89a-fA-F][0-9a-fA-F]{2})"  # a lone surrogate
)


def repair_text(body: bytes) -> bytes:
    """`body` with invalid UTF-8 and lone surrogate escapes replaced by U+FFFD."""
    text = body.decode("utf-8", "replace").encode()
    return _ESCAPE.sub(lambda m: m.group(0) if m.group(3) is None else rb"\ufffd", text)


def raw_items(body: bytes, raws: list[msgspec.Raw], repaired: bool = False) -> list[RawItem]:
    """Id and digest of every item of a page (`raws`, from `body`), without parsing the rest:
    the ids are read in one pass over the page, which costs a fifth of one decode per item. A
    page with an item that is not an object is read one item at a time."""
    try:
        keys = _KEYS.decode(body).items
    except (msgspec.ValidationError, msgspec.DecodeError):
        return [raw_item(raw, repaired) for raw in raws]
    # tuple.__new__ over the fields: RawItem's own constructor is a Python-level call per item
    return [
        _new(RawItem, (_usable(key.id), content_hash(raw), bytes(raw), repaired))
        for key, raw in zip(keys, raws, strict=True)
    ]


_new = tuple.__new__


def raw_item(raw: msgspec.Raw | bytes, repaired: bool = False) -> RawItem:
    """Id and digest of one item, without parsing the rest of it."""
    body = bytes(raw)
    try:
        item_id = _KEY.decode(body).id
    except (msgspec.ValidationError, msgspec.DecodeError):
        item_id = _lenient_id(repair_text(body))  # not an object, or undecodable text
    return RawItem(_usable(item_id), content_hash(body), body, repaired)


def _usable(item_id: Any) -> str | None:
    """The id as a catalog key, if it can be one. An id with a NUL never is (PostgreSQL would
    refuse the lookup); parsing skips its item."""
    return item_id if isinstance(item_id, str) and item_id and "\x00" not in item_id else None


def parse_item(
    raw: msgspec.Raw | bytes, digest: str | None = None, repaired: bool = False
) -> MediaItem | InvalidItem:
    """Validate one item of an /Items page; never raises. An item with undecodable text is
    read with that text replaced by U+FFFD (`repaired`: its page already was)."""
    body = bytes(raw)
    try:
        item = _ITEM.decode(body)
    except msgspec.ValidationError as exc:
        return InvalidItem(_lenient_id(body), f"invalid field: {exc}")
    except msgspec.DecodeError as exc:
        try:
            item, repaired = _ITEM.decode(repair_text(body)), True
        except msgspec.MsgspecError:
            return InvalidItem(_lenient_id(repair_text(body)), f"not JSON: {exc}")
    if repaired:
        _warn_replaced(item)
    # JSON can carry a NUL only as an escape, and msgspec lets no lone surrogate through: an
    # item without the escape needs only its lengths checked.
    plain = b"\\u0000" not in body
    try:
        return _to_media_item(item, digest or content_hash(body), plain)
    except Unsafe as exc:
        return InvalidItem(item.id or None, str(exc))


def _warn_replaced(item: _RawItem) -> None:
    check = ItemCheck(item.id, item.name)
    for name in item.__struct_fields__:
        value = getattr(item, name)
        texts = value if isinstance(value, list) else [value]
        if any(isinstance(t, str) and "\ufffd" in t for t in texts):
            check.fixed(_PASCAL[name], "had undecodable text: replaced with U+FFFD")


_PASCAL = dict(zip(_RawItem.__struct_fields__, _RawItem.__struct_encode_fields__, strict=True))


def _lenient_id(raw: msgspec.Raw | bytes) -> str | None:
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None
    item_id = value.get("Id") if isinstance(value, dict) else None
    return item_id if isinstance(item_id, str) and item_id else None


def _to_media_item(raw: _RawItem, digest: str, plain: bool = False) -> MediaItem:
    check = ItemCheck(raw.id, raw.name, plain)
    external_id = check.external_id("Id", raw.id, required=True)
    if not external_id:
        raise Unsafe("no Id")
    name = check.text("Name", raw.name)
    if not name or not name.strip():
        raise Unsafe("no Name")
    if raw.type not in ITEM_TYPES:
        raise Unsafe(f"unknown Type {raw.type!r}")
    values = (
        external_id,
        raw.type.lower(),
        name.strip(),
        (check.text("SortName", raw.sort_name) or name).strip(),
        check.text("Overview", raw.overview),
        check.number("ProductionYear", raw.production_year, YEARS),
        check.day("PremiereDate", _datetime(raw.premiere_date, "PremiereDate")),
        rating(raw.community_rating, 10, "CommunityRating"),
        rating(raw.critic_rating, 100, "CriticRating"),
        check.text("OfficialRating", raw.official_rating, OFFICIAL_RATING_CHARS),
        bool(raw.has_subtitles),
        check.number("RunTimeTicks", raw.run_time_ticks // TICKS_PER_SECOND)
        if raw.run_time_ticks
        else None,
        check.external_id("SeriesId", raw.series_id) if raw.type == "Episode" else None,
        check.number("ParentIndexNumber", raw.parent_index_number),
        check.number("IndexNumber", raw.index_number),
        check.provider_ids(raw.provider_ids),
        check.moment("DateCreated", _datetime(raw.date_created, "DateCreated")),
        check.names("Tags", _names_of(raw.tags, raw.tag_items)),
        check.names("Genres", _names_of(raw.genres, raw.genre_items)),
        check.names("Taglines", raw.taglines, None),
    )  # in MediaItem's field order
    return MediaItem(*values, content_hash=digest)


def _names_of(plain: list[str | None] | None, named: list[_Named] | None) -> list[Any]:
    """Jellyfin's plain list, else Emby's {"Name", "Id"} records."""
    if plain:
        return plain
    return [n.name for n in named] if named else []


def _datetime(text: str | None, name: str) -> datetime | None:
    """The date as written, its offset kept (the schema's check converts and bounds it)."""
    if not text or text.startswith(UNKNOWN_DATE_PREFIX):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise Unsafe(f"{name} {text!r} is not a date") from None
