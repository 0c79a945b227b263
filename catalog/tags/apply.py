"""Applying a plan in ONE transaction with a fixed number of set-based statements, as one
recorded run of a vocabulary change."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import SQLAlchemyError

from catalog.db.models import TAG
from catalog.errors import DatabaseError
from catalog.jobs import Items, JobReport, recorded_run
from catalog.runs import FAILED, OK, Retention
from catalog.tags.guard import hold_write_lock, vocabulary_lock
from catalog.tags.plan import Change, Plan
from catalog.tags.rules import DROP, MERGE, RENAME


@dataclass
class ApplyCounts:
    """What applying a plan did."""

    renamed: int = 0
    merged: int = 0
    dropped: int = 0
    links_moved: int = 0  # links now on a merge target (a duplicate on the same item excluded)
    links_removed: int = 0  # links gone: those of dropped tags, and merge duplicates


# The plan as a temporary table, then one statement per step whatever the number of tags.
# Order matters: aliases are re-pointed before tags are deleted (tag_alias cascades on delete),
# and new aliases are recorded after, so the cascade checks scan only the aliases that were
# already there (tag_alias.tag_id has no index).
_CREATE_PLAN = (
    "CREATE TEMP TABLE tag_plan (old_name TEXT PRIMARY KEY, new_name TEXT, "
    "action TEXT NOT NULL, old_id INTEGER, new_id INTEGER)"
)
_APPLY_STEPS = {
    "resolve_ids": (
        "UPDATE tag_plan SET old_id = (SELECT id FROM tag WHERE tag.name = tag_plan.old_name), "
        "new_id = (SELECT id FROM tag WHERE tag.name = tag_plan.new_name)"
    ),
    # A rename keeps its id; merges into a new name go to the id of the tag renamed to it.
    "resolve_new_targets": (
        "UPDATE tag_plan SET new_id = r.old_id FROM tag_plan AS r "
        "WHERE r.action = 'rename' AND r.new_name = tag_plan.new_name"
    ),
    "move_links": (
        "INSERT INTO media_tag (media_id, tag_id, origin) "
        "SELECT l.media_id, p.new_id, l.origin FROM tag_plan AS p "
        "JOIN media_tag AS l ON l.tag_id = p.old_id WHERE p.action = 'merge' "
        "ON CONFLICT DO NOTHING"
    ),
    "delete_links": (
        "DELETE FROM media_tag WHERE tag_id IN "
        "(SELECT old_id FROM tag_plan WHERE action <> 'rename')"
    ),
    "repoint_aliases": (
        "UPDATE tag_alias SET tag_id = p.new_id FROM tag_plan AS p "
        "WHERE tag_alias.tag_id = p.old_id AND p.action <> 'rename'"
    ),
    "delete_tags": (
        "DELETE FROM tag WHERE id IN (SELECT old_id FROM tag_plan WHERE action <> 'rename')"
    ),
    "record_aliases": (
        "INSERT INTO tag_alias (raw_name, tag_id) "
        "SELECT old_name, new_id FROM tag_plan WHERE old_id IS NOT NULL "
        "ON CONFLICT (raw_name) DO UPDATE SET tag_id = excluded.tag_id"
    ),
    # A name that is now a tag's must not stay aliased elsewhere (e.g. dropped long ago).
    "alias_targets": (
        "UPDATE tag_alias SET tag_id = p.new_id FROM tag_plan AS p "
        "WHERE tag_alias.raw_name = p.new_name"
    ),
    "rename_tags": (
        "UPDATE tag SET name = p.new_name FROM tag_plan AS p "
        "WHERE tag.id = p.old_id AND p.action = 'rename'"
    ),
}


def apply_plan(conn: Connection, plan: Plan) -> ApplyCounts:
    """Apply `plan` in the caller's transaction with a fixed number of statements. The plan
    must come from the tag list read in this same transaction (see run_vocabulary_change)."""
    counts = ApplyCounts(plan.count(RENAME), plan.count(MERGE), plan.count(DROP))
    if not plan.changes:
        return counts
    hold_write_lock(conn)
    conn.exec_driver_sql(_CREATE_PLAN)
    _fill_plan(conn, plan.changes)
    conn.exec_driver_sql(_APPLY_STEPS["resolve_ids"])
    conn.exec_driver_sql(_APPLY_STEPS["resolve_new_targets"])
    if conn.dialect.name == "postgresql":
        # Without statistics PostgreSQL guesses the temp table's size and may scan all of
        # media_tag per plan row; with them it joins through (tag_id, media_id).
        conn.exec_driver_sql("ANALYZE tag_plan")
    counts.links_moved = conn.exec_driver_sql(_APPLY_STEPS["move_links"]).rowcount
    deleted = conn.exec_driver_sql(_APPLY_STEPS["delete_links"]).rowcount
    counts.links_removed = deleted - counts.links_moved
    for step in ("repoint_aliases", "delete_tags", "record_aliases", "alias_targets"):
        conn.exec_driver_sql(_APPLY_STEPS[step])
    conn.exec_driver_sql(_APPLY_STEPS["rename_tags"])
    conn.exec_driver_sql("DROP TABLE tag_plan")
    return counts


def _fill_plan(conn: Connection, changes: list[Change]) -> None:
    """One statement: unnest()ed arrays on PostgreSQL, executemany in-process on SQLite."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            "INSERT INTO tag_plan (old_name, new_name, action) "
            "SELECT * FROM unnest(%(old)s::text[], %(new)s::text[], %(action)s::text[])",
            {
                "old": [c.old for c in changes],
                "new": [c.new for c in changes],
                "action": [c.action for c in changes],
            },
        )
    else:
        conn.exec_driver_sql(
            "INSERT INTO tag_plan (old_name, new_name, action) VALUES (?, ?, ?)",
            [(c.old, c.new, c.action) for c in changes],
        )


