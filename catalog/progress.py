"""Progress of a job, advanced per item: a rich bar on a terminal, periodic log lines elsewhere,
or nothing but the items that went wrong. One protocol for every job; a job names its tasks
(a sync one per library, a retag one for the whole run)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
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

from catalog.timefmt import short_duration

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
    """Plain log lines, for cron mail and container logs: a start; every 10 s a line with the
    count, the total and share when known, the rate and the time left
    (`'Movies': 22,000/100,000 items done (22 %), 1,850 items/s, ETA 42 s`); at the end the
    same line, with the task's summary. `clock`: seconds from any fixed point."""

    def __init__(
        self, every_s: float = LOG_EVERY_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.every_s, self.clock = every_s, clock
        self._done: dict[str, int] = {}
        self._total: dict[str, int | None] = {}
        self._begun: dict[str, float] = {}
        self._last = clock()

    def started(self, task: str, total: int | None) -> None:
        self._total[task], self._begun[task] = total, self.clock()
        self._done.setdefault(task, 0)
        log.info("%r: %s items to go", task, "?" if total is None else f"{total:,}")

    def advanced(self, task: str, count: int = 1) -> None:
        self._begin_unannounced(task)
        self._done[task] += count
        if self.clock() - self._last >= self.every_s:
            self._last = self.clock()
            log.info("%s", self.line(task))

    def finished(self, task: str, done: int, summary: str) -> None:
        self._begin_unannounced(task)
        self._done[task] = done
        log.info("%s; %s", self.line(task), summary)

    def _begin_unannounced(self, task: str) -> None:
        """A task that reports before `started` (its total unknown) starts now."""
        if task not in self._begun:
            self.started(task, None)

    def line(self, task: str) -> str:
        """Where `task` stands: count (of total, share), rate, and time left while any is."""
        done, total = self._done[task], self._total.get(task)
        rate = done / max(self.clock() - self._begun[task], 1e-6)
        text = f"{task!r}: {done:,}"
        if total:
            text += f"/{total:,} items done ({min(done * 100 // total, 100)} %)"
        else:
            text += " items done"
        text += f", {rate:,.0f} items/s"
        if total and done < total and rate > 0:
            text += f", ETA {short_duration((total - done) / rate)}"
        return text


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
