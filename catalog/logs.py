"""Log output for people and for machines, with secrets redacted from every line.

`setup_logging` (in `catalog.cli.common`) installs one handler: rich lines on a terminal, plain
lines otherwise, or one JSON object per line with `--log-format json`. Every formatter here
passes its output through the process-wide `REDACTOR`, which knows the secret shapes
(`Token="..."`, `api_key=`, passwords in URLs) and the secret values the settings named
(`add_secrets`, called by `load_settings`). It is process-wide because logging itself is.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

from catalog.timefmt import iso_utc

MASK = "***"
# A secret value shorter than this is not redacted on its own: masking every "1" or "ab" in
# the logs would hide more than it protects (the shapes below still catch it in context).
MIN_SECRET_LENGTH = 6

# (pattern, replacement): the secret is the last group, everything before it is kept.
_SHAPES = [
    (re.compile(r'(?i)(token=\\?")[^"\\]+'), rf"\g<1>{MASK}"),  # MediaBrowser Token="..."
    (re.compile(r"(?i)(x-(?:emby|plex)-token[\"']?\s*[:=]\s*[\"']?)[^\s\"',;]+"), rf"\g<1>{MASK}"),
    (re.compile(r"(?i)((?:api_key|apikey|access_token|token|password)=)[^&\s\"',;]+"),
     rf"\g<1>{MASK}"),
    (re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?(?:bearer|basic)\s+)[^\s\"',;]+"),
     rf"\g<1>{MASK}"),
    (re.compile(r"(://[^/\s:@]+:)[^@/\s]+(@)"), rf"\g<1>{MASK}\g<2>"),  # user:password@host
]  # fmt: skip

_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class Redactor:
    """Masks secret shapes and known secret values in text."""

    def __init__(self) -> None:
        self._values: set[str] = set()

    def add(self, *values: str | None) -> None:
        self._values.update(v for v in values if v and len(v) >= MIN_SECRET_LENGTH)

    def __call__(self, text: str) -> str:
        for pattern, replacement in _SHAPES:
            text = pattern.sub(replacement, text)
        # Longest first, so a secret that contains another is masked whole.
        for value in sorted(self._values, key=len, reverse=True):
            text = text.replace(value, MASK)
        return text


REDACTOR = Redactor()


def add_secrets(*values: str | None) -> None:
    """Never let these values (tokens, passwords) appear in a log line."""
    REDACTOR.add(*values)


class RedactingFormatter(logging.Formatter):
    """A plain formatter whose output has its secrets masked."""

    def format(self, record: logging.LogRecord) -> str:
        return REDACTOR(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, any `extra=` fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": iso_utc(datetime.fromtimestamp(record.created, UTC), milliseconds=True),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(_redacted(entry), default=str, ensure_ascii=False)


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return REDACTOR(value)
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v) for v in value]
    return value
