"""Run records: every command run is a row in `run`, kept for a bounded number of runs and days."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, or_, select, update

from catalog.db.models import Run

RUN = Run.__table__
RUNNING, OK, PARTIAL, FAILED, INTERRUPTED, ABANDONED = (
    "running", "ok", "partial", "failed", "interrupted", "abandoned",
)  # fmt: skip
# A partial run still did its job (items failed are counted apart): it counts as a success for
# "when did this job last succeed" (freshness metrics, healthchecks).
SUCCEEDED = (OK, PARTIAL)
# The default run history: the newest KEEP_RUNS runs of each command, none older than KEEP_RUN_DAYS.
KEEP_RUNS = 500
KEEP_RUN_DAYS = 90


@dataclass(frozen=True)
class Retention:
    """How much run history to keep: the newest `keep` runs, none older than `days` days."""

    keep: int = KEEP_RUNS
    days: int | None = KEEP_RUN_DAYS


def utcnow() -> datetime:
    return datetime.now(UTC)


def start_run(engine: Engine, command: str, server: str | None) -> int:
    """Record a run as started. Call with the job's lock held: any earlier run of the same job
    still marked running was killed before it could say so, and is marked abandoned."""
    with engine.begin() as conn:
        conn.execute(
            update(RUN)
            .where(RUN.c.command == command, RUN.c.server == server, RUN.c.status == RUNNING)
            .values(status=ABANDONED, error="the process ended without recording an outcome")
        )
        row = {"command": command, "server": server, "started_at": utcnow(), "status": RUNNING}
        return conn.execute(insert(RUN).returning(RUN.c.id), row).scalar_one()


def finish_run(
    engine: Engine,
    run_id: int,
    status: str,
    counts: dict[str, Any] | None,
    error: str | None = None,
    keep: int | Retention = KEEP_RUNS,
) -> None:
    """Record how a run ended and apply the retention (`keep`: a number of runs, or both)."""
    retention = keep if isinstance(keep, Retention) else Retention(keep, None)
    with engine.begin() as conn:
        values = {"status": status, "counts": counts, "error": error, "finished_at": utcnow()}
        conn.execute(update(RUN).where(RUN.c.id == run_id).values(values))
        prune_runs(conn, retention, spare=run_id)


def prune_runs(conn: Connection, retention: Retention, spare: int | None = None) -> None:
    """Delete runs beyond the newest `retention.keep`, and those started more than
    `retention.days` days ago (never the run `spare`, the one being recorded)."""
    # With fewer than `keep` runs the subquery is NULL and nothing is deleted.
    oldest_kept = select(RUN.c.id).order_by(RUN.c.id.desc()).offset(retention.keep - 1).limit(1)
    too_many = RUN.c.id < oldest_kept.scalar_subquery()
    if not retention.days:
        conn.execute(delete(RUN).where(too_many))
        return
    too_old = RUN.c.started_at < utcnow() - timedelta(days=retention.days)
    conn.execute(delete(RUN).where(or_(too_many, too_old), RUN.c.id != (spare or -1)))


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
