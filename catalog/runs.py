"""Run records: every command run is a row in `run`, kept for a bounded number of runs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update

from catalog.db.models import Run

RUN = Run.__table__
RUNNING, OK, PARTIAL, FAILED, INTERRUPTED, ABANDONED = (
    "running", "ok", "partial", "failed", "interrupted", "abandoned",
)  # fmt: skip


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
    keep: int = 500,
) -> None:
    """Record how a run ended and drop all but the newest `keep` runs."""
    with engine.begin() as conn:
        values = {"status": status, "counts": counts, "error": error, "finished_at": utcnow()}
        conn.execute(update(RUN).where(RUN.c.id == run_id).values(values))
        # With fewer than `keep` runs the subquery is NULL and nothing is deleted.
        oldest_kept = select(RUN.c.id).order_by(RUN.c.id.desc()).offset(keep - 1).limit(1)
        conn.execute(delete(RUN).where(RUN.c.id < oldest_kept.scalar_subquery()))
