"""How the catalog writes moments and spans of time: one form for machines (every JSON, NDJSON
and CSV output, and JSON log lines), short forms for people (tables, progress lines)."""

from __future__ import annotations

from datetime import UTC, datetime

ISO_UTC = "%Y-%m-%dT%H:%M:%SZ"
"""ISO 8601 in UTC with a Z, whole seconds: `2026-12-02T05:31:07Z`."""
TABLE_MINUTE = "%Y-%m-%d %H:%M"
"""A moment in a table, in local time: `2026-12-02 05:31`."""


def iso_utc(moment: datetime, *, milliseconds: bool = False) -> str:
    """`moment` for machines: ISO 8601 in UTC with a Z, whole seconds (log lines, which may
    come many a second, keep milliseconds: `2026-12-02T05:31:07.250Z`)."""
    utc = moment.astimezone(UTC)
    if milliseconds:
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    return utc.strftime(ISO_UTC)


def local_minute(moment: datetime, zone: bool = False) -> str:
    """`moment` for a table: local time to the minute (`zone`: with the zone's abbreviation)."""
    local = moment.astimezone()
    return local.strftime(f"{TABLE_MINUTE} %Z" if zone else TABLE_MINUTE)


def short_duration(seconds: float) -> str:
    """A span for people, at most six characters: `0.4 s`, `42 s`, `3m05s`, `2h07m`, `3d04h`."""
    if seconds < 9.95:
        return f"{max(seconds, 0.0):.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"
