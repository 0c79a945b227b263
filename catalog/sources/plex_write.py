"""Writing labels back to Plex: `PUT /library/sections/{key}/all?type=N&id=K&label[0].tag.tag=A`
`&label[1].tag.tag=B&label.locked=1` sets an item's whole label set (so the writer reads the
current labels first, and the goal it is given already merges them) and locks it against the
agents; `label[].tag.tag-=A,B` removes, for the one set `label[i]` cannot say: none at all."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import msgspec

from catalog.errors import SourceResponseError
from catalog.http import HttpClient
from catalog.sources import PushItem, ServerTags
from catalog.sources.plex import EPISODE, MOVIE, SHOW

PLEX_TYPES = {"movie": MOVIE, "series": SHOW, "episode": EPISODE}


class _Label(msgspec.Struct):
    tag: str | None = None


class _Item(msgspec.Struct):
    labels: list[_Label] | None = msgspec.field(default=None, name="Label")


class _Container(msgspec.Struct):
    metadata: list[_Item] | None = msgspec.field(default=None, name="Metadata")


class _Envelope(msgspec.Struct):
    container: _Container = msgspec.field(name="MediaContainer")


class PlexTagWriter:
    """Plex labels of movies, shows and episodes."""

    kinds_left_alone: frozenset[str] = frozenset()

    def __init__(self, http: HttpClient) -> None:
        self.http = http

    async def read(self, item: PushItem) -> ServerTags:
        path = f"/library/metadata/{item.external_id}"
        try:
            envelope = msgspec.json.decode(await self.http.get(path), type=_Envelope)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            message = f"{self.http.peer.name} sent an unexpected answer to GET {path}: {exc}"
            raise SourceResponseError(message) from exc
        found = envelope.container.metadata or []
        labels = found[0].labels or [] if found else []
        return ServerTags(tuple(label.tag for label in labels if label.tag))

    async def write(self, item: PushItem, current: ServerTags, goal: tuple[str, ...]) -> None:
        params: dict[str, Any] = {"type": PLEX_TYPES.get(item.kind, MOVIE), "id": item.external_id}
        if goal:
            params.update({f"label[{n}].tag.tag": name for n, name in enumerate(goal)})
        else:
            params["label[].tag.tag-"] = ",".join(quote(name, safe="") for name in current.tags)
        params["label.locked"] = 1
        await self.http.request(
            "PUT", f"/library/sections/{item.library_external_id}/all", params=params
        )
