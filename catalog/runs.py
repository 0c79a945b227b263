"""Run records: every command run is a row in `run`, kept for a bounded number of runs and days.

The statuses and the retention are read by every command, `catalog --help` included (the
exit-code table names them): SQLAlchemy is imported only by the functions that write runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement, Connection, Engine
RUNNING, OK, PARTIAL, FAILED, INTERRUPTED, ABANDONED = (
    "running", "ok", "partial", "failed", "interrupted", "abandoned",
)  # fmt: skip
# What a run's `command` can be: the jobs, and `tags` for a vocabulary change by hand (`catalog
# status --job` takes one of these).
COMMANDS = ("sync", "retag", "normalize", "tags", "push")
# job -> the CLI command that runs it (the run table's `command` is the job name): what the
# schedule runs, and what the settings accept a schedule for.
JOBS: dict[str, tuple[str, ...]] = {
    "sync": ("sync",),
    "retag": ("retag",),
    "normalize": ("tags", "normalize"),
    "push": ("push",),
}
LOCKED = "locked"  # a report's status only: a run that found its lock held records nothing
DRY_RUN = "dry_run"  # a report's status only: a dry run changes and records nothing
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


def start_run(
    engine: Engine, command: str, server: str | None, alive: ColumnElement[bool] | None = None
) -> int:
    """Record a run as started. Call with the job's lock held: any earlier run of the same job
    still marked running was killed before it could say so, and is marked abandoned. A job
    whose runs may overlap (retag workers on PostgreSQL) says which runs are `alive`."""
    from sqlalchemy import insert, not_, update

    if command not in COMMANDS:  # `catalog status --job` offers only these
        raise ValueError(f"unknown command {command!r} (known: {', '.join(COMMANDS)})")
    RUN = _run_table()
    with engine.begin() as conn:
        running = [RUN.c.command == command, RUN.c.server == server, RUN.c.status == RUNNING]
        if alive is not None:
            running.append(not_(alive))
        conn.execute(
            update(RUN)
            .where(*running)
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
    from sqlalchemy import update

    retention = keep if isinstance(keep, Retention) else Retention(keep, None)
    RUN = _run_table()
    with engine.begin() as conn:
        values = {"status": status, "counts": counts, "error": error, "finished_at": utcnow()}
        conn.execute(update(RUN).where(RUN.c.id == run_id).values(values))
        prune_runs(conn, retention, spare=run_id)


def prune_runs(conn: Connection, retention: Retention, spare: int | None = None) -> None:
    """Delete runs beyond the newest `retention.keep`, and those started more than
    `retention.days` days ago (never the run `spare`, the one being recorded)."""
    from sqlalchemy import delete, or_, select

    RUN = _run_table()
    # With fewer than `keep` runs the subquery is NULL and nothing is deleted.
    oldest_kept = select(RUN.c.id).order_by(RUN.c.id.desc()).offset(retention.keep - 1).limit(1)
    too_many = RUN.c.id < oldest_kept.scalar_subquery()
    if not retention.days:
        conn.execute(delete(RUN).where(too_many))
        return
    too_old = RUN.c.started_at < utcnow() - timedelta(days=retention.days)
    conn.execute(delete(RUN).where(or_(too_many, too_old), RUN.c.id != (spare or -1)))


def _run_table() -> Any:
    from catalog.db.models import RUN

    return RUN
