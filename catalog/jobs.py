"""What every job (sync, retag, a change to the tag vocabulary) shares: the report, the recorded
run (lock, start, interrupted or failed, finish) and the one exit-code table.

A job's function fills in a report as it goes, inside `recorded_run`; the report says which
status the work ended with (`settle`) and how many items it saw, wrote and failed on (`items`),
and the status says the exit code. Nothing else decides either.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar

from catalog.errors import CatalogError, Interrupted, LockHeld
from catalog.runs import (
    FAILED,
    INTERRUPTED,
    LOCKED,
    OK,
    PARTIAL,
    RUNNING,
    Retention,
    finish_run,
    start_run,
)

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement, Engine

# -- the exit-code table ------------------------------------------------------------------------


@dataclass(frozen=True)
class ExitCode:
    """One exit code: the run status it ends (None: the command never got to run) and what
    it means to whoever reads it in cron mail or a scheduler."""

    code: int
    status: str | None
    meaning: str
    short: str  # for --help, where codes of the same short meaning are joined (130/143)


EXIT_CODES = (
    ExitCode(0, OK, "success", "success"),
    ExitCode(1, FAILED, "failure (server, database, a library refused by the mass-delete "
             "guard, or a tagging service that answered nothing)", "failure"),
    ExitCode(2, None, "usage or configuration error", "usage or config error"),
    ExitCode(3, PARTIAL, "partial: some work was done and some failed (see the status rules)",
             "partial (some items skipped or failed)"),
    ExitCode(75, LOCKED, "another run of the same job holds the lock",
             "another run holds the lock"),
    ExitCode(130, INTERRUPTED, "interrupted by SIGINT (also `catalog schedule run`, after its "
             "job in flight)", "interrupted"),
    ExitCode(143, INTERRUPTED, "interrupted by SIGTERM (likewise)", "interrupted"),
)  # fmt: skip
SUCCESS, FAILURE, USAGE, PARTIAL_EXIT, LOCK_HELD_EXIT = 0, 1, 2, 3, 75
SIGINT_EXIT, SIGTERM_EXIT = 130, 143
# A partial run did its job (the failed items are counted apart): it counts as a success for
# freshness metrics and healthchecks.
SUCCESS_EXITS = (SUCCESS, PARTIAL_EXIT)
_BY_STATUS = {e.status: e.code for e in EXIT_CODES if e.status is not None}
# Several runs in one command (a sync of every configured server) end with the worst of their
# codes: a failure over a held lock over a partial run over a success. An interruption stops
# the command and wins over all of them.
WORST_FIRST = (SIGTERM_EXIT, SIGINT_EXIT, FAILURE, LOCK_HELD_EXIT, PARTIAL_EXIT, SUCCESS)


def worst_exit(codes: Iterable[int]) -> int:
    """The exit code of a command that ran several jobs, from theirs (WORST_FIRST)."""
    rank = {code: i for i, code in enumerate(WORST_FIRST)}
    return min(codes, key=lambda code: rank.get(code, rank[FAILURE]), default=SUCCESS)


def exit_code_for(status: str) -> int:
    """The exit code of a run that ended with `status` (130 for an interruption)."""
    return _BY_STATUS.get(status, FAILURE)


def exit_code_of(exc: BaseException) -> int:
    """The exit code a command ends with when `exc` leaves it: the one mapping of errors."""
    code = getattr(exc, "exit_code", None)  # CatalogError, and the CLI's own exits
    if isinstance(code, int):
        return code
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else FAILURE
    if isinstance(exc, KeyboardInterrupt | asyncio.CancelledError):
        return SIGINT_EXIT
    return FAILURE


def exit_codes_help() -> str:
    """The exit codes in one line, for --help."""
    grouped: dict[str, list[str]] = {}
    for e in EXIT_CODES:
        grouped.setdefault(e.short, []).append(str(e.code))
    return "Exit codes: " + ", ".join(f"{'/'.join(c)} {s}" for s, c in grouped.items()) + "."


def exit_code_table() -> str:
    """The table of exit codes as the README shows it (a test keeps the two the same)."""
    rows = ["| code | meaning |", "| --- | --- |"]
    rows += [f"| {e.code} | {e.meaning} |" for e in EXIT_CODES]
    return "\n".join(rows)


# -- reports ------------------------------------------------------------------------------------


class JobFailed(CatalogError):
    """The job ran to its end without doing what it was for (its report says why)."""


@dataclass
class Items:
    """What a run went through, in its own unit (media items, tags): the metrics' items."""

    seen: int = 0
    written: int = 0
    failed: int = 0