def tag_names(conn: Connection) -> list[str]:
    """Every tag name in the catalog (the vocabulary is small next to the links)."""
    return list(conn.execute(select(TAG.c.name)).scalars())


# -- a run: lock, plan, apply, record -----------------------------------------------------------


@dataclass
class ChangeReport(JobReport):
    """One run of a vocabulary change, filled in as it goes (rendered whatever the outcome)."""

    plan: Plan = field(default_factory=Plan)
    counts: ApplyCounts = field(default_factory=ApplyCounts)

    # A change is one transaction: its summary has no duration (the run record keeps one).
    INTERNAL: ClassVar[tuple[str, ...]] = ("started", "duration_s", "plan", "counts")
    INTERRUPTED_ERROR: ClassVar[str] = "interrupted; nothing was changed"
    RULES: ClassVar[dict[str, str]] = {
        OK: "the plan applied (one transaction)",
        FAILED: "the plan could not be applied: nothing was changed",
    }

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), **self.job_counts()}

    @classmethod
    def json_keys(cls) -> list[str]:
        return [*super().json_keys(), *(f.name for f in dataclasses.fields(ApplyCounts)), "skipped"]

    def items(self) -> Items:
        c = self.counts
        written = c.renamed + c.merged + c.dropped
        return Items(seen=written + len(self.plan.skipped), written=written)

    def job_counts(self) -> dict[str, Any]:
        return {**asdict(self.counts), "skipped": len(self.plan.skipped)}


def run_vocabulary_change(
    engine: Engine,
    command: str,
    make_plan: Callable[[list[str]], Plan],
    report: ChangeReport,
    keep_runs: int | Retention = Retention(),
) -> ChangeReport:
    """As one recorded run under the locks, read the tag list, plan, and apply in one
    transaction. Any failure rolls everything back and raises (a database one as DatabaseError)."""
    with recorded_run(engine, command, None, report, vocabulary_lock(engine), keep_runs):
        try:
            with engine.begin() as conn:
                hold_write_lock(conn)
                report.plan = make_plan(tag_names(conn))
                report.counts = apply_plan(conn, report.plan)
        except SQLAlchemyError as exc:
            raise DatabaseError(f"nothing was changed: {_reason(exc)}") from exc
    return report


def _reason(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
