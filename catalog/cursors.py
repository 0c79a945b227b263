"""Opaque keyset cursors: a small JSON value in URL-safe base64, copied by users, never edited."""

from __future__ import annotations

import base64
import json
from typing import Any

from catalog.errors import BadCursor


def encode_cursor(payload: Any) -> str:
    """`payload` (JSON-serialisable) as an opaque token without padding."""
    raw = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> Any:
    """The payload `encode_cursor` packed into `cursor`; BadCursor when it is not one."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return json.loads(raw)
    except (ValueError, TypeError) as exc:  # binascii.Error and JSONDecodeError are ValueErrors
        raise BadCursor("it is not a cursor this listing gave out") from exc