@dataclass(kw_only=True)
class JobReport:
    """The outcome of one run, filled in as it goes, so an interrupted run has one too.
    A job's report adds its own counts, `settle` (its status rule) and `items`."""

    status: str = RUNNING
    duration_s: float = 0.0
    run_id: int | None = None
    error: str | None = None
    started: float = field(default_factory=time.monotonic, repr=False)

    INTERNAL: ClassVar[tuple[str, ...]] = ("started",)  # not in --json
    INTERRUPTED_ERROR: ClassVar[str] = "interrupted"
    # The status rule, one line per status, for the README (see status_rules_table).
    RULES: ClassVar[dict[str, str]] = {}

    def settle(self) -> str:
        """The status of a run whose work ended without an exception."""
        return OK

    def items(self) -> Items:
        return Items()

    @property
    def exit_code(self) -> int:
        return exit_code_for(self.status)

    def as_dict(self) -> dict[str, Any]:
        """The `--json` summary."""
        return {k: v for k, v in asdict(self).items() if k not in self.INTERNAL}

    def job_counts(self) -> dict[str, Any]:
        """The job's own counts for the run record (beyond seen / written / failed)."""
        return {}

    def run_counts(self) -> dict[str, Any]:
        """The counts kept in the run record; seen / written / failed are always there."""
        return {**self.job_counts(), **asdict(self.items())}

    @classmethod
    def json_keys(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name not in cls.INTERNAL]


@dataclass(kw_only=True)
class ServerRuns(JobReport):
    """One job run on each configured server in turn, as one command's report: `--json`
    prints `{"status", "servers": [each run's summary]}` and the exit code is the worst of
    the runs' (worst_exit). Each run keeps its own lock, run record and report."""

    servers: list[JobReport] = field(default_factory=list)

    INTERNAL: ClassVar[tuple[str, ...]] = ("started", "duration_s", "run_id", "error")

    def settle(self) -> str:
        """The status of the run with the worst exit code (ok with no run)."""
        worst = worst_exit(r.exit_code for r in self.servers)
        return next((r.status for r in self.servers if r.exit_code == worst), OK)

    def items(self) -> Items:
        counts = [r.items() for r in self.servers]
        return Items(*(sum(getattr(c, k) for c in counts) for k in ("seen", "written", "failed")))

    @property
    def exit_code(self) -> int:
        return worst_exit(r.exit_code for r in self.servers)

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.settle(), "servers": [r.as_dict() for r in self.servers]}


def status_rules_table(jobs: dict[str, type[JobReport]]) -> str:
    """Which status (and exit code) each job ends with, as the README shows it."""
    statuses = (OK, PARTIAL, FAILED)
    rows = ["| job | " + " | ".join(f"{s} ({exit_code_for(s)})" for s in statuses) + " |"]
    rows.append("| --- " * (len(statuses) + 1) + "|")
    for job, report in jobs.items():
        rows.append(
            f"| {job} | " + " | ".join(report.RULES.get(s, "never") for s in statuses) + " |"
        )
    return "\n".join(rows)


def json_keys_table(jobs: dict[str, type[JobReport]]) -> str:
    """The keys of each job command's `--json` summary, as the README shows them."""
    rows = ["| job | `--json` keys |", "| --- | --- |"]
    rows += [f"| {job} | {', '.join(f'`{k}`' for k in r.json_keys())} |" for job, r in jobs.items()]
    return "\n".join(rows)


# -- the recorded run ---------------------------------------------------------------------------


@contextmanager
def recorded_run(
    engine: Engine,
    command: str,
    server: str | None,
    report: JobReport,
    lock: AbstractContextManager[Any],
    retention: int | Retention = Retention(),
    alive: ColumnElement[bool] | None = None,
) -> Iterator[JobReport]:
    """Run the block as one recorded run of `command`: under `lock` (LockHeld: the report
    says locked), a run record started before and finished after, whatever ends the block
    (`alive`: which other running runs of the command are still alive, see start_run).
    The record is written with SIGINT/SIGTERM held, so a signal at any moment after the run
    record exists leaves it interrupted, never running. A run that settles as failed raises
    JobFailed after it is recorded."""
    from catalog.aio import signals_held  # here: a read (`media list`) imports jobs, runs none

    try:
        with lock:
            try:
                with signals_held():
                    report.run_id = start_run(engine, command, server, alive)
                yield report
                report.status = report.settle()
            except BaseException as exc:
                report.status, report.error = _ended_by(exc, report)
                raise
            finally:
                report.duration_s = round(time.monotonic() - report.started, 3)
                if report.run_id is not None:
                    with signals_held():
                        finish_run(
                            engine, report.run_id, report.status, report.run_counts(),
                            report.error, retention,
                        )  # fmt: skip
    except LockHeld as exc:
        if report.run_id is None:  # this run's own lock: nothing was started
            report.status, report.error = LOCKED, str(exc)
        raise
    except BaseException as exc:
        if report.run_id is None:  # stopped before its record existed: the report still says
            report.status, report.error = _ended_by(exc, report)
        raise
    if report.status == FAILED:
        raise JobFailed(report.error or f"{command} failed")


def _ended_by(exc: BaseException, report: JobReport) -> tuple[str, str]:
    if isinstance(exc, KeyboardInterrupt | asyncio.CancelledError | Interrupted):
        return INTERRUPTED, report.INTERRUPTED_ERROR
    return FAILED, str(exc) or type(exc).__name__
