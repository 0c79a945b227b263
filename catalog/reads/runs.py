"""Reads of the run history: the last runs (`catalog status`), each job's newest run
(`catalog schedule`), and when a job last succeeded (metrics)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, select

from catalog.db.models import RUN
from catalog.runs import SUCCEEDED


def recent_runs(
    conn: Connection, limit: int = 20, commands: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """The newest runs first, optionally only those of some commands."""
    query = select(RUN).order_by(RUN.c.id.desc()).limit(limit)
    if commands:
        query = query.where(RUN.c.command.in_(commands))
    return [dict(row._mapping) for row in conn.execute(query)]


def last_success(conn: Connection, command: str, server: str | None) -> datetime | None:
    """When the newest run of `command` on `server` that did its job finished."""
    query = select(func.max(RUN.c.finished_at)).where(
        RUN.c.command == command, RUN.c.status.in_(SUCCEEDED),
        RUN.c.server.is_(None) if server is None else RUN.c.server == server,
    )  # fmt: skip
    return _aware(conn.execute(query).scalar())


def last_runs_by_command(conn: Connection) -> dict[str, dict[str, Any]]:
    """The newest run of each command (whatever the server)."""
    newest = select(func.max(RUN.c.id)).group_by(RUN.c.command).scalar_subquery()
    rows = conn.execute(select(RUN).where(RUN.c.id.in_(newest)))
    return {row.command: dict(row._mapping) for row in rows}


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands datetimes back naive; they were written in UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value
