"""Parsing of real Jellyfin item JSON: omitted nulls, date formats, ratings, bad items."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import msgspec
import pytest

from catalog.items import InvalidItem, MediaItem
from catalog.sources.jellyfin import parse_item, raw_item, raw_items

# Trimmed from a real Jellyfin 10.10 /Items answer: null fields are omitted, not null.
REAL_MOVIE = {
    "Name": "Blade Runner",
    "ServerId": "f4b2f5ad54a44e9c8f1b2a3c4d5e6f70",
    "Id": "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
    "DateCreated": "2024-10-14T19:32:42.551728Z",
    "SortName": "blade runner",
    "PremiereDate": "1982-06-25T00:00:00.0000000Z",
    "OfficialRating": "R",
    "Overview": "A blade runner must pursue and terminate four replicants.",
    "Taglines": ["Man has made his match... now it's his problem."],
    "Genres": ["Science Fiction", "Drama"],
    "CommunityRating": 7.9,
    "RunTimeTicks": 70_180_000_000,
    "ProductionYear": 1982,
    "ProviderIds": {"Tmdb": "78", "Imdb": "tt0083658"},
    "IsFolder": False,
    "Type": "Movie",
    "Tags": ["cyberpunk", "dystopia"],
    "HasSubtitles": True,
}


def parse(item: dict) -> MediaItem | InvalidItem:
    return parse_item(json.dumps(item).encode())


def test_real_movie_is_parsed_with_every_field():
    item = parse(REAL_MOVIE)
    assert isinstance(item, MediaItem)
    assert item.external_id == "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
    assert (item.kind, item.name, item.sort_name, item.year) == (
        "movie", "Blade Runner", "blade runner", 1982,
    )  # fmt: skip
    assert item.premiere == date(1982, 6, 25)
    assert item.added_at == datetime(2024, 10, 14, 19, 32, 42, 551728, tzinfo=UTC)
    assert item.community_rating == 7.9
    assert item.official_rating == "R"
    assert item.subtitles is True
    assert item.runtime_s == 7018
    assert item.tags == ("cyberpunk", "dystopia")
    assert item.genres == ("Science Fiction", "Drama")
    assert item.taglines == ("Man has made his match... now it's his problem.",)
    assert item.provider_ids == {"Imdb": "tt0083658", "Tmdb": "78"}


def test_omitted_fields_mean_unknown():
    item = parse({"Id": "ab" * 16, "Name": "Bare", "Type": "Movie"})
    assert isinstance(item, MediaItem)
    assert item.overview is None and item.premiere is None and item.community_rating is None
    assert item.subtitles is False and item.tags == () and item.sort_name == "Bare"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2010-07-08T00:00:00.0000000Z", date(2010, 7, 8)),
        ("2024-10-14T19:32:42.551728Z", date(2024, 10, 14)),
        ("2024-10-14T19:32:42.5Z", date(2024, 10, 14)),
        ("2024-10-14T19:32:42Z", date(2024, 10, 14)),
        ("0001-01-01T00:00:00.0000000Z", None),
    ],
    ids=["seven-digits", "six-digits", "one-digit", "no-fraction", "unknown-0001"],
)
def test_premiere_date_formats(text, expected):
    item = parse({**REAL_MOVIE, "PremiereDate": text})
    assert isinstance(item, MediaItem)
    assert item.premiere == expected


def test_whole_number_rating_is_a_float():
    item = parse({**REAL_MOVIE, "CommunityRating": 7, "CriticRating": 93})
    assert isinstance(item, MediaItem)
    assert item.community_rating == 7.0 and item.critic_rating == 93.0


def test_episode_keeps_series_season_and_number():
    episode = {
        "Id": "cd" * 16, "Name": "Pilot", "Type": "Episode", "SeriesId": "ef" * 16,
        "SeasonId": "12" * 16, "ParentIndexNumber": 1, "IndexNumber": 3,
    }  # fmt: skip
    item = parse(episode)
    assert isinstance(item, MediaItem)
    assert (item.parent_external_id, item.season, item.episode) == ("ef" * 16, 1, 3)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"Id": None}, "no Id"),
        ({"Name": None}, "no Name"),
        ({"Name": "   "}, "no Name"),
        ({"Type": "Banana"}, "unknown Type 'Banana'"),
        ({"CommunityRating": 42.5}, "CommunityRating 42.5 is outside 0-10"),
        ({"CriticRating": 140}, "CriticRating 140 is outside 0-100"),
        ({"PremiereDate": "not-a-date"}, "PremiereDate 'not-a-date' is not a date"),
        ({"CommunityRating": "high"}, "invalid field"),
    ],
    ids=["no-id", "no-name", "blank-name", "type", "rating", "critic", "date", "wrong-type"],
)
def test_invalid_items_carry_id_and_reason(change, reason):
    raw = {k: v for k, v in {**REAL_MOVIE, **change}.items() if v is not None}
    item = parse(raw)
    assert isinstance(item, InvalidItem)
    assert reason in item.reason
    assert item.external_id == raw.get("Id")


def test_content_hash_is_a_digest_of_the_item_as_served():
    body = json.dumps(REAL_MOVIE).encode()
    first, again = parse_item(body), parse_item(body)
    changed = parse({**REAL_MOVIE, "Tags": ["cyberpunk"]})
    assert first.content_hash == again.content_hash == raw_item(body).digest
    assert first.content_hash != changed.content_hash


def test_raw_item_reads_only_the_id():
    assert raw_item(json.dumps(REAL_MOVIE).encode()).external_id == REAL_MOVIE["Id"]
    assert raw_item(b'{"Name": "no id"}').external_id is None
    assert raw_item(b'{"Id": 42}').external_id is None
    assert raw_item(b"[1, 2]").external_id is None
    assert isinstance(parse_item(b"[1, 2]"), InvalidItem)


@pytest.mark.parametrize(
    "odd", [b'{"Name": "no id"}', b'{"Id": 42}', b'{"Id": "a\\u0000b"}', b"[1, 2]", b"null"]
)
def test_a_page_is_read_as_its_items_are_one_by_one(odd):
    """The ids of a page are read in one pass; a page with an item that is not an object
    falls back to one item at a time, and either way each item reads as it would alone."""
    items = [json.dumps(REAL_MOVIE).encode(), odd, json.dumps({**REAL_MOVIE, "Id": "b2"}).encode()]
    body = b'{"Items": [' + b", ".join(items) + b'], "TotalRecordCount": 3}'
    raws = msgspec.json.decode(body, type=dict[str, list[msgspec.Raw] | int])["Items"]
    assert raw_items(body, raws) == [raw_item(item) for item in items]
    assert [r.external_id for r in raw_items(body, raws)][::2] == [REAL_MOVIE["Id"], "b2"]


def test_repeated_tags_and_blank_ones_are_dropped():
    item = parse({**REAL_MOVIE, "Tags": ["noir", " noir ", "", "Noir"]})
    assert item.tags == ("noir", "Noir")
