"""A loopback fake Jellyfin/Emby server with a seeded synthetic library of any size.

Used by the tests, `catalog demo` and the benchmarks. Items are generated on the fly from
`random.Random(f"{seed}:{library}:{index}")`, so a library of 100,000 items costs no more memory
than one of 100: only edits, removals and additions are stored. The JSON has the shape real
Jellyfin sends (null fields omitted, dates with 1 to 7 fractional digits, whole-number ratings,
"0001-01-01" for unknown dates), and `Faults` switches on the misbehaviour a client must survive.

Run it alone with `python -m catalog.fakes.media_server --items 100000`; it prints one line,
`URL http://127.0.0.1:PORT`, and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import bisect
import copy
import functools
import hashlib
import json
import random
import re
import signal
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any, NamedTuple
from urllib.parse import urlencode

from catalog.fakes.arrivals import ArrivalLog
from catalog.fakes.loopback import LoopbackServer, Reply

# Fields the server keeps whatever an update's body says.
SERVER_MANAGED = frozenset(
    {"Id", "ServerId", "Type", "DateLastSaved", "Etag", "SeriesId", "SeriesName", "SeasonId",
     "SeasonName", "IsFolder", "MediaType"}
)  # fmt: skip
_ITEM_PATH = re.compile(r"(?P<ids>/users/[^/]+)?/items/[^/]+(?P<action>/tags/add|/tags/delete)?")

__all__ = ["FakeLibrary", "FakeMediaServer", "Faults", "ItemShape", "RecordedRequest", "main"]

UNKNOWN_DATE = "0001-01-01T00:00:00.0000000Z"
TICKS_PER_SECOND = 10_000_000
LIBRARY_TYPES = {
    "movies": frozenset({"Movie"}),
    "tvshows": frozenset({"Series", "Episode"}),
    # -- real-server shapes: libraries of home videos and music videos hold Video / MusicVideo
    "homevideos": frozenset({"Video"}),
    "musicvideos": frozenset({"MusicVideo"}),
}
SINGLE_TYPE = {"movies": "Movie", "homevideos": "Video", "musicvideos": "MusicVideo"}
EPISODES_PER_SERIES = 10  # in a "tvshows" library, index % 11 == 0 is a Series
EPISODES_PER_SEASON = 5
EMBY_ID_SPAN = 10**8  # Emby ids are numbers: (library ordinal + 1) * span + index
CHECKPOINT_EVERY = 256  # one remembered raw index per this many matches, see _Sequence
INDEX_CACHE_SIZE = 64
ITEM_CACHE_SIZE = 4096

Draw = Callable[[], float]  # a bound random.Random.random

_EPOCH = datetime(1970, 1, 1)
_BASE_US = (datetime(2020, 1, 1) - _EPOCH) // timedelta(microseconds=1)
# Jellyfin ids are md5 hex; the last 8 digits of ours encode the index (scrambled by an odd
# multiplier, so it is invertible) so /Items/{id} needs no id -> index map.
_ID_MULTIPLIER = 0x9E3779B1
_ID_INVERSE = pow(_ID_MULTIPLIER, -1, 2**32)
_AUTH_PARAM = re.compile(r'(\w+)\s*=\s*"([^"]*)"')
_ISO = re.compile(r"(\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d)?)?)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)?")

ADJECTIVES = [
    "Silent", "Crimson", "Lost", "Última", "Brave", "Électrique", "Hidden", "Golden", "Midnight",
    "Frozen", "Wild", "Broken", "Eternal", "Secret", "Distant", "Naïve", "Dark", "Quiet",
    "Burning", "Fröhliche", "Infinite", "Little", "Red", "Velvet",
]  # fmt: skip
NOUNS = [
    "River", "Empire", "Garden", "Signal", "Horizon", "Mirror", "Station", "Kingdom", "Storm",
    "Island", "Orchestra", "Detective", "Machine", "Summer", "Straße", "Jalapeño", "東京",
    "夏の夜", "Москва", "Señorita", "Café", "Lighthouse", "Dragon", "Letter",
]  # fmt: skip
EMOJI = ["🚀", "🎬", "🌊", "🔥", "✨", "👻"]
WORDS = [
    "a", "an", "the", "of", "in", "on", "and", "but", "with", "without", "after", "before",
    "young", "old", "man", "woman", "city", "night", "day", "family", "secret", "war", "love",
    "journey", "home", "crew", "island", "detective", "mystery", "past", "future", "friend",
    "stranger", "mission", "heart", "dream", "storm", "small", "town", "kingdom", "machine",
    "memory", "truth", "lie", "music", "revenge", "escape", "ghost", "forest", "river", "road",
    "winter", "summer", "déjà", "vu", "café", "naïve", "über", "東京", "夢",
]  # fmt: skip
GENRES = [
    "Action", "Adventure", "Animation", "Comedy", "Crime", "Documentary", "Drama", "Family",
    "Fantasy", "Film-Noir", "History", "Horror", "Music", "Mystery", "Romance", "Sci-Fi",
    "Science Fiction", "Thriller", "War", "Western",
]  # fmt: skip
_TAG_SEEDS = [
    "Based on Novel", "sci-fi", "Sci-Fi", "Rock&Roll", "time travel", "Time Travel", "dystopia",
    "based on comic", "New York City", "anime", "biography", "coming-of-age", "cult film",
    "duringcreditsstinger", "female protagonist", "heist", "LGBTQ+", "martial arts", "mockumentary",
    "murder", "neo-noir", "post-apocalyptic", "remake", "road trip", "satire", "serial killer",
    "space", "spy", "superhero", "survival", "vampire", "zombie", "whodunit", "world war ii",
    "Christmas", "père & fils", "東京", "4K", "Director's Cut", "kids' movie",
]  # fmt: skip
_TAG_MODIFIERS = ["dark", "Classic", "1980s", "indie", "British", "French", "Remastered", "cozy"]
OFFICIAL_RATINGS = ["G", "PG", "PG-13", "R", "NC-17", "TV-MA", "TV-14", "FSK-12", "12", "NR"]
TAGLINES = [
    "Some secrets never die.", "The journey is the destination.", "Nobody gets out alive.",
    "One night. One chance.", "Based on a true story.", "Love is a battlefield.",
    "Le passé n'oublie jamais.", "You can't go home again.", "Trust no one.", "夢を追え。",
    "The future is now 🚀", "Every family has a story.",
]  # fmt: skip


def _build_tag_pool() -> list[str]:
    # ~200 names of mixed case and punctuation, some differing only in case, like real tags.
    combos = [f"{m} {t}" for m in _TAG_MODIFIERS for t in _TAG_SEEDS[:20]]
    return list(dict.fromkeys(_TAG_SEEDS + combos))


TAGS = _build_tag_pool()
_CORPUS = " ".join(random.Random(0).choices(WORDS, k=6000))


@dataclass
class Faults:
    """Misbehaviour switches. They apply to GET /Items (the list), whose requests are counted
    from 1; assigning a new Faults to `FakeMediaServer.faults` restarts that count."""

    latency_s: float = 0.0  # sleep before answering
    error_rate: float = 0.0  # share answered 500, drawn from an RNG seeded by the server seed
    rate_limit_every: int = 0  # every Nth answered 429 with Retry-After
    unavailable_every: int = 0  # every Nth answered 503 with Retry-After
    retry_after_s: float = 1.0  # sent as "1" when whole, else as given ("0.2")
    drop_every: int = 0  # every Nth: full Content-Length, half the body, then hang up
    malformed_every: int = 0  # item index % N == N-1 is spoiled (see _malform)
    boundary_repeats: bool = False  # pages overlap by one item (see _items_body)
    # (StartIndex, position): that page opens with the item at the earlier position, pages
    # after it shift back by one (see _items_body)
    far_repeat: tuple[int, int] | None = None
    fail_start_indexes: frozenset[int] = frozenset()  # these StartIndex values always get 500
    oversize_bytes: int = 0  # pad answers with a "Padding" field to at least this size
    # -- HTTP faults: a hostile transport rather than a bad library (tests/test_faults_http.py)
    slow_headers_s: float = 0.0  # status line and headers trickle, one byte per this long
    slow_body_s: float = 0.0  # the body trickles, one byte per this long
    gzip_bomb_bytes: int = 0  # answer this many zero bytes, gzip-compressed (tiny on the wire)
    redirect_to: str = ""  # answer 302 to this base URL, same path and query
    http_faults_from: int = 1  # the HTTP faults apply from this /Items request on
    # -- end of HTTP faults
    # -- bad items: text no JSON encoder writes. Item index -> "surrogate" (a lone "\ud800"
    # escape in its Name) or "utf8" (raw invalid UTF-8 bytes in its Name). Values a JSON
    # encoder can write (NUL, huge numbers, odd dates) are set with FakeMediaServer.edit.
    undecodable: dict[int, str] = field(default_factory=dict)
    # -- end of bad items
    # -- faults of the calls `catalog push` makes (one item read, writes), counted from 1
    push_latency_s: float = 0.0
    push_rate_limit_every: int = 0  # every Nth answered 429 with Retry-After
    push_unavailable_every: int = 0  # every Nth answered 503 with Retry-After


@dataclass
class FakeLibrary:
    """One library ("virtual folder"); `size` grows with `FakeMediaServer.add`."""

    name: str
    kind: str = "movies"
    size: int = 100

    @property
    def id(self) -> str:
        return hashlib.md5(self.name.encode()).hexdigest()


@dataclass
class ItemShape:
    """What each item carries; None means random per item."""

    tags: int | None = None
    genres: int | None = None
    taglines: int | None = None
    overview_chars: int = 300
    # -- real-server shapes: send empty lists and the missing ProviderIds as explicit nulls,
    # as some proxies and older servers do, instead of omitting or emptying them
    explicit_nulls: bool = False


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it; header names are lower-cased."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""


class _BadRequest(Exception):
    pass


class _Edit(NamedTuple):
    fields: dict[str, Any]
    saved_us: int


class _Filter(NamedTuple):
    types: frozenset[str] | None  # None: every type the library holds
    min_saved_us: int | None


@dataclass
class _LibState:
    lib: FakeLibrary
    ordinal: int
    base_size: int
    removed: set[int] = field(default_factory=set)
    edits: dict[int, _Edit] = field(default_factory=dict)
    add_starts: list[int] = field(default_factory=list)  # first index of each add() batch
    add_times: list[int] = field(default_factory=list)  # its DateLastSaved, µs since epoch
    version: int = 0  # bumped on every change, so cached sequence indexes go stale

    def added_us(self, index: int) -> int | None:
        if index < self.base_size:
            return None
        return self.add_times[bisect.bisect_right(self.add_starts, index) - 1]


class _Sequence(NamedTuple):
    """The filtered item sequence of one library at one version, without materialising it:
    its length and the raw index of every CHECKPOINT_EVERY-th match, so a page is found by
    scanning at most CHECKPOINT_EVERY + Limit cheap predicates."""

    count: int
    checkpoints: list[int]


class FakeMediaServer(LoopbackServer):
    """A fake Jellyfin (or Emby) server on loopback; see the module docstring."""

    server_name = "Kestrel"

    def __init__(
        self,
        libraries: list[FakeLibrary] | None = None,
        *,
        kind: str = "jellyfin",
        token: str = "test-token",
        seed: int = 0,
        faults: Faults | None = None,
        shape: ItemShape | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        cache_items: int = ITEM_CACHE_SIZE,
    ) -> None:
        if kind not in ("jellyfin", "emby"):
            raise ValueError(f"kind must be 'jellyfin' or 'emby', not {kind!r}")
        if libraries is None:
            libraries = [
                FakeLibrary("Movies", "movies", 60),
                FakeLibrary("TV Shows", "tvshows", 40),
            ]
        self.kind, self.token, self.seed = kind, token, seed
        self.shape = shape or ItemShape()
        # Overview is left out now and then only when the shape is random; a fixed shape is
        # what benchmarks ask for, and they want every item the same size.
        self._random_shape = shape is None or None in (shape.tags, shape.genres, shape.taglines)
        self.server_id = hashlib.md5(f"fake-server:{seed}".encode()).hexdigest()
        self._libs = self._make_states(libraries)
        self._lock = threading.Lock()
        self._sequences: dict[tuple[Any, ...], _Sequence] = {}
        self._base_json = functools.lru_cache(maxsize=cache_items)(self._encode_base)
        self._series_name = functools.lru_cache(maxsize=1024)(self._series_title)
        self.faults = faults or Faults()
        self.requests: list[RecordedRequest] = []
        # -- real-server shapes: a user token (not an admin's API key) may not list the virtual
        # folders; Jellyfin 10.8 and Emby have no /UserViews, Emby no /Users/Me either.
        self.user_token: str | None = None
        self.legacy_views = False
        # -- end of real-server shapes
        self.push_log = ArrivalLog()  # the calls `catalog push` makes: item reads and writes
        self.writes: Counter[str] = Counter()  # write calls by route
        super().__init__(host, port)

    @staticmethod
    def _make_states(libraries: list[FakeLibrary]) -> dict[str, _LibState]:
        states: dict[str, _LibState] = {}
        for ordinal, given in enumerate(libraries):
            if given.name in states:
                raise ValueError(f"two libraries named {given.name!r}")
            if given.kind not in LIBRARY_TYPES:
                kinds = ", ".join(map(repr, LIBRARY_TYPES))
                raise ValueError(f"library kind must be one of {kinds}, not {given.kind!r}")
            lib = replace(given)  # our own copy: add() grows its size
            states[lib.name] = _LibState(lib, ordinal, lib.size)
        return states

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        return self._faults

    @faults.setter
    def faults(self, value: Faults) -> None:
        # A new Faults restarts the request counter and error RNG, so each run is repeatable.
        self._faults = value
        self._items_requests = 0
        self._fault_rng = random.Random(f"{self.seed}:faults")

    def respond(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> Reply:
        return self._handle(RecordedRequest(method, path, query, headers, body))

    # -- the library, as tests see it --------------------------------------------------------

    def library(self, name: str) -> FakeLibrary:
        """The library called `name` (KeyError if there is none)."""
        return self._state(name).lib

    def item(self, library: str, index: int) -> dict[str, Any] | None:
        """A fresh copy of the JSON dict the server would send for this item now."""
        st = self._state(library)
        self._check_index(st, index)
        if index in st.removed:
            return None
        return self._compose(st, index)

    def full_item(self, library: str, index: int) -> dict[str, Any] | None:
        """The item as GET /Items/{id} sends it: `item` with the fields an update needs."""
        st = self._state(library)
        self._check_index(st, index)
        return None if index in st.removed else self._full_item(st, index)

    def item_id(self, library: str, index: int) -> str:
        """The Id of item `index` (even when malformed items leave it out)."""
        st = self._state(library)
        if self.kind == "emby":
            return str((st.ordinal + 1) * EMBY_ID_SPAN + index)
        return _hex_id(library, index)

    def items(self, library: str) -> Iterator[dict[str, Any]]:
        """Every current item in served order, generated lazily."""
        st = self._state(library)
        for index in range(st.lib.size):
            if index not in st.removed:
                yield self._compose(st, index)

    def malformed_indexes(self, library: str) -> list[int]:
        """Indexes of the current items the malformed_every fault spoils."""
        st, every = self._state(library), self._faults.malformed_every
        if every <= 0:
            return []
        return [i for i in range(every - 1, st.lib.size, every) if i not in st.removed]

    def edit(self, library: str, index: int, **fields: Any) -> None:
        """Override JSON fields (None deletes one); DateLastSaved becomes now."""
        st = self._state(library)
        self._check_index(st, index)
        saved_us = _now_us()
        explicit = fields.get("DateLastSaved")
        if isinstance(explicit, str):  # an explicit DateLastSaved also decides filtering
            parsed = _parse_iso_us(explicit)
            saved_us = saved_us if parsed is None else parsed
        with self._lock:
            old = st.edits.get(index)
            merged = {**(old.fields if old else {}), **copy.deepcopy(fields)}
            st.edits[index] = _Edit(merged, saved_us)
            st.version += 1

    def remove(self, library: str, index: int) -> None:
        """Stop serving the item."""
        st = self._state(library)
        self._check_index(st, index)
        with self._lock:
            st.removed.add(index)
            st.version += 1

    def add(self, library: str, count: int) -> None:
        """Append `count` new items, saved now."""
        st = self._state(library)
        if count <= 0:
            return
        with self._lock:
            st.add_starts.append(st.lib.size)
            st.add_times.append(_now_us())
            st.lib.size += count
            st.version += 1

    def _state(self, library: str) -> _LibState:
        try:
            return self._libs[library]
        except KeyError:
            raise KeyError(f"no library named {library!r}") from None

    @staticmethod
    def _check_index(st: _LibState, index: int) -> None:
        if not 0 <= index < st.lib.size:
            raise IndexError(f"{st.lib.name!r} has no item {index} (size {st.lib.size})")

    # -- item generation ---------------------------------------------------------------------

    def _item_json(self, st: _LibState, index: int) -> bytes:
        """The item's JSON as served; untouched items come from a cache of encoded bytes."""
        every = self._faults.malformed_every
        malformed = every > 0 and index % every == every - 1
        if index in self._faults.undecodable:
            return _undecodable(_encode(self._compose(st, index)), self._faults.undecodable[index])
        if malformed or index >= st.base_size or index in st.edits:
            return _encode(self._compose(st, index))
        return self._base_json(st.lib.name, index)

    def _encode_base(self, library: str, index: int) -> bytes:
        return self._generate_json(self._libs[library], index).encode()

    def _compose(self, st: _LibState, index: int) -> dict[str, Any]:
        """A freshly generated item with additions, malformation and edits laid over it."""
        item = json.loads(self._generate_json(st, index))
        added_us, edit = st.added_us(index), st.edits.get(index)
        every = self._faults.malformed_every
        if added_us is not None:
            item["DateLastSaved"] = _format_us(added_us)
        if every > 0 and index % every == every - 1:
            _malform(item, (index // every) % 5)
        if edit is not None:
            item["DateLastSaved"] = _format_us(edit.saved_us)
            for key, value in edit.fields.items():
                if value is None:
                    item.pop(key, None)
                else:
                    item[key] = copy.deepcopy(value)
        return item

    def _rng(self, library: str, index: int) -> random.Random:
        # An integer seed (seed, library, index) is cheaper than the equivalent string one.
        return random.Random((self.seed << 72) + (_library_mask(library) << 40) + index)

    def _series_title(self, library: str, series: int) -> str:
        return _title(self._rng(library, series).random)  # the title is a Series' first draw

    def _generate_json(self, st: _LibState, index: int) -> str:
        """The untouched item as JSON text. It is written directly, from "key":value parts,
        because that is several times cheaper than building a dict and json-encoding it, and
        benchmarks need ~30,000 items/s; item() and edits json.loads it back."""
        r = self._rng(st.lib.name, index).random
        type_ = _nominal_type(st.lib.kind, index)
        name = _title(r)
        created = _format_us(_created_us(index))
        parts = [
            f'"Name":{_q(name)}',
            f'"ServerId":"{self.server_id}"',
            f'"Id":"{self.item_id(st.lib.name, index)}"',
            f'"DateCreated":"{created}"',
            f'"DateLastSaved":"{created}"',
            f'"SortName":{_q(_sort_name(name))}',
            f'"Type":"{type_}"',
        ]
        self._text_parts(parts, r)
        _rating_parts(parts, r)
        _media_parts(parts, r, type_, self.kind, self.shape.explicit_nulls)
        if type_ == "Episode":
            self._episode_parts(parts, st, index)
        return "{" + ",".join(parts) + "}"

    def _text_parts(self, parts: list[str], r: Draw) -> None:
        shape = self.shape
        omit_overview = self._random_shape and r() < 0.05
        if shape.overview_chars > 0 and not omit_overview:
            parts.append(f'"Overview":{_q(_overview(r, shape.overview_chars))}')
        genres = _pick(r, GENRES, _count(r, shape.genres, 3))
        tags = _pick(r, TAGS, _count(r, shape.tags, 8))
        taglines = _pick(r, TAGLINES, _count(r, shape.taglines, 1))
        nulls = shape.explicit_nulls
        parts.append(f'"Genres":{_q_list(genres, nulls)}')
        if self.kind == "emby":  # Emby: tags only as records, genres also as records
            parts.append(f'"GenreItems":{_named_list(genres, GENRES)}')
            parts.append(f'"TagItems":{_named_list(tags, TAGS)}')
        else:
            parts.append(f'"Tags":{_q_list(tags, nulls)}')
        parts.append(f'"Taglines":{_q_list(taglines, nulls)}')

    def _episode_parts(self, parts: list[str], st: _LibState, index: int) -> None:
        series = index - index % (EPISODES_PER_SERIES + 1)
        number = index - series - 1
        season = number // EPISODES_PER_SEASON + 1
        parts.append(f'"SeriesId":"{self.item_id(st.lib.name, series)}"')
        parts.append(f'"SeriesName":{_q(self._series_name(st.lib.name, series))}')
        parts.append(f'"SeasonId":"{self._season_id(st, series, season)}"')
        parts.append(f'"SeasonName":"Season {season}"')
        parts.append(f'"IndexNumber":{number % EPISODES_PER_SEASON + 1}')
        parts.append(f'"ParentIndexNumber":{season}')

    def _season_id(self, st: _LibState, series: int, season: int) -> str:
        if self.kind == "emby":  # seasons live in the upper half of the library's id span
            offset = EMBY_ID_SPAN // 2 + series * 2 + season - 1
            return str((st.ordinal + 1) * EMBY_ID_SPAN + offset)
        return hashlib.md5(f"{st.lib.name}:{series}:season:{season}".encode()).hexdigest()

    def _find_item(self, item_id: str) -> tuple[_LibState, int] | None:
        for st in self._libs.values():
            index = _index_of(self.kind, st, item_id)
            if index is None or index >= st.lib.size or index in st.removed:
                continue
            if self.item_id(st.lib.name, index) == item_id:  # the index was only a guess
                return st, index
        return None

    # -- the filtered sequence ---------------------------------------------------------------

    def _matching(self, st: _LibState, flt: _Filter, start: int) -> Iterator[int]:
        """Raw indexes >= start that pass the filter, in served order."""
        removed, types, min_us, kind = st.removed, flt.types, flt.min_saved_us, st.lib.kind
        for index in range(start, st.lib.size):
            if index in removed:
                continue
            if types is not None and _nominal_type(kind, index) not in types:
                continue
            if min_us is not None and _saved_us(st, index) < min_us:
                continue
            yield index

    def _sequence(self, st: _LibState, flt: _Filter) -> _Sequence:
        key = (st.lib.name, flt, st.version)
        with self._lock:
            cached = self._sequences.get(key)
            if cached is not None:
                return cached
            checkpoints, count = [], 0
            for count, index in enumerate(self._matching(st, flt, 0), start=1):
                if count % CHECKPOINT_EVERY == 1:
                    checkpoints.append(index)
            if len(self._sequences) >= INDEX_CACHE_SIZE:
                del self._sequences[next(iter(self._sequences))]  # oldest first
            sequence = self._sequences[key] = _Sequence(count, checkpoints)
            return sequence

    def _page(self, st: _LibState, flt: _Filter, start: int, limit: int | None) -> list[int]:
        """Raw indexes of filtered positions start .. start+limit-1."""
        sequence = self._sequence(st, flt)
        if start >= sequence.count or limit == 0:
            return []
        block = start // CHECKPOINT_EVERY
        matches = self._matching(st, flt, sequence.checkpoints[block])
        skip = start - block * CHECKPOINT_EVERY
        return list(islice(matches, skip, None if limit is None else skip + limit))

    # -- HTTP --------------------------------------------------------------------------------

    def _handle(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
        path = request.path.rstrip("/").lower()
        if path == "/system/info/public" and request.method == "GET":
            return _json_response(self._public_info())
        if not self._authorized(request.headers):
            return Reply(401)  # Jellyfin answers 401 with an empty body
        query = {k.lower(): v for k, v in request.query.items()}
        if _ITEM_PATH.fullmatch(path) or "ids" in query:
            return self._push_call(request, path, query)
        if request.method != "GET":
            return _error(404, "Not Found")
        views = self._views_route(request.headers, path)
        if views is not None:
            return views
        routes = {"/library/virtualfolders": self._virtual_folders}
        if path in routes:
            return _json_response(routes[path]())
        if path == "/items":
            return self._items_response(query)
        return _error(404, "Not Found")

    def _authorized(self, headers: dict[str, str]) -> bool:
        given = self._token(headers)
        return given is not None and given in (self.token, self.user_token)

    def _token(self, headers: dict[str, str]) -> str | None:
        # Query-string tokens (api_key, ApiKey) are ignored on purpose: Jellyfin 12 refuses them.
        if self.kind == "emby":
            return headers.get("x-emby-token")
        scheme, _, params = headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() != "mediabrowser":
            return None
        return {k.lower(): v for k, v in _AUTH_PARAM.findall(params)}.get("token")

    # -- real-server shapes: where a user token finds its libraries

    def _views_route(self, headers: dict[str, str], path: str) -> Reply | None:
        """The answer to a views request (or a user token's VirtualFolders), else None."""
        user = self._token(headers) == self.user_token
        if path == "/library/virtualfolders" and user:
            return _error(403, "Forbidden")
        user_id = self._me()["Id"]
        jellyfin = self.kind == "jellyfin"
        if path == "/userviews" and jellyfin and not self.legacy_views:
            return _json_response(self._user_views())
        if path == "/users/me" and jellyfin:
            return _json_response(self._me())
        if path == "/sessions" and not jellyfin:
            return _json_response([{"Id": "s1", "UserId": user_id, "Client": "catalog"}])
        if path == f"/users/{user_id}/views":
            return _json_response(self._user_views())
        return None

    # -- end of real-server shapes

    def _public_info(self) -> dict[str, Any]:
        product = "Emby Server" if self.kind == "emby" else "Jellyfin Server"
        return {"ServerName": "fake", "Version": "10.10.3", "ProductName": product,
                "Id": self.server_id}  # fmt: skip

    def _virtual_folders(self) -> list[dict[str, Any]]:
        return [
            {"Name": st.lib.name, "ItemId": st.lib.id, "CollectionType": st.lib.kind,
             "Locations": [], "LibraryOptions": {}}
            for st in self._libs.values()
        ]  # fmt: skip

    def _user_views(self) -> dict[str, Any]:
        views = [
            {"Name": st.lib.name, "Id": st.lib.id, "CollectionType": st.lib.kind,
             "Type": "CollectionFolder"}
            for st in self._libs.values()
        ]  # fmt: skip
        return {"Items": views, "TotalRecordCount": len(views), "StartIndex": 0}

    def _me(self) -> dict[str, Any]:
        # Not in the brief's endpoint list, but the client asks it for a user token's views.
        user_id = hashlib.md5(f"fake-user:{self.seed}".encode()).hexdigest()
        return {"Name": "fake", "ServerId": self.server_id, "Id": user_id}

    # -- the calls `catalog push` makes: reading one item, writing its tags -------------------

    def _push_call(self, request: RecordedRequest, path: str, query: dict[str, str]) -> Reply:
        """An item read or write, paced and faulted as `Faults.push_*` say, and recorded."""
        with self.push_log.tracked() as number:
            faults = self._faults
            if faults.push_latency_s > 0:
                time.sleep(faults.push_latency_s)
            retry_after = (("Retry-After", _retry_after_text(faults.retry_after_s)),)
            if _every(faults.push_rate_limit_every, number):
                return _error(429, "Too Many Requests", retry_after)
            if _every(faults.push_unavailable_every, number):
                return _error(503, "Service Unavailable", retry_after)
            return self._item_route(request, path, query)

    def _item_route(self, request: RecordedRequest, path: str, query: dict[str, str]) -> Reply:
        match = _ITEM_PATH.fullmatch(path)
        if request.method == "GET" and "ids" in query:
            return self._items_by_id(query["ids"])
        if match is None:
            return _error(404, "Not Found")
        parts = request.path.rstrip("/").split("/")
        item_id = parts[4] if match.group("ids") else parts[2]  # /Users/{uid}/Items/{id}
        action, method = match.group("action"), request.method
        if method == "GET" and action is None:
            return self._single_item(item_id)
        if method == "POST" and action is None and self.kind == "jellyfin":
            return self._replace_item(item_id, request.body)
        if method == "POST" and action in ("/tags/add", "/tags/delete") and self.kind == "emby":
            return self._edit_tags(item_id, request.body, adding=action == "/tags/add")
        return _error(404, "Not Found")

    def _single_item(self, item_id: str) -> Reply:
        found = self._find_item(item_id)
        if found is None:
            return _error(404, "Item not found")
        return _json_response(self._full_item(*found))

    def _full_item(self, st: _LibState, index: int) -> dict[str, Any]:
        """The item as GET /Items/{id} sends it: with the fields an update needs."""
        item = self._compose(st, index)
        item.setdefault("LockedFields", [])
        item.setdefault("LockData", False)
        item.setdefault("ProviderIds", {})
        return item

    def _items_by_id(self, ids: str) -> Reply:
        found = [self._find_item(i) for i in ids.split(",") if i]
        items = [self._full_item(*f) for f in found if f is not None]
        return _json_response({"Items": items, "TotalRecordCount": len(items), "StartIndex": 0})

    def _replace_item(self, item_id: str, body: bytes) -> Reply:
        """Jellyfin's POST /Items/{id}: every field of the body REPLACES the item's, and a field
        missing from the body becomes null (LockData: false); without Genres, Tags or
        ProviderIds it throws, as 10.11 does. Tags on a Series spread to its episodes whose
        LockedFields lack Tags."""
        found = self._find_item(item_id)
        if found is None:
            return _error(404, "Item not found")
        try:
            update = json.loads(body)
        except ValueError:
            return _error(400, "the body is not JSON")
        if not isinstance(update, dict) or any(
            not isinstance(update.get(k), (list, dict)) for k in ("Genres", "Tags", "ProviderIds")
        ):
            return _error(500, "Value cannot be null. (Parameter 'source')")
        st, index = found
        current = self._full_item(st, index)
        fields = {k: None for k in current if k not in SERVER_MANAGED}
        fields.update({k: v for k, v in update.items() if k not in SERVER_MANAGED})
        fields.setdefault("LockData", False)
        if fields["LockData"] is None:
            fields["LockData"] = False
        self._saved(st, index, fields, "POST /Items/{id}")
        if current.get("Type") == "Series":
            self._spread_series_tags(st, index, list(update["Tags"]))
        return Reply(204)

    def _spread_series_tags(self, st: _LibState, series: int, tags: list[str]) -> None:
        for index in range(series + 1, min(series + EPISODES_PER_SERIES + 1, st.lib.size)):
            if index in st.removed:
                continue
            episode = self._compose(st, index)
            if "Tags" not in (episode.get("LockedFields") or []):
                self.edit(st.lib.name, index, Tags=tags)

    def _edit_tags(self, item_id: str, body: bytes, *, adding: bool) -> Reply:
        """Emby's POST /Items/{id}/Tags/Add and /Tags/Delete: {"Tags": [{"Name": ...}]}."""
        found = self._find_item(item_id)
        try:
            names = [str(t["Name"]) for t in json.loads(body)["Tags"]]
        except (ValueError, KeyError, TypeError):
            return _error(400, 'expected {"Tags": [{"Name": ...}]}')
        if found is None:
            return _error(404, "Item not found")
        st, index = found
        current = self._compose(st, index)
        tags = [t["Name"] for t in current.get("TagItems") or ()] or current.get("Tags") or []
        if adding:
            tags += [n for n in names if n.casefold() not in {t.casefold() for t in tags}]
        else:
            tags = [t for t in tags if t.casefold() not in {n.casefold() for n in names}]
        # Emby answers with TagItems records, never a Tags list (Tags None: left out).
        items = [{"Name": t, "Id": 1000 + n} for n, t in enumerate(tags)]
        fields = {"TagItems": items, "Tags": None}
        self._saved(st, index, fields, "Tags/Add" if adding else "Tags/Delete")
        return Reply(204)

    def _saved(self, st: _LibState, index: int, fields: dict[str, Any], route: str) -> None:
        """Store a write: DateLastSaved becomes now and, as in Jellyfin, the Etag with it."""
        etag = hashlib.md5(f"{time.time_ns()}:{index}".encode()).hexdigest()
        self.edit(st.lib.name, index, **fields, Etag=etag)
        with self._lock:
            self.writes[route] += 1

    def _items_response(self, query: dict[str, str]) -> Reply:
        faults = self._faults
        with self._lock:
            self._items_requests += 1
            number = self._items_requests
            unlucky = faults.error_rate > 0 and self._fault_rng.random() < faults.error_rate
        if faults.latency_s > 0:
            time.sleep(faults.latency_s)
        failure = _injected_failure(faults, number, query, unlucky)
        if failure is not None:
            return failure
        if number >= faults.http_faults_from and (hostile := _hostile_reply(faults, query)):
            return hostile
        try:
            body = self._items_body(query)
        except _BadRequest as exc:
            return _error(400, str(exc))
        if len(body) < faults.oversize_bytes:
            body = _pad(body, faults.oversize_bytes)
        reply = Reply(200, body, drop=_every(faults.drop_every, number))
        if number >= faults.http_faults_from:  # HTTP faults: the same answer, trickled
            reply = reply._replace(
                slow_headers_s=faults.slow_headers_s, slow_body_s=faults.slow_body_s
            )
        return reply

    def _items_body(self, query: dict[str, str]) -> bytes:
        st = self._parent(query.get("parentid"))
        flt = _Filter(_wanted_types(st, query.get("includeitemtypes")), _min_saved(query))
        start = _int_param(query, "startindex", 0)
        limit = _int_param(query, "limit", None)
        # Ties sorted unstably can also bring an item back pages later: the page at the
        # StartIndex given opens with the item at the earlier position, then goes on as the
        # one before it left off, and later pages shift back by one, as below.
        repeat = self._faults.far_repeat if limit else None
        if repeat and start == repeat[0]:
            at, position = repeat
            indexes = self._page(st, flt, position, 1) + self._page(st, flt, at, limit - 1)
        elif start > 0 and (self._faults.boundary_repeats or (repeat and start > repeat[0])):
            # Real Jellyfin sorts ties unstably, so pages overlap: here the page at StartIndex s
            # is the item at s-1 followed by s .. s+Limit-2, still Limit items long. A client
            # stepping StartIndex by Limit thus gets item Limit-1 twice (end of page one, start
            # of page two), every later page shifted back by one, and the last item only from
            # the page at StartIndex == total, which a client paging until a short page asks
            # for; one that stops at TotalRecordCount misses it, as it could with Jellyfin.
            indexes = self._page(st, flt, start - 1, limit)
        else:
            indexes = self._page(st, flt, start, limit)
        count = query.get("enabletotalrecordcount", "true").lower() != "false"
        total = self._sequence(st, flt).count if count else 0
        # Items are encoded one by one (and cached that way), then joined into the envelope.
        items = b",".join([self._item_json(st, index) for index in indexes])
        return b'{"Items":[%b],"TotalRecordCount":%d,"StartIndex":%d}' % (items, total, start)

    def _parent(self, parent_id: str | None) -> _LibState:
        wanted = (parent_id or "").replace("-", "").lower()  # Jellyfin also takes dashed GUIDs
        for st in self._libs.values():
            if st.lib.id == wanted:
                return st
        raise _BadRequest(f"unknown ParentId {parent_id!r}")


# -- helpers -----------------------------------------------------------------------------------


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_q = json.encoder.encode_basestring  # a str as a JSON string literal, non-ASCII kept as is


def _encode(value: Any) -> bytes:
    return _ENCODER.encode(value).encode("utf-8")


def _json_response(value: Any) -> Reply:
    return Reply(200, _encode(value))


def _error(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return Reply(status, _encode({"Message": message}), headers)


def _every(n: int, number: int) -> bool:
    return n > 0 and number % n == 0


def _injected_failure(
    faults: Faults, number: int, query: dict[str, str], unlucky: bool
) -> Reply | None:
    """The fault answer for /Items request `number`, or None to answer normally."""
    start = query.get("startindex", "0")
    if start.isdigit() and int(start) in faults.fail_start_indexes:
        return _error(500, "injected failure at this StartIndex")
    retry_after = (("Retry-After", _retry_after_text(faults.retry_after_s)),)
    if _every(faults.rate_limit_every, number):
        return _error(429, "Too Many Requests", retry_after)
    if _every(faults.unavailable_every, number):
        return _error(503, "Service Unavailable", retry_after)
    if unlucky:
        return _error(500, "injected failure")
    return None


# -- HTTP faults -------------------------------------------------------------------------------


def _hostile_reply(faults: Faults, query: dict[str, str]) -> Reply | None:
    """The answer of a hostile transport to /Items, or None to answer normally (slow answers
    are the normal answer, slowly)."""
    if faults.redirect_to:
        location = f"{faults.redirect_to.rstrip('/')}/Items?{urlencode(query)}"
        return Reply(302, b"", (("Location", location),))
    if faults.gzip_bomb_bytes:
        return Reply(200, gzip_bomb(faults.gzip_bomb_bytes), (("Content-Encoding", "gzip"),))
    return None


@functools.lru_cache(maxsize=2)
def gzip_bomb(size: int) -> bytes:
    """`size` zero bytes, gzip-compressed a MiB at a time (about 1 KiB on the wire per MiB)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1024 * 1024)
    out = [
        packer.compress(block[: min(len(block), size - done)])
        for done in range(0, size, len(block))
    ]
    return b"".join([*out, packer.flush()])


# -- end of HTTP faults


def _retry_after_text(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)


def _pad(body: bytes, size: int) -> bytes:
    # The envelope is an object ending in "}": slip a Padding string in before it.
    filler = max(size - len(body) - len(b',"Padding":""'), 0)
    return body[:-1] + b',"Padding":"' + b"x" * filler + b'"}'


def _int_param(query: dict[str, str], name: str, default: int | None) -> int | None:
    text = query.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise _BadRequest(f"{name} must be an integer, not {text!r}") from None
    if value < 0:
        raise _BadRequest(f"{name} must not be negative")
    return value


def _wanted_types(st: _LibState, text: str | None) -> frozenset[str] | None:
    held = LIBRARY_TYPES[st.lib.kind]
    if not text:
        return None
    canonical = {t.lower(): t for types in LIBRARY_TYPES.values() for t in types}
    asked = {canonical.get(part.strip().lower(), part.strip()) for part in text.split(",")}
    wanted = held & asked
    return None if wanted == held else frozenset(wanted)


def _min_saved(query: dict[str, str]) -> int | None:
    text = query.get("mindatelastsaved")
    if not text:
        return None
    value = _parse_iso_us(text)
    if value is None:
        raise _BadRequest(f"MinDateLastSaved {text!r} is not a date")
    return value


def _parse_iso_us(text: str) -> int | None:
    """µs since the epoch of an ISO 8601 date; naive means UTC, digits past 6 are dropped."""
    match = _ISO.fullmatch(text.strip())
    if match is None:
        return None
    head, fraction, zone = match.groups()
    if len(head) == 10:
        head += "T00:00:00"  # a bare date means its midnight
    normalized = head + (f".{fraction[:6]:0<6}" if fraction else "")
    normalized += "+00:00" if zone in (None, "Z") else zone
    try:
        value = datetime.fromisoformat(normalized)
    except ValueError:
        return None
    return (value.astimezone(UTC).replace(tzinfo=None) - _EPOCH) // timedelta(microseconds=1)


def _format_us(us: int) -> str:
    """Jellyfin's date format: 7 fractional digits, or fewer with trailing zeros dropped."""
    seconds, micros = divmod(us, 1_000_000)
    days, seconds = divmod(seconds, 86_400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    fraction = "0000000" if micros == 0 else f"{micros:06d}".rstrip("0")
    return f"{_day(days)}T{hours:02d}:{minutes:02d}:{seconds:02d}.{fraction}Z"


@functools.lru_cache(maxsize=1024)
def _day(days: int) -> str:
    return (_EPOCH + timedelta(days=days)).date().isoformat()


def _now_us() -> int:
    return time.time_ns() // 1000


def _created_us(index: int) -> int:
    # One second per index plus a sub-second part, so DateCreated rises with the index; every
    # third item lands on a whole second, which Jellyfin prints with 7 zeros.
    micros = 0 if index % 3 == 0 else (index * 2654435761 >> 7) % 1_000_000
    return _BASE_US + index * 1_000_000 + micros


def _saved_us(st: _LibState, index: int) -> int:
    edit = st.edits.get(index)
    if edit is not None:
        return edit.saved_us
    added = st.added_us(index)
    return _created_us(index) if added is None else added


def _nominal_type(kind: str, index: int) -> str:
    if kind in SINGLE_TYPE:
        return SINGLE_TYPE[kind]
    return "Series" if index % (EPISODES_PER_SERIES + 1) == 0 else "Episode"


def _hex_id(library: str, index: int) -> str:
    digest = hashlib.md5(f"{library}:{index}".encode()).hexdigest()
    tail = ((index * _ID_MULTIPLIER) ^ _library_mask(library)) & 0xFFFFFFFF
    return f"{digest[:24]}{tail:08x}"


@functools.lru_cache(maxsize=256)
def _library_mask(library: str) -> int:
    return int(hashlib.md5(library.encode()).hexdigest()[:8], 16)


def _index_of(kind: str, st: _LibState, item_id: str) -> int | None:
    """The index `item_id` would have in this library, to be confirmed by the caller."""
    if kind in ("emby", "plex"):  # numbered the same way
        if not item_id.isdigit():
            return None
        ordinal, index = divmod(int(item_id), EMBY_ID_SPAN)
        return index if ordinal == st.ordinal + 1 else None
    if len(item_id) != 32:
        return None
    try:
        tail = int(item_id[24:], 16)
    except ValueError:
        return None
    return ((tail ^ _library_mask(st.lib.name)) * _ID_INVERSE) & 0xFFFFFFFF


# Generation speed matters (benchmarks serve ~30,000 items/s), so the helpers below take the
# bound rng.random and do arithmetic on it instead of calling randint/choice/sample, which cost
# several times more per draw.


def _between(r: Draw, low: int, high: int) -> int:
    return low + int(r() * (high - low + 1))


def _one(r: Draw, pool: list[str]) -> str:
    return pool[int(r() * len(pool))]


def _title(r: Draw) -> str:
    adjective, noun, other = _one(r, ADJECTIVES), _one(r, NOUNS), _one(r, NOUNS)
    style = int(r() * 10)
    if style < 3:
        return f"The {adjective} {noun}"
    if style < 5:
        return f"{noun} of the {other}"
    if style < 7:
        return f"{adjective} {noun}: {other}"
    if style < 9:
        return f"{adjective} {noun} {_between(r, 2, 4)}"
    return f"{noun} {_one(r, EMOJI)}"


def _sort_name(name: str) -> str:
    lowered = name.lower()
    return lowered[4:] if lowered.startswith("the ") else lowered


def _overview(r: Draw, chars: int) -> str:
    # A slice of a fixed pseudo-text, starting at a word: one draw instead of one per word.
    corpus = _CORPUS if chars * 2 < len(_CORPUS) else _CORPUS * (chars // len(_CORPUS) + 2)
    start = corpus.find(" ", int(r() * (len(corpus) - chars - 32))) + 1
    text = corpus[start : start + chars - 1].rstrip()
    return text[:1].upper() + text[1:] + "."  # not capitalize(): it rescans every character


def _count(r: Draw, fixed: int | None, most: int) -> int:
    return fixed if fixed is not None else _between(r, 0, most)


def _pick(r: Draw, pool: list[str], count: int) -> list[str]:
    """`count` distinct names of the pool, more than it holds made up by numbering (a fixed
    shape may ask for them)."""
    size = len(pool)
    if count * 4 <= size:  # few of many: draw, and redraw the rare repeat
        picked: list[str] = []
        while len(picked) < count:
            name = pool[int(r() * size)]
            if name not in picked:
                picked.append(name)
        return picked
    shuffled = list(pool)  # else a partial Fisher-Yates shuffle
    for j in range(min(count, size)):
        k = j + int(r() * (size - j))
        shuffled[j], shuffled[k] = shuffled[k], shuffled[j]
    return shuffled[:count] + [f"{pool[i % size]} {i // size}" for i in range(size, count)]


def _q_list(values: list[str], nulls: bool = False) -> str:
    if nulls and not values:
        return "null"
    return "[" + ",".join(map(_q, values)) + "]"


def _named_list(values: list[str], pool: list[str]) -> str:
    """Emby's [{"Name", "Id"}] records; the Id is a number, as Emby sends it."""
    ids = [pool.index(v) + 1 if v in pool else 1000 + n for n, v in enumerate(values)]
    return (
        "["
        + ",".join(f'{{"Name":{_q(v)},"Id":{i}}}' for v, i in zip(values, ids, strict=True))
        + "]"
    )


def _rating_parts(parts: list[str], r: Draw) -> None:
    # Jellyfin sends CommunityRating only when > 0, and as a whole number when it is one.
    if r() < 0.8:
        rating = _between(r, 10, 100) / 10
        parts.append(f'"CommunityRating":{int(rating) if r() < 0.15 else rating!r}')
    if r() < 0.5:
        parts.append(f'"CriticRating":{_between(r, 0, 100)}')
    if r() < 0.7:
        parts.append(f'"OfficialRating":"{_one(r, OFFICIAL_RATINGS)}"')


def _media_parts(parts: list[str], r: Draw, type_: str, kind: str, nulls: bool) -> None:
    year, month, day = _between(r, 1925, 2024), _between(r, 1, 12), _between(r, 1, 28)
    if r() < 0.03:
        parts.append(f'"PremiereDate":"{UNKNOWN_DATE}"')
    else:
        parts.append(f'"PremiereDate":"{year}-{month:02d}-{day:02d}T00:00:00.0000000Z"')
        parts.append(f'"ProductionYear":{year}')
    if r() < 0.4 and kind != "emby":  # Emby has no HasSubtitles
        parts.append('"HasSubtitles":true')  # Jellyfin omits it rather than sending false
    minutes = _between(r, 80, 180) if type_ == "Movie" else _between(r, 20, 60)
    if type_ != "Series" or r() < 0.5:
        parts.append(f'"RunTimeTicks":{minutes * 60 * TICKS_PER_SECOND}')
    parts.append('"IsFolder":true' if type_ == "Series" else '"IsFolder":false')
    provider_ids = _provider_ids(r, type_)
    parts.append(f'"ProviderIds":{"null" if nulls and type_ == "Video" else provider_ids}')
    tag = f"{int(r() * 2**48):012x}{int(r() * 2**48):012x}{int(r() * 2**32):08x}"
    parts.append(f'"ImageTags":{{"Primary":"{tag}"}}')
    parts.append('"LocationType":"FileSystem"')
    if type_ != "Series":
        parts.append('"MediaType":"Video"')


def _provider_ids(r: Draw, type_: str) -> str:
    imdb, tmdb, tvdb = _between(r, 1, 9_999_999), _between(r, 1, 999_999), _between(r, 1, 999_999)
    ids = [] if r() < 0.1 else [f'"Imdb":"tt{imdb:07d}"']
    ids.append(f'"Tmdb":"{tmdb}"')
    if type_ != "Movie":
        ids.append(f'"Tvdb":"{tvdb}"')
    return "{" + ",".join(ids) + "}"


# -- bad items ---------------------------------------------------------------------------------


def _undecodable(body: bytes, how: str) -> bytes:
    """The item's JSON with text no decoder accepts slipped into its Name."""
    spoiled = b"\\ud800" if how == "surrogate" else b"\xff\xfe"
    return body.replace(b'"Name":"', b'"Name":"' + spoiled, 1)


# -- end of bad items


def _malform(item: dict[str, Any], reason: int) -> None:
    if reason == 0:
        item.pop("Id", None)
    elif reason == 1:
        item.pop("Name", None)
    elif reason == 2:
        item["Type"] = "Banana"
    elif reason == 3:
        item["CommunityRating"] = 42.5
    else:
        item["PremiereDate"] = "not-a-date"


# -- command line ------------------------------------------------------------------------------


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m catalog.fakes.media_server", description=__doc__.splitlines()[0]
    )
    add = parser.add_argument
    add("--items", type=int, help="serve movie libraries of this many items")
    add("--libraries", type=int, default=1, help="how many movie libraries (with --items)")
    add("--kind", choices=["jellyfin", "emby"], default="jellyfin")
    add("--token", default="test-token")
    add("--seed", type=int, default=0)
    add("--host", default="127.0.0.1")
    add("--port", type=int, default=0)
    for name in ("--tags", "--genres", "--taglines"):
        add(name, type=int, help="fixed count per item (default: random)")
    add("--overview-chars", type=int, default=300)
    add("--latency", type=float, default=0.0, help="seconds to wait before each /Items answer")
    add("--error-rate", type=float, default=0.0)
    for name in ("--rate-limit-every", "--unavailable-every", "--drop-every", "--malformed-every"):
        add(name, type=int, default=0)
    add("--boundary-repeats", action="store_true")
    add("--cache-items", type=int, default=ITEM_CACHE_SIZE,
        help="encoded items kept in memory; benchmarks keep the whole library so that the "
        "fake, not the client, is never what they measure")  # fmt: skip
    args = parser.parse_args(argv)
    if args.items is None and args.libraries != 1:
        parser.error("--libraries needs --items")
    return args


def server_options(args: argparse.Namespace) -> dict[str, Any]:
    """The fake's keyword arguments from the command line (shared by the fake Plex server)."""
    libraries = None
    if args.items is not None:
        names = ["Movies"] + [f"Movies {n}" for n in range(2, args.libraries + 1)]
        libraries = [FakeLibrary(name, "movies", args.items) for name in names]
    shape = None
    if (args.tags, args.genres, args.taglines) != (None, None, None) or args.overview_chars != 300:
        shape = ItemShape(args.tags, args.genres, args.taglines, args.overview_chars)
    faults = Faults(
        latency_s=args.latency, error_rate=args.error_rate,
        rate_limit_every=args.rate_limit_every, unavailable_every=args.unavailable_every,
        drop_every=args.drop_every, malformed_every=args.malformed_every,
        boundary_repeats=args.boundary_repeats,
    )  # fmt: skip
    return {
        "libraries": libraries, "token": args.token, "seed": args.seed, "faults": faults,
        "shape": shape, "host": args.host, "port": args.port, "cache_items": args.cache_items,
    }  # fmt: skip


def serve_until_signalled(server: FakeMediaServer) -> None:
    """Start `server`, print `URL http://HOST:PORT`, and serve until SIGTERM or SIGINT."""
    server.start()
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    print(f"URL {server.url}", flush=True)
    # Wait in short slices so the signal handler gets to run promptly in the main thread.
    while not stopping.wait(0.2):
        pass
    server.stop()


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGTERM or SIGINT, after printing `URL http://HOST:PORT`."""
    args = _parse_args(argv)
    serve_until_signalled(FakeMediaServer(kind=args.kind, **server_options(args)))


if __name__ == "__main__":
    main()
