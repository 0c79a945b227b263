"""Reading the catalog's media: keyset pages under composable filters, and one item in full.

A page costs one statement for its items and one per related set (tags, genres, taglines) for
the ids on it: four statements whatever the page size. No OFFSET: a page deep in the catalog
starts from an index seek on (sort key, id), so it costs what the first page does.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import (
    ARRAY,
    BigInteger,
    Connection,
    Row,
    Select,
    Text,
    any_,
    bindparam,
    cast,
    exists,
    func,
    literal,
    select,
    true,
    tuple_,
    union_all,
)

from catalog.cursors import decode_cursor, encode_cursor
from catalog.db.models import (
    GENRE,
    LIBRARY,
    MEDIA,
    MEDIA_GENRE,
    MEDIA_TAG,
    PROCESS_RUN,
    SERVER,
    TAG,
)
from catalog.db.models import MEDIA_TAGLINE as TAGLINE
from catalog.errors import BadCursor, BadFilter, NoSuchItem
from catalog.tags.cleaning import clean_tag

SORT_COLUMNS = {
    "name": MEDIA.c.sort_name,
    "year": MEDIA.c.year,
    "added": MEDIA.c.added_at,
    "rating": MEDIA.c.community_rating,
}
PRESENT, MISSING, ANY = "present", "missing", "any"
TAGGING = "tagging"
_decode_names = msgspec.json.Decoder(list[str]).decode
_decode_pairs = msgspec.json.Decoder(list[tuple[int, str]]).decode
MAX_PAGE = 5_000  # a page is held, and rendered, whole

PAGE_COLUMNS = (
    MEDIA.c.id, MEDIA.c.external_id, SERVER.c.name.label("server"),
    LIBRARY.c.name.label("library"), MEDIA.c.kind,
    MEDIA.c.name, MEDIA.c.year, MEDIA.c.premiere, MEDIA.c.community_rating,
    MEDIA.c.critic_rating, MEDIA.c.official_rating, MEDIA.c.subtitles, MEDIA.c.added_at,
    MEDIA.c.missing_since,
)  # fmt: skip
ITEM_FIELDS = (
    "id", "external_id", "server", "library", "kind", "name", "year", "premiere",
    "community_rating", "critic_rating", "official_rating", "subtitles", "added_at",
    "missing_since", "genres", "tags", "taglines",
)  # fmt: skip
"""The fields of a listed item, in order (the CSV columns)."""
ITEM_TIMESTAMPS = ("added_at", "missing_since")
"""The fields of a listed item that hold a moment (a datetime), for the writers to format."""


@dataclass(frozen=True)
class MediaFilter:
    """Which items to list; every condition given must hold (AND). Names match case-insensitively
    except tags, which match as given or in their clean form."""

    libraries: tuple[str, ...] = ()
    server: str | None = None
    kinds: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()  # every one of them, of any origin
    genres: tuple[str, ...] = ()  # every one of them
    year_from: int | None = None
    year_to: int | None = None
    presence: str = PRESENT  # present (default), missing (the server no longer lists them), any
    untagged: bool = False  # never tagged successfully
    search: str | None = None  # a substring of the name


@dataclass(frozen=True)
class Sort:
    """Order of a listing: by a key of SORT_COLUMNS, ties broken by id. Items without the key
    (no year, say) come last in either direction, on every database."""

    key: str = "name"
    desc: bool = False

    @property
    def token(self) -> str:
        return f"-{self.key}" if self.desc else self.key


@dataclass
class MediaPage:
    """One page of items; `next_cursor` is None on the last page."""

    items: list[dict[str, Any]]
    next_cursor: str | None


def parse_years(text: str) -> tuple[int | None, int | None]:
    """`1999`, `1940..1959`, `1940..` or `..1959` as (from, to); ValueError otherwise."""
    low, sep, high = text.strip().partition("..")
    try:
        years = (int(low) if low else None, int(high) if high else None)
    except ValueError:
        raise ValueError(f"{text!r} is not a year or a range like 1940..1959") from None
    if not sep:
        years = (years[0], years[0])
    if years == (None, None) or (None not in years and years[0] > years[1]):  # type: ignore[operator]
        raise ValueError(f"{text!r} is not a year or a range like 1940..1959")
    return years


# -- listing ------------------------------------------------------------------------------------


def list_media(
    conn: Connection,
    filters: MediaFilter | None = None,
    sort: Sort | None = None,
    after: str | None = None,
    limit: int = 50,
) -> MediaPage:
    """One page of items under `filters`, in `sort` order, after the cursor `after` (which the
    previous page gave as `next_cursor`). Raises BadCursor for a cursor of another listing."""
    filters, sort = filters or MediaFilter(), sort or Sort()
    limit = max(1, min(limit, MAX_PAGE))
    position = decode_position(after, sort) if after else None
    rows = conn.execute(page_query(filters, sort, position, limit + 1)).all()
    if not rows:
        check_names(conn, filters)
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = encode_position(sort, rows[-1]) if more else None
    return MediaPage(load_items(conn, rows), cursor)


def iter_media_pages(
    conn: Connection,
    filters: MediaFilter | None = None,
    sort: Sort | None = None,
    after: str | None = None,
    page_size: int = 2_000,
) -> Iterator[MediaPage]:
    """Every page from `after` on, one at a time: memory holds one page whatever the catalog."""
    while True:
        page = list_media(conn, filters, sort, after, page_size)
        yield page
        if page.next_cursor is None:
            return
        after = page.next_cursor


def page_query(
    filters: MediaFilter, sort: Sort, position: tuple[Any, int] | None, limit: int
) -> Select:
    """The items after `position` ((sort key, id)), at most `limit` of them.

    Items with the key come first, items without it (NULL) after them, ordered by id. That
    order is the same on every database (their NULL placement differs) and each part is an
    index range scan on (key, id): a row comparison for the first, key IS NULL for the second.
    """
    column = SORT_COLUMNS[sort.key]
    base = (
        select(*PAGE_COLUMNS, column.label("sort_key"))
        .join_from(MEDIA, LIBRARY, LIBRARY.c.id == MEDIA.c.library_id)
        .join(SERVER, SERVER.c.id == LIBRARY.c.server_id)
        .where(*filter_clauses(filters))
    )
    key, last_id = position if position else (None, None)
    # Ordered by (key, id) although the key is NULL throughout: that is the (key, id) index's
    # own order, so the database reads just `limit` entries from it instead of sorting.
    nulls = base.where(column.is_(None))
    nulls = nulls.order_by(_directed(column, sort.desc), _directed(MEDIA.c.id, sort.desc))
    nulls = nulls.limit(limit)
    if position is not None and key is None:  # already among the items without a key
        return nulls.where(MEDIA.c.id < last_id if sort.desc else MEDIA.c.id > last_id)
    keyed = base.where(column.is_not(None)) if column.nullable else base
    if position is not None:
        here = tuple_(column, MEDIA.c.id)
        there = tuple_(literal(key, column.type), literal(last_id, MEDIA.c.id.type))
        keyed = keyed.where(here < there if sort.desc else here > there)
    keyed = keyed.order_by(_directed(column, sort.desc), _directed(MEDIA.c.id, sort.desc))
    keyed = keyed.limit(limit)
    if not column.nullable:
        return keyed
    # Each part keeps its own ORDER BY and LIMIT inside a subquery (SQLite wants it so).
    first, second = keyed.subquery(), nulls.subquery()
    both = union_all(
        select(first, literal(0).label("part")), select(second, literal(1).label("part"))
    ).subquery()
    return (
        select(*(both.c[c.name] for c in (*PAGE_COLUMNS, column.label("sort_key"))))
        .order_by(
            both.c.part,
            _directed(both.c.sort_key, sort.desc),
            _directed(both.c.id, sort.desc),
        )
        .limit(limit)
    )


def _directed(column: Any, desc: bool) -> Any:
    return column.desc() if desc else column.asc()


def filter_clauses(filters: MediaFilter) -> list[Any]:
    """WHERE conditions for `filters`; tag, genre and tagging conditions are EXISTS probes on
    the link tables' indexes, so the page stays one statement without a join fan-out."""
    clauses: list[Any] = []
    if filters.presence == PRESENT:
        clauses.append(MEDIA.c.missing_since.is_(None))
    elif filters.presence == MISSING:
        clauses.append(MEDIA.c.missing_since.is_not(None))
    if filters.libraries:
        clauses.append(func.lower(LIBRARY.c.name).in_([n.lower() for n in filters.libraries]))
    if filters.server:
        clauses.append(LIBRARY.c.server_id.in_(_server_ids(filters.server)))
    if filters.kinds:
        clauses.append(func.lower(MEDIA.c.kind).in_([k.lower() for k in filters.kinds]))
    clauses.extend(_has_tag(name) for name in filters.tags)
    clauses.extend(_has_genre(name) for name in filters.genres)
    if filters.year_from is not None:
        clauses.append(MEDIA.c.year >= filters.year_from)
    if filters.year_to is not None:
        clauses.append(MEDIA.c.year <= filters.year_to)
    if filters.untagged:
        clauses.append(~_tagged())
    if filters.search:
        clauses.append(func.lower(MEDIA.c.name).contains(filters.search.lower(), autoescape=True))
    return clauses or [true()]


