"""Domain types (Library, MediaItem, InvalidItem, RawItem, Page) and the one validation step
where values meet the schema, shared by every source and by the tagger's write-back.

The limits are declared here once; `catalog.db.models` builds its columns from them. What the
step does to a value it cannot store as sent (README, "How a sync behaves"):

- NUL characters are stripped from every text (PostgreSQL refuses them); lone UTF-16
  surrogates become U+FFFD;
- a text longer than its column (official rating, tag and genre names) is truncated there;
- a date outside years 1..9999 once converted to UTC, or with a UTC offset beyond ±15:59
  (PostgreSQL refuses those; no real zone comes close), becomes NULL;
- a number outside its column's range (a year outside 1..9999, a season, episode or runtime
  beyond a 32-bit integer) becomes NULL;
- an id longer than its column cannot be made safe: the item is skipped (InvalidItem).

Each fix-up is one warning naming the item (id and name) and the field. The checks run per
value while an item is parsed, and a value that needs nothing costs a few C-level tests.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

import msgspec

log = logging.getLogger(__name__)

# Column limits, declared once (catalog.db.models uses them for the schema).
EXTERNAL_ID_CHARS = 64  # media.external_id, media.parent_external_id, library.external_id
KIND_CHARS = 20  # media.kind
OFFICIAL_RATING_CHARS = 40  # media.official_rating
NAME_CHARS = 200  # tag.name, genre.name, tag_alias.raw_name
# The kinds of item the catalog holds (media.kind): what every source maps its types to.
MEDIA_KINDS = ("episode", "movie", "musicvideo", "series", "video")
INT32 = (-(2**31), 2**31 - 1)  # Integer columns on PostgreSQL
YEARS = (1, 9999)  # what both databases (and Python's datetime) hold
MAX_UTC_OFFSET = timedelta(hours=15, minutes=59)  # PostgreSQL's limit on a zone displacement

_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class Library:
    """A library (Jellyfin "virtual folder") as the server names it."""

    external_id: str
    name: str
    kind: str | None


class MediaItem(msgspec.Struct, frozen=True):
    """One movie, series, episode or video, validated and normalised. A Struct, not a frozen
    dataclass like its neighbours: a first sync builds one per item, and a Struct is built in
    C (a frozen dataclass's constructor sets each of its 21 fields from Python, a tenth of
    what parsing an item costs)."""

    external_id: str
    kind: str
    name: str
    sort_name: str
    overview: str | None = None
    year: int | None = None
    premiere: date | None = None
    community_rating: float | None = None
    critic_rating: float | None = None
    official_rating: str | None = None
    subtitles: bool = False
    runtime_s: int | None = None
    parent_external_id: str | None = None
    season: int | None = None
    episode: int | None = None
    provider_ids: dict[str, str] = {}
    added_at: datetime | None = None
    tags: tuple[str, ...] = ()
    genres: tuple[str, ...] = ()
    taglines: tuple[str, ...] = ()
    content_hash: str = ""


@dataclass(frozen=True, slots=True)
class InvalidItem:
    """An item the server sent that failed validation (or that the database refused);
    counted, logged and skipped."""

    external_id: str | None
    reason: str


class RawItem(NamedTuple):
    """An item as the server sent it: its id and a digest of its bytes, enough to tell whether
    it changed since the last sync. It is parsed (by its source) only when it did.
    `repaired`: undecodable text in it was replaced with U+FFFD before it could be read.
    A tuple: a re-sync makes one per item and reads nothing else of most of them, and a
    frozen dataclass costs four times as much to build."""

    external_id: str | None
    digest: str
    raw: bytes
    repaired: bool = False


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a library listing; `total` is known only on the first page."""

    items: list[RawItem]
    total: int | None = None


class Unsafe(ValueError):
    """An item that cannot be made safe for the catalog; the message is the reason."""


