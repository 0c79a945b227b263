"""A loopback fake Plex Media Server with a seeded synthetic library of any size.

The seeded library, edits, removals, additions, fault injection and flat-memory paging are the
fake Jellyfin's (`catalog.fakes.media_server`); this module gives them Plex's face: sections at
/library/sections, items at /library/sections/{key}/all?type=1|2|4 paged by the
X-Plex-Container-Start/-Size headers, the token in the X-Plex-Token header (a token in the
query string is refused, so a test proves the client never puts one in a URL), JSON only with
`Accept: application/json`, and item shapes taken from real captures (tests/data/plex/): fields
without a value left out, tags as `{"tag": ...}` lists, external ids in `Guid[]` only with
`includeGuids=1`, dates `YYYY-MM-DD`, times epoch seconds.

Run it alone with `python -m catalog.fakes.plex_server --items 100000`; it prints one line,
`URL http://127.0.0.1:PORT`, and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any
from urllib.parse import unquote

from catalog.fakes.loopback import Reply
from catalog.fakes.media_server import (
    EMBY_ID_SPAN,
    EPISODES_PER_SEASON,
    EPISODES_PER_SERIES,
    GENRES,
    OFFICIAL_RATINGS,
    TAGLINES,
    TAGS,
    Draw,
    FakeLibrary,
    FakeMediaServer,
    Faults,
    ItemShape,
    RecordedRequest,
    _BadRequest,
    _between,
    _count,
    _created_us,
    _Edit,
    _error,
    _Filter,
    _int_param,
    _json_response,
    _nominal_type,
    _one,
    _overview,
    _parse_args,
    _pick,
    _q,
    _saved_us,
    _title,
    serve_until_signalled,
    server_options,
)

__all__ = ["FakeLibrary", "FakePlexServer", "Faults", "ItemShape", "RecordedRequest", "main"]

SECTION_TYPES = {"movies": "movie", "tvshows": "show"}
PLEX_TYPES = {"1": "Movie", "2": "Series", "4": "Episode"}  # type=N as the fake's item types
MICROS = 1_000_000
_LABEL_KEY = re.compile(r"label\[(\d+)\]\.tag\.tag")


class FakePlexServer(FakeMediaServer):
    """A fake Plex Media Server on loopback; see the module docstring."""

    server_name = "Plex Media Server"

    def __init__(self, libraries: list[FakeLibrary] | None = None, **options: Any) -> None:
        super().__init__(libraries, kind="jellyfin", **options)
        self.kind = "plex"
        self.machine_id = hashlib.sha1(f"fake-plex:{self.seed}".encode()).hexdigest()

    # -- the library, as tests see it --------------------------------------------------------

    def item_id(self, library: str, index: int) -> str:
        """The ratingKey of item `index`: a number, unique across sections, as in Plex."""
        return str((self._state(library).ordinal + 1) * EMBY_ID_SPAN + index)

    def section_key(self, library: str) -> str:
        return str(self._state(library).ordinal + 1)

    def edit_labels(self, library: str, index: int, labels: list[str]) -> None:
        """Set an item's labels the way Plex does: `updatedAt` does not move."""
        st = self._state(library)
        self._check_index(st, index)
        with self._lock:
            old = st.edits.get(index)
            fields = {**(old.fields if old else {}), "Label": [{"tag": t} for t in labels]}
            st.edits[index] = _Edit(fields, _saved_us(st, index))
            st.version += 1

    # -- item generation ---------------------------------------------------------------------

    def _generate_json(self, st: Any, index: int) -> str:
        """The untouched item as JSON text, written from parts for speed (see the Jellyfin
        fake); the key order and nesting follow a real /all answer."""
        r = self._rng(st.lib.name, index).random
        type_ = _nominal_type(st.lib.kind, index)
        title = _title(r)
        key = self.item_id(st.lib.name, index)
        plex_type = {"Movie": "movie", "Series": "show", "Episode": "episode"}[type_]
        parts = [
            f'"ratingKey":"{key}"',
            f'"key":"/library/metadata/{key}{"/children" if type_ == "Series" else ""}"',
            f'"guid":"plex://{plex_type}/{_hex24(r)}"',
        ]
        if type_ == "Episode":
            parts += self._episode_parts(st, index)
        parts += [f'"type":"{plex_type}"', f'"title":{_q(title)}']
        if title.lower().startswith("the "):
            parts.append(f'"titleSort":{_q(title[4:])}')
        self._text_parts(parts, r, type_)
        parts += _media_parts(r, type_, key, index)
        genres = _pick(r, GENRES, _count(r, self.shape.genres, 3))
        labels = _pick(r, TAGS, _count(r, self.shape.tags, 8))
        if genres:  # Plex leaves an empty tag list out
            parts.append(f'"Genre":{_tag_list(genres)}')
        parts.append(f'"Guid":{_guids(r, type_)}')
        if labels:
            parts.append(f'"Label":{_tag_list(labels)}')
        return "{" + ",".join(parts) + "}"

    def _episode_parts(self, st: Any, index: int) -> list[str]:
        series = index - index % (EPISODES_PER_SERIES + 1)
        number = index - series - 1
        season = number // EPISODES_PER_SEASON + 1
        season_key = (st.ordinal + 1) * EMBY_ID_SPAN + EMBY_ID_SPAN // 2 + series * 2 + season - 1
        return [
            f'"parentRatingKey":"{season_key}"',
            f'"grandparentRatingKey":"{self.item_id(st.lib.name, series)}"',
            f'"grandparentTitle":{_q(self._series_name(st.lib.name, series))}',
            f'"parentTitle":"Season {season}"',
            f'"index":{number % EPISODES_PER_SEASON + 1}',
            f'"parentIndex":{season}',
        ]

    def _text_parts(self, parts: list[str], r: Draw, type_: str) -> None:
        shape = self.shape
        if r() < 0.8:
            parts.append(f'"contentRating":"{_one(r, OFFICIAL_RATINGS)}"')
        if shape.overview_chars > 0 and not (self._random_shape and r() < 0.05):
            parts.append(f'"summary":{_q(_overview(r, shape.overview_chars))}')
        if r() < 0.6 or not self._random_shape:
            parts.append(f'"rating":{_between(r, 0, 100) / 10!r}')
        if r() < 0.8 or not self._random_shape:
            parts.append(f'"audienceRating":{_between(r, 10, 100) / 10!r}')
        if r() < 0.97:
            parts.append(f'"year":{_between(r, 1925, 2024)}')
        tagline_count = _count(r, shape.taglines, 1)
        if tagline_count and type_ != "Episode":
            parts.append(f'"tagline":{_q(_one(r, TAGLINES))}')

    # -- HTTP --------------------------------------------------------------------------------

    def _handle(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
        if any(k.lower() == "x-plex-token" for k in request.query):
            return _error(400, "X-Plex-Token in the query string: refused (send it as a header)")
        if request.headers.get("x-plex-token") != self.token:
            return Reply(401, b"<html><head><title>Unauthorized</title></head></html>")
        if "application/json" not in request.headers.get("accept", ""):
            return _error(406, "this fake answers JSON only: send Accept: application/json")
        path = request.path.rstrip("/")
        parts = path.split("/")
        section_all = len(parts) == 5 and parts[1:3] == ["library", "sections"]
        section_all = section_all and parts[4] == "all"
        metadata = len(parts) == 4 and parts[1:3] == ["library", "metadata"]
        if (metadata and request.method == "GET") or (section_all and request.method == "PUT"):
            return self._push_call(request, path, {})
        if request.method != "GET":
            return _error(404, "Not Found")
        if path == "/library/sections":
            return _json_response(self._sections())
        if section_all:
            return self._items_response(self._items_query(parts[3], request))
        return _error(404, "Not Found")

    # -- the calls `catalog push` makes (paced and faulted by the Jellyfin fake's _push_call) --

    def _item_route(self, request: RecordedRequest, path: str, query: dict[str, str]) -> Reply:
        parts = path.split("/")
        if request.method == "GET":
            found = self._find_item(parts[3])
            if found is None:
                return _error(404, "Not Found")
            item = self._compose(*found)
            container = {"size": 1, "librarySectionID": found[0].ordinal + 1, "Metadata": [item]}
            return _json_response({"MediaContainer": container})
        return self._put_labels(parts[3], request.query)

    def _put_labels(self, section: str, query: dict[str, str]) -> Reply:
        """PUT /library/sections/{key}/all?type=N&id=K[,K2...]: `label[i].tag.tag=A` set the
        whole label set, `label[].tag.tag-=A,B` removes; `updatedAt` does not move."""
        ids = [i for i in query.get("id", "").split(",") if i]
        found = [self._find_item(i) for i in ids]
        if not ids or any(f is None or str(f[0].ordinal + 1) != section for f in found):
            return _error(404, "Not Found")
        given = {int(m[1]): v for k, v in query.items() if (m := _LABEL_KEY.fullmatch(k))}
        setting = [given[n] for n in sorted(given)]
        removing = [unquote(v) for v in query.get("label[].tag.tag-", "").split(",") if v]
        if not setting and not removing:
            return _error(400, "no label given")
        for st, index in found:  # type: ignore[misc]
            labels = [t["tag"] for t in self._compose(st, index).get("Label") or []]
            if setting:
                labels = setting
            labels = [t for t in labels if t not in removing]
            self.edit_labels(st.lib.name, index, labels)
        with self._lock:
            self.writes["PUT labels"] += 1
        return Reply(200)

    def _sections(self) -> dict[str, Any]:
        directories = [
            {"allowSync": True, "art": f"/:/resources/{SECTION_TYPES[st.lib.kind]}-fanart.jpg",
             "filters": True, "refreshing": False, "key": str(st.ordinal + 1),
             "type": SECTION_TYPES[st.lib.kind], "title": st.lib.name,
             "agent": f"tv.plex.agents.{'movie' if st.lib.kind == 'movies' else 'series'}",
             "language": "en-US", "uuid": hashlib.md5(st.lib.name.encode()).hexdigest(),
             "content": True, "directory": True, "hidden": 0,
             "Location": [{"id": st.ordinal + 1, "path": f"/data/{st.lib.name}"}]}
            for st in self._libs.values()
        ]  # fmt: skip
        return {"MediaContainer": {"size": len(directories), "allowSync": False,
                                   "title1": "Plex Library", "Directory": directories}}  # fmt: skip

    def _items_query(self, section: str, request: RecordedRequest) -> dict[str, str]:
        """The request in the shape the shared /Items machinery reads (lower-case keys)."""
        query = {k.lower(): v for k, v in request.query.items()}
        return {
            "section": section,
            "type": query.get("type", ""),
            "guids": query.get("includeguids", "0"),
            "since": query.get("updatedat>>", ""),
            "startindex": request.headers.get("x-plex-container-start", "0"),
            "limit": request.headers.get("x-plex-container-size", ""),
        }

    def _items_body(self, query: dict[str, str]) -> bytes:
        st = self._section(query["section"])
        since = _int_param(query, "since", None)
        flt = _Filter(self._types(st, query["type"]), None if since is None else since * MICROS)
        start = _int_param(query, "startindex", 0)
        limit = _int_param(query, "limit", None)
        if start > 0 and self._faults.boundary_repeats:  # see the Jellyfin fake
            indexes = self._page(st, flt, start - 1, limit)
        else:
            indexes = self._page(st, flt, start, limit)
        total = self._sequence(st, flt).count
        guids = query["guids"] == "1"
        items = b",".join([self._served(st, index, guids) for index in indexes])
        head = (
            b'{"MediaContainer":{"size":%d,"totalSize":%d,"offset":%d,"allowSync":true,'
            b'"identifier":"com.plexapp.plugins.library","librarySectionID":%d,'
            b'"librarySectionTitle":%b' % (len(indexes), total, start, st.ordinal + 1,
                                            _q(st.lib.name).encode())
        )  # fmt: skip
        # Plex leaves Metadata out of an empty page.
        return head + (b',"Metadata":[%b]}}' % items if indexes else b"}}")

    def _served(self, st: Any, index: int, guids: bool) -> bytes:
        body = self._item_json(st, index)
        if guids:
            return body
        item = json.loads(body)  # Guid[] comes only with includeGuids=1
        item.pop("Guid", None)
        return json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode()

    def _section(self, key: str) -> Any:
        for st in self._libs.values():
            if str(st.ordinal + 1) == key:
                return st
        raise _BadRequest(f"no library section {key!r}")

    @staticmethod
    def _types(st: Any, text: str) -> frozenset[str] | None:
        held = {"movies": frozenset({"Movie"}), "tvshows": frozenset({"Series", "Episode"})}
        asked = frozenset({PLEX_TYPES[text]} if text in PLEX_TYPES else ())
        wanted = held[st.lib.kind] & asked if text else held[st.lib.kind]
        return None if wanted == held[st.lib.kind] else wanted

    def _compose(self, st: Any, index: int) -> dict[str, Any]:
        """A freshly generated item with additions, malformation and edits laid over it."""
        item = json.loads(self._generate_json(st, index))
        added_us, edit = st.added_us(index), st.edits.get(index)
        every = self._faults.malformed_every
        if added_us is not None:
            item["addedAt"] = item["updatedAt"] = added_us // MICROS
        if every > 0 and index % every == every - 1:
            _malform(item, (index // every) % 5)
        if edit is not None:
            item["updatedAt"] = edit.saved_us // MICROS
            for key, value in edit.fields.items():
                if value is None:
                    item.pop(key, None)
                else:
                    item[key] = json.loads(json.dumps(value))
        return item


def _hex24(r: Draw) -> str:
    return f"{int(r() * 2**48):012x}{int(r() * 2**48):012x}"


def _media_parts(r: Draw, type_: str, key: str, index: int) -> list[str]:
    """Times, the Media/Part block a real listing carries for files, and the tag lists."""
    added = _created_us(index) // MICROS
    parts = []
    minutes = _between(r, 80, 180) if type_ == "Movie" else _between(r, 20, 60)
    parts.append(f'"thumb":"/library/metadata/{key}/thumb/{added}"')
    parts.append(f'"art":"/library/metadata/{key}/art/{added}"')
    if type_ != "Series" or r() < 0.5:
        parts.append(f'"duration":{minutes * 60_000 + _between(r, 0, 59_999)}')
    if r() < 0.97:
        y, m, d = _between(r, 1925, 2024), _between(r, 1, 12), _between(r, 1, 28)
        parts.append(f'"originallyAvailableAt":"{y}-{m:02d}-{d:02d}"')
    parts.append(f'"addedAt":{added}')
    parts.append(f'"updatedAt":{added}')
    if type_ == "Series":
        parts.append(f'"leafCount":{EPISODES_PER_SERIES},"childCount":2')
    else:
        media_id, bitrate = int(key) % 10**7, _between(r, 900, 21000)
        size = _between(r, 10**8, 10**10)
        parts.append(
            f'"Media":[{{"id":{media_id},"duration":{minutes * 60_000},"bitrate":{bitrate},'
            f'"width":1920,"height":1080,"aspectRatio":1.78,"audioChannels":6,"audioCodec":"eac3",'
            f'"videoCodec":"hevc","videoResolution":"1080","container":"mkv","videoFrameRate":"24p",'
            f'"Part":[{{"id":{media_id},"key":"/library/parts/{media_id}/{added}/file.mkv",'
            f'"duration":{minutes * 60_000},"file":"/data/media/{key}.mkv","size":{size},'
            f'"container":"mkv"}}]}}]'
        )  # fmt: skip
    return parts


def _tag_list(names: list[str]) -> str:
    return "[" + ",".join(f'{{"tag":{_q(n)}}}' for n in names) + "]"


def _guids(r: Draw, type_: str) -> str:
    ids = [] if r() < 0.1 else [f'{{"id":"imdb://tt{_between(r, 1, 9_999_999):07d}"}}']
    ids.append(f'{{"id":"tmdb://{_between(r, 1, 999_999)}"}}')
    if type_ != "Movie":
        ids.append(f'{{"id":"tvdb://{_between(r, 1, 999_999)}"}}')
    return "[" + ",".join(ids) + "]"


def _malform(item: dict[str, Any], reason: int) -> None:
    if reason == 0:
        item.pop("ratingKey", None)
    elif reason == 1:
        item.pop("title", None)
    elif reason == 2:
        item["type"] = "banana"
    elif reason == 3:
        item["audienceRating"] = 42.5
    else:
        item["originallyAvailableAt"] = "not-a-date"


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGTERM or SIGINT, after printing `URL http://HOST:PORT`."""
    serve_until_signalled(FakePlexServer(**server_options(_parse_args(argv))))


if __name__ == "__main__":
    main()