def _server_ids(name: str) -> Select:
    return select(SERVER.c.id).where(SERVER.c.name == name)


def _has_tag(name: str) -> Any:
    tag_ids = select(TAG.c.id).where(TAG.c.name.in_({name, clean_tag(name)}))
    return exists().where(MEDIA_TAG.c.media_id == MEDIA.c.id, MEDIA_TAG.c.tag_id.in_(tag_ids))


def _has_genre(name: str) -> Any:
    genre_ids = select(GENRE.c.id).where(func.lower(GENRE.c.name) == name.lower())
    return exists().where(
        MEDIA_GENRE.c.media_id == MEDIA.c.id, MEDIA_GENRE.c.genre_id.in_(genre_ids)
    )


def _tagged() -> Any:
    # Tagged once is tagged: a later failed retag keeps the tags and the last success.
    return exists().where(
        PROCESS_RUN.c.media_id == MEDIA.c.id,
        PROCESS_RUN.c.process == TAGGING,
        PROCESS_RUN.c.last_success_at.is_not(None),
    )


def check_names(conn: Connection, filters: MediaFilter) -> None:
    """After an empty page: a --server or --library that names nothing is the user's typo,
    not an empty result. Raises BadFilter naming it."""
    if filters.server:
        servers = list(conn.execute(select(SERVER.c.name).order_by(SERVER.c.name)).scalars())
        if filters.server not in servers:
            raise BadFilter(
                f"no server named {filters.server!r} in the catalog "
                f"(it has: {', '.join(map(repr, servers)) or 'none'})"
            )
    if filters.libraries:
        query = (
            select(LIBRARY.c.name, SERVER.c.name.label("server"))
            .join_from(LIBRARY, SERVER, SERVER.c.id == LIBRARY.c.server_id)
            .order_by(LIBRARY.c.name, SERVER.c.name)
        )
        if filters.server:
            query = query.where(SERVER.c.name == filters.server)
        libraries = conn.execute(query).all()
        known = {row.name.lower() for row in libraries}
        for name in filters.libraries:
            if name.lower() not in known:
                raise BadFilter(
                    f"no library named {name!r} in the catalog (it has: {library_names(libraries)})"
                )


