"""The request and answer shapes of each tagging service.

tunabrain: `POST /tags` with `{"media": {...}, "existing_tags": [...]}`, answering
`{"tags": [...], "taglines"?: [...]}` or a bare JSON array of tag strings.
openai: `POST /v1/chat/completions` asking for a JSON-schema answer of the same
`{"tags", "taglines"}` shape in the message content; works with local model servers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Protocol

import msgspec

from catalog.errors import MalformedAnswer
from catalog.tagging import TagAnswer, TagRequest

MAX_TAGS = 50
MAX_TAGLINES = 10
MAX_TAG_CHARS = 200  # the catalog's tag.name column


class Backend(Protocol):
    """One tagging service's wire format."""

    path: str

    def payload(self, request: TagRequest, existing_tags: list[str]) -> dict[str, Any]: ...

    def parse(self, body: bytes) -> TagAnswer: ...


class TagsObject(msgspec.Struct):
    tags: list[str]
    taglines: list[str] = []


_ANSWER = msgspec.json.Decoder(TagsObject | list[str])


def media_fields(request: TagRequest) -> dict[str, Any]:
    """The item as the tunabrain contract describes it."""
    return {
        "id": str(request.media_id),
        "title": request.title,
        "description": request.description,
        "genres": list(request.genres),
        "rating": request.rating,
        "critical_rating": request.critical_rating,
        "audience_rating": request.audience_rating,
        "duration_minutes": request.duration_minutes,
        "current_tags": list(request.current_tags),
    }


class Tunabrain:
    path = "/tags"

    def payload(self, request: TagRequest, existing_tags: list[str]) -> dict[str, Any]:
        return {"media": media_fields(request), "existing_tags": existing_tags}

    def parse(self, body: bytes) -> TagAnswer:
        return decode_answer(body, "the answer")


class _Message(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    message: _Message


class _Completion(msgspec.Struct):
    choices: list[_Choice]


_COMPLETION = msgspec.json.Decoder(_Completion)

SYSTEM_PROMPT = (
    "You tag films and TV episodes for a media catalog. Given an item as JSON, answer with "
    'JSON only: {"tags": [...], "taglines": [...]}. Tags are short lower-case descriptors '
    "(mood, themes, setting, style); prefer ones from existing_tags when they fit. At most 12 "
    "tags and 2 taglines."
)
ANSWER_SCHEMA = {
    "name": "tags",
    "strict": True,
    "schema": {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string"}},
            "taglines": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["tags", "taglines"],
        "additionalProperties": False,
    },
}


class OpenAICompatible:
    path = "/v1/chat/completions"

    def __init__(self, model: str) -> None:
        self.model = model

    def payload(self, request: TagRequest, existing_tags: list[str]) -> dict[str, Any]:
        item = {"media": media_fields(request), "existing_tags": existing_tags}
        return {
            "model": self.model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": json.dumps(item, ensure_ascii=False)},
            ],
            "response_format": {"type": "json_schema", "json_schema": ANSWER_SCHEMA},
        }

    def parse(self, body: bytes) -> TagAnswer:
        try:
            completion = _COMPLETION.decode(body)
        except msgspec.DecodeError as exc:
            raise MalformedAnswer(f"not a chat completion: {exc}") from None
        if not completion.choices or not completion.choices[0].message.content:
            raise MalformedAnswer("the chat completion has no message content")
        content = completion.choices[0].message.content
        return decode_answer(_strip_fences(content).encode(), "the message content")


def decode_answer(body: bytes, what: str) -> TagAnswer:
    """A validated, cleaned answer; MalformedAnswer naming what is wrong otherwise."""
    try:
        answer = _ANSWER.decode(body)
    except msgspec.DecodeError as exc:
        raise MalformedAnswer(f"{what} is not tags: {exc}") from None
    if isinstance(answer, list):
        return TagAnswer(_clean(answer, MAX_TAGS, MAX_TAG_CHARS))
    return TagAnswer(
        _clean(answer.tags, MAX_TAGS, MAX_TAG_CHARS), _clean(answer.taglines, MAX_TAGLINES)
    )


def _clean(values: Iterable[str], most: int, longest: int | None = None) -> tuple[str, ...]:
    """Stripped, non-blank, first occurrence only; a name too long for the catalog is dropped
    (it is a sentence, not a tag)."""
    kept = (v.strip() for v in values)
    kept = (v for v in kept if v and (longest is None or len(v) <= longest))
    return tuple(dict.fromkeys(kept))[:most]


def _strip_fences(content: str) -> str:
    # Local models often wrap JSON in a ```json fence despite the response format.
    text = content.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        text = text.rsplit("```", 1)[0]
    return text


def backend_for(kind: str, model: str) -> Backend:
    return OpenAICompatible(model) if kind == "openai" else Tunabrain()
