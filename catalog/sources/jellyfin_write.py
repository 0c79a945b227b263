"""Writing tags back to Jellyfin and Emby, from their real behaviour (see DESIGN.md).

Jellyfin's `POST /Items/{id}` REPLACES the item with the body: a field left out becomes null, a
missing `LockData` unlocks the item, and 10.11 throws on a body without Genres, Tags or
ProviderIds. So the writer GETs the whole item, changes `Tags` only, adds "Tags" to
`LockedFields` (a metadata refresh would otherwise wipe them; `LockData` would lock every
field) and POSTs the whole body back. Series are left alone: their tags spread to every episode
whose LockedFields lack Tags, replacing that episode's own. Emby has `POST /Items/{id}/Tags/Add`
and `/Tags/Delete`, which touch tags only.
"""

from __future__ import annotations

from typing import Any

import msgspec

from catalog.errors import SourceResponseError
from catalog.http import HttpClient
from catalog.sources import PushItem, ServerTags

TAGS_LOCK = "Tags"
# What a 10.11 update refuses to go without (an item GET may leave an empty one out).
REQUIRED_FIELDS: dict[str, Any] = {"Genres": [], "Tags": [], "ProviderIds": {}}


def _decode(http: HttpClient, body: bytes, what: str) -> Any:
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        message = f"{http.peer.name} sent an unexpected answer to {what}: {exc}"
        raise SourceResponseError(message) from exc


def _names(values: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in values or () if isinstance(v, str) and v.strip())


class JellyfinTagWriter:
    """Jellyfin: read the whole item, send it back with new Tags and Tags locked."""

    kinds_left_alone = frozenset({"series"})

    def __init__(self, http: HttpClient) -> None:
        self.http = http

    async def read(self, item: PushItem) -> ServerTags:
        path = f"/Items/{item.external_id}"
        body = _decode(self.http, await self.http.get(path), f"GET {path}")
        if not isinstance(body, dict):
            raise SourceResponseError(f"{self.http.peer.name} sent no item for GET {path}")
        return ServerTags(_names(body.get("Tags")), body)

    async def write(self, item: PushItem, current: ServerTags, goal: tuple[str, ...]) -> None:
        body = {**REQUIRED_FIELDS, **current.state, "Tags": list(goal)}
        locked = list(body.get("LockedFields") or [])
        body["LockedFields"] = locked if TAGS_LOCK in locked else [*locked, TAGS_LOCK]
        await self.http.request("POST", f"/Items/{item.external_id}", json=body)


class EmbyTagWriter:
    """Emby: add and delete tags by name, leaving the rest of the item alone."""

    kinds_left_alone: frozenset[str] = frozenset()

    def __init__(self, http: HttpClient) -> None:
        self.http = http

    async def read(self, item: PushItem) -> ServerTags:
        params = {"Ids": item.external_id, "Fields": "Tags", "EnableImages": "false"}
        body = _decode(self.http, await self.http.get("/Items", params), "GET /Items?Ids=")
        found = body.get("Items") if isinstance(body, dict) else None
        if not found or not isinstance(found[0], dict):
            raise SourceResponseError(
                f"{self.http.peer.name} does not list item {item.external_id} any more"
            )
        raw = found[0]
        # Emby sends TagItems [{"Name", "Id"}]; some versions also (or only) Tags.
        tag_items = [t.get("Name") for t in raw.get("TagItems") or () if isinstance(t, dict)]
        return ServerTags(_names(tag_items) or _names(raw.get("Tags")))

    async def write(self, item: PushItem, current: ServerTags, goal: tuple[str, ...]) -> None:
        wanted = {t.casefold() for t in goal}
        held = {t.casefold() for t in current.tags}
        added = [t for t in goal if t.casefold() not in held]
        removed = [t for t in current.tags if t.casefold() not in wanted]
        for action, names in (("Delete", removed), ("Add", added)):
            if names:
                payload = {"Tags": [{"Name": t} for t in names]}
                await self.http.request(
                    "POST", f"/Items/{item.external_id}/Tags/{action}", json=payload
                )