def library_names(rows: Sequence[Row]) -> str:
    """Libraries as a message names them: `'Movies' on 'den', 'Movies' on 'loft'`, since two
    servers' libraries often share a name."""
    return ", ".join(f"{row.name!r} on {row.server!r}" for row in rows) or "none"


# -- related sets -------------------------------------------------------------------------------


def load_items(conn: Connection, rows: Sequence[Row]) -> list[dict[str, Any]]:
    """The page's rows as items, with their tags, genres and taglines: one statement per set
    for all the page's ids. Sets come aggregated per item (a JSON list each), so a page moves
    one row per item and set rather than one per link. Dates stay dates (encoders format them)."""
    if not rows:
        return []
    ids = [row.id for row in rows]
    tags = _names_by_item(conn, MEDIA_TAG, TAG, "tag_id", ids)
    genres = _genres_by_item(conn, ids)
    taglines = _tagline_texts(conn, ids)
    items = []
    # Unpacked by position: attribute access on 100,000 rows costs more than the query.
    for row in rows:
        (media_id, external_id, server, library, kind, name, year, premiere, community_rating,
         critic_rating, official_rating, subtitles, added_at, missing_since, _) = row  # fmt: skip
        items.append({
            "id": media_id, "external_id": external_id, "server": server, "library": library,
            "kind": kind,
            "name": name, "year": year, "premiere": premiere,
            "community_rating": community_rating, "critic_rating": critic_rating,
            "official_rating": official_rating, "subtitles": bool(subtitles),
            "added_at": added_at, "missing_since": missing_since,
            "genres": genres.get(media_id, []), "tags": tags.get(media_id, []),
            "taglines": taglines.get(media_id, []),
        })  # fmt: skip
    return items


