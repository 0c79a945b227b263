"""Progress of a job, advanced per item: a rich bar on a terminal, periodic log lines elsewhere,
or nothing but the items that went wrong. One protocol for every job; a job names its tasks
(a sync one per library, a retag one for the whole run)."""

from __future__ import annotations

import logging
import time
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress

log = logging.getLogger("catalog.progress")
LOG_EVERY_S = 10.0


class Progress(Protocol):
    """Where a job's progress goes."""

    def started(self, task: str, total: int | None) -> None: ...

    def advanced(self, task: str, count: int = 1) -> None: ...

    def item_skipped(self, task: str, item: str | None, reason: str) -> None: ...

    def finished(self, task: str, done: int, summary: str) -> None: ...


class QuietProgress:
    """Says only what went wrong with single items."""

    def started(self, task: str, total: int | None) -> None:
        pass

    def advanced(self, task: str, count: int = 1) -> None:
        pass

    def item_skipped(self, task: str, item: str | None, reason: str) -> None:
        log.warning("skipped %s in %r: %s", item or "an item without Id", task, reason)

    def finished(self, task: str, done: int, summary: str) -> None:
        pass


class LogProgress(QuietProgress):
    """Plain log lines, for cron mail and container logs: a start, a line every 10 s, an end."""

    def __init__(self) -> None:
        self._done: dict[str, int] = {}
        self._total: dict[str, int | None] = {}
        self._last = time.monotonic()

    def started(self, task: str, total: int | None) -> None:
        self._total[task] = total
        log.info("%s: %s item(s) to go", task, "?" if total is None else f"{total:,}")

    def advanced(self, task: str, count: int = 1) -> None:
        self._done[task] = self._done.get(task, 0) + count
        if time.monotonic() - self._last >= LOG_EVERY_S:
            self._last = time.monotonic()
            total = self._total.get(task)
            of = "" if total is None else f" of {total:,}"
            log.info("%s: %s%s item(s) done", task, f"{self._done[task]:,}", of)

    def finished(self, task: str, done: int, summary: str) -> None:
        log.info("%s: %s", task, summary)


class BarProgress(QuietProgress):
    """A progress bar per task with items, rate and ETA from the task's total."""

    def __init__(self, console: Console) -> None:
        self.bar = RichProgress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.tasks: dict[str, TaskID] = {}
        self.begun: dict[str, float] = {}

    def __enter__(self) -> BarProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def started(self, task: str, total: int | None) -> None:
        self.tasks[task] = self.bar.add_task(task, total=total or None, rate="")
        self.begun[task] = time.monotonic()

    def advanced(self, task: str, count: int = 1) -> None:
        if task not in self.tasks:
            self.started(task, None)
        task_id = self.tasks[task]
        self.bar.advance(task_id, count)
        done = self.bar.tasks[task_id].completed
        elapsed = max(time.monotonic() - self.begun[task], 1e-6)
        self.bar.update(task_id, rate=f"{done / elapsed:,.0f} items/s")

    def finished(self, task: str, done: int, summary: str) -> None:
        task_id = self.tasks.get(task)
        if task_id is not None:
            self.bar.update(task_id, total=done, completed=done)