class ItemCheck:
    """The schema's rules for the values of one item, named in every warning by its id and
    name. `plain`: its source knows no text in it has a NUL or a lone surrogate (Jellyfin's
    parser does, from the item's JSON), which leaves only the length limits to check."""

    __slots__ = ("external_id_", "name", "plain")

    def __init__(self, external_id: str | None, name: str | None, plain: bool = False) -> None:
        self.external_id_, self.name, self.plain = external_id, name, plain

    def fixed(self, what: str, how: str) -> None:
        log.warning("item %s (%r): %s %s", self.external_id_, self.name, what, how)

    def external_id(self, what: str, value: str | None, *, required: bool = False) -> str | None:
        """An id the catalog keys on: never truncated or stripped (that could merge two items)."""
        if value and "\x00" in value:
            if required:
                raise Unsafe(f"{what} has NUL characters")
            self.fixed(what, "has NUL characters: dropped")
            return None
        if value is not None and len(value) > EXTERNAL_ID_CHARS:
            if required:
                raise Unsafe(f"{what} is {len(value)} characters, over {EXTERNAL_ID_CHARS}")
            self.fixed(what, f"is over {EXTERNAL_ID_CHARS} characters: dropped")
            return None
        return value

    def text(self, what: str, value: str | None, limit: int | None = None) -> str | None:
        """NUL stripped, surrogates replaced, truncated at `limit`; blank becomes None."""
        if not value or (limit is None and self.plain):
            return value or None
        too_long = limit is not None and len(value) > limit
        if too_long or (not self.plain and ("\x00" in value or not _encodable(value))):
            value = self._clean(what, value, limit)
        return value or None

    def _clean(self, what: str, value: str, limit: int | None) -> str:
        if "\x00" in value:
            value = value.replace("\x00", "")
            self.fixed(what, "had NUL characters: stripped")
        if not _encodable(value):
            value = _SURROGATE.sub("\ufffd", value)
            self.fixed(what, "had lone surrogates: replaced with U+FFFD")
        if limit is not None and len(value) > limit:
            self.fixed(what, f"is {len(value)} characters: truncated at {limit}")
            value = value[:limit]
        return value

    def names(self, what: str, values: Any, limit: int | None = NAME_CHARS) -> tuple[str, ...]:
        """Each name made safe and stripped, without blanks or repeats, in the server's order."""
        if not values:
            return ()
        if not (self.plain and limit is None) and not _plain_texts(values, limit, self.plain):
            values = [self.text(what, v, limit) for v in values if isinstance(v, str)]
            values = [v for v in values if v]
        unique = dict.fromkeys(map(str.strip, values))
        unique.pop("", None)
        return tuple(unique)

    def number(self, what: str, value: int | None, bounds: tuple[int, int] = INT32) -> int | None:
        if value is None or bounds[0] <= value <= bounds[1]:
            return value
        self.fixed(what, f"{value} is outside {bounds[0]}..{bounds[1]}: dropped")
        return None

    def moment(self, what: str, value: datetime | None) -> datetime | None:
        """An aware datetime both databases hold, in UTC; naive means UTC."""
        if value is None:
            return None
        offset = value.utcoffset()
        if offset is None:
            utc: datetime | None = value.replace(tzinfo=UTC)
        elif not offset:  # already UTC, the usual case: nothing to convert
            utc = value
        elif abs(offset) > MAX_UTC_OFFSET:
            self.fixed(what, f"{value.isoformat()} has a UTC offset beyond ±15:59: dropped")
            return None
        else:
            try:
                utc = value.astimezone(UTC)
            except OverflowError:
                utc = None
        if utc is None or not YEARS[0] <= utc.year <= YEARS[1]:
            self.fixed(what, f"{value.isoformat()} is outside years 1..9999 in UTC: dropped")
            return None
        return utc

    def day(self, what: str, value: datetime | None) -> date | None:
        """A calendar date as the server wrote it, if its moment is one the catalog holds."""
        return value.date() if value is not None and self.moment(what, value) else None

    def provider_ids(self, values: dict[str, Any] | None) -> dict[str, str]:
        """Provider ids as text (some servers send numbers), without empty ones."""
        if not values:
            return {}
        # JSON object keys are always text: with `plain`, only the values need a look.
        keys_plain = self.plain or _plain_texts(values, None, False)
        if keys_plain and _plain_texts(values.values(), None, self.plain):
            return {key: value for key, value in sorted(values.items()) if value}
        kept = {}
        for key, value in sorted(values.items()):
            if value is None or value == "" or isinstance(value, bool):
                continue
            text = self.text(f"ProviderIds.{key}", str(value))
            name = self.text("ProviderIds", key)
            if text and name:
                kept[name] = text
        return kept


def _encodable(text: str) -> bool:
    """No lone surrogate in `text` (encoding is several times faster than searching for one)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _plain_texts(values: Any, limit: int | None, plain: bool) -> bool:
    """Whether every value is a string that needs no fix-up: one pass over them joined, in C."""
    try:
        joined = "".join(values)
    except TypeError:  # a None or a number among them
        return False
    if not plain and ("\x00" in joined or not _encodable(joined)):
        return False
    return limit is None or len(joined) <= limit or max(map(len, values)) <= limit