def among(conn: Connection, column: Any, ids: list[int]) -> Any:
    """`column IN ids` as ONE bound value: an array on PostgreSQL, a JSON list read by
    json_each on SQLite. An IN list of thousands of placeholders costs more to build and
    parse on every page than the query costs to run."""
    listed = "[" + ",".join(map(str, ids)) + "]"
    if conn.dialect.name == "postgresql":  # an array literal: psycopg dumps a list slowly
        return column == any_(cast(bindparam("ids", "{" + listed[1:-1] + "}"), ARRAY(BigInteger)))
    listed = func.json_each(bindparam("ids", listed)).table_valued("value")
    return column.in_(select(listed.c.value))


def _tag_links(conn: Connection, ids: list[int]) -> Select:
    return (
        select(MEDIA_TAG.c.media_id, MEDIA_TAG.c.origin, TAG.c.name)
        .join_from(MEDIA_TAG, TAG, TAG.c.id == MEDIA_TAG.c.tag_id)
        .where(among(conn, MEDIA_TAG.c.media_id, ids))
    )


def _names_by_item(
    conn: Connection, links: Any, names: Any, key: str, ids: list[int]
) -> dict[int, list[str]]:
    """media id → the distinct names it links to, sorted: one row per item, its names
    aggregated into a JSON list by the database (a tag may come from several origins)."""
    if conn.dialect.name == "postgresql":  # as text: msgspec decodes it far faster than psycopg
        listed = cast(func.json_agg(names.c.name), Text)
    else:
        listed = func.json_group_array(names.c.name)
    query = (
        select(links.c.media_id, listed)
        .join_from(links, names, names.c.id == links.c[key])
        .where(among(conn, links.c.media_id, ids))
        .group_by(links.c.media_id)
    )
    # Deduplicated here: DISTINCT inside the aggregate would cost the database a sort per item.
    rows = conn.execute(query).all()
    return {media_id: sorted(set(_decode_names(listed))) for media_id, listed in rows}


def _json_agg_ordered(value: Any, *order_by: Any) -> Any:
    """PostgreSQL's `json_agg(value ORDER BY ...)`, as text. Its dialect is imported here, where
    the catalog is on PostgreSQL and the engine has loaded it already: on SQLite, loading it
    would cost `media list` more than its queries."""
    from sqlalchemy.dialects.postgresql import aggregate_order_by

    return cast(func.json_agg(aggregate_order_by(value, *order_by)), Text)


def _genres_by_item(conn: Connection, ids: list[int]) -> dict[int, list[str]]:
    """media id → its genres in the server's order (the first is the main genre)."""
    joined = MEDIA_GENRE.join(GENRE, GENRE.c.id == MEDIA_GENRE.c.genre_id)
    if conn.dialect.name == "postgresql":
        listed = _json_agg_ordered(GENRE.c.name, MEDIA_GENRE.c.position)
        query = select(MEDIA_GENRE.c.media_id, listed).select_from(joined)
        query = query.where(among(conn, MEDIA_GENRE.c.media_id, ids)).group_by(
            MEDIA_GENRE.c.media_id
        )
        return {media_id: _decode_names(names) for media_id, names in conn.execute(query).all()}
    # SQLite before 3.44 cannot order inside an aggregate: carry the position along.
    pairs = func.json_group_array(func.json_array(MEDIA_GENRE.c.position, GENRE.c.name))
    query = select(MEDIA_GENRE.c.media_id, pairs).select_from(joined)
    query = query.where(among(conn, MEDIA_GENRE.c.media_id, ids)).group_by(MEDIA_GENRE.c.media_id)
    return {
        media_id: [name for _, name in sorted(_decode_pairs(listed))]
        for media_id, listed in conn.execute(query).all()
    }


def _tagline_texts(conn: Connection, ids: list[int]) -> dict[int, list[str]]:
    """media id → its tagline texts, by origin and position, each text once."""
    text = TAGLINE.c.text
    if conn.dialect.name == "postgresql":
        listed = _json_agg_ordered(text, TAGLINE.c.origin, TAGLINE.c.position)
    else:  # SQLite aggregates in the order it reads the primary key (media_id, origin, position)
        listed = func.json_group_array(text)
    query = (
        select(TAGLINE.c.media_id, listed)
        .where(among(conn, TAGLINE.c.media_id, ids))
        .group_by(TAGLINE.c.media_id)
    )
    return {
        media_id: list(dict.fromkeys(_decode_names(texts)))
        for media_id, texts in conn.execute(query).all()
    }


def _taglines_by_item(conn: Connection, ids: list[int]) -> dict[int, list[tuple[str, str]]]:
    """media id → (origin, text) in order, a text repeated by another origin only once."""
    query = (
        select(TAGLINE.c.media_id, TAGLINE.c.origin, TAGLINE.c.text)
        .where(among(conn, TAGLINE.c.media_id, ids))
        .order_by(TAGLINE.c.media_id, TAGLINE.c.origin, TAGLINE.c.position)
    )
    found: defaultdict[int, list[tuple[str, str]]] = defaultdict(list)
    seen: set[tuple[int, str]] = set()
    for media_id, origin, text in conn.execute(query).all():
        if (media_id, text) not in seen:
            seen.add((media_id, text))
            found[media_id].append((origin, text))
    return found


# -- cursors ------------------------------------------------------------------------------------


def encode_position(sort: Sort, row: Row) -> str:
    """The cursor just after `row`: [sort, key, id], the key as JSON can carry it."""
    key = row.sort_key
    if isinstance(key, datetime):
        key = key.isoformat()
    return encode_cursor([sort.token, key, row.id])


def decode_position(cursor: str, sort: Sort) -> tuple[Any, int]:
    """(key, id) from a cursor of a listing in `sort` order; BadCursor otherwise."""
    try:
        token, key, last_id = decode_cursor(cursor)
    except (BadCursor, ValueError, TypeError):
        raise BadCursor("it is not a cursor `catalog media list` gave out") from None
    if token != sort.token:
        raise BadCursor(f"it comes from a listing in another order ({_describe(token)})")
    if type(last_id) is not int:
        raise BadCursor("its item id is not an integer")
    return _decode_key(sort.key, key), last_id


def _describe(token: Any) -> str:
    text = str(token)
    return f"--sort {text[1:]} --desc" if text.startswith("-") else f"--sort {text}"


def _decode_key(sort_key: str, key: Any) -> Any:
    if key is None and sort_key != "name":
        return None
    if sort_key == "name" and isinstance(key, str):
        return key
    if sort_key == "year" and type(key) is int:
        return key
    if sort_key == "rating" and type(key) in (int, float):
        return float(key)
    if sort_key == "added" and isinstance(key, str):
        try:
            added = datetime.fromisoformat(key)
        except ValueError:
            raise BadCursor("its date is not a date") from None
        if added.tzinfo is not None:
            return added
    raise BadCursor(f"its {sort_key} key {key!r} is not one")


# -- one item -----------------------------------------------------------------------------------


def get_media(conn: Connection, ref: str) -> dict[str, Any]:
    """Everything the catalog holds about one item, by id (first) or by the server's id: the
    item, its library and server, tags by origin, genres, taglines and per-item process runs.
    Raises NoSuchItem, or BadFilter for a server id found in several libraries."""
    query = (
        select(MEDIA, LIBRARY.c.name.label("library"), SERVER.c.name.label("server"))
        .join_from(MEDIA, LIBRARY, LIBRARY.c.id == MEDIA.c.library_id)
        .join(SERVER, SERVER.c.id == LIBRARY.c.server_id)
    )
    ref = ref.strip()
    rows = []
    if ref.isdigit():
        rows = conn.execute(query.where(MEDIA.c.id == int(ref))).all()
    if not rows:  # Emby's own ids are numbers too
        rows = conn.execute(query.where(MEDIA.c.external_id == ref).limit(10)).all()
    if not rows:
        raise NoSuchItem(f"no item with id {ref!r} in the catalog")
    if len(rows) > 1:
        ids = ", ".join(str(row.id) for row in rows)
        raise BadFilter(f"server id {ref!r} is in several libraries (ids {ids}): give the id")
    return _full_item(conn, rows[0])


def _full_item(conn: Connection, row: Row) -> dict[str, Any]:
    item = dict(row._mapping)  # dates and moments stay so: the writers format them
    by_origin: defaultdict[str, list[str]] = defaultdict(list)
    for _, origin, name in conn.execute(_tag_links(conn, [row.id]).order_by(TAG.c.name)):
        by_origin[origin].append(name)
    taglines = _taglines_by_item(conn, [row.id]).get(row.id, [])
    runs = conn.execute(
        select(PROCESS_RUN).where(PROCESS_RUN.c.media_id == row.id).order_by(PROCESS_RUN.c.process)
    )
    item.update(
        tags=sorted({name for names in by_origin.values() for name in names}),
        tags_by_origin=dict(sorted(by_origin.items())),
        genres=_genres_by_item(conn, [row.id]).get(row.id, []),
        taglines=[text for _, text in taglines],
        taglines_by_origin=[{"origin": origin, "text": text} for origin, text in taglines],
        runs=[dict(run._mapping) for run in runs],
    )
    return item
