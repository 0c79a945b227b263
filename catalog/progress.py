"""Progress for a sync: a rich bar on a terminal, periodic log lines elsewhere, or nothing."""

from __future__ import annotations

import logging
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from catalog.items import InvalidItem
from catalog.sync import LibraryResult

log = logging.getLogger("catalog.sync")
LOG_EVERY_S = 10.0


class QuietReporter:
    """Says only what went wrong with single items."""

    def library_started(self, name: str, total: int | None) -> None:
        pass

    def advanced(self, name: str, count: int) -> None:
        pass

    def item_skipped(self, library: str, item: InvalidItem) -> None:
        log.warning(
            "skipped %s in %r: %s", item.external_id or "an item without Id", library, item.reason
        )

    def library_finished(self, result: LibraryResult) -> None:
        pass


class LogReporter(QuietReporter):
    """Plain log lines, for cron mail and container logs: a start, a line every 10 s, an end."""

    def __init__(self) -> None:
        self._done: dict[str, int] = {}
        self._last = time.monotonic()

    def library_started(self, name: str, total: int | None) -> None:
        log.info("syncing %r: %s items on the server", name, total if total is not None else "?")

    def advanced(self, name: str, count: int) -> None:
        self._done[name] = self._done.get(name, 0) + count
        if time.monotonic() - self._last >= LOG_EVERY_S:
            self._last = time.monotonic()
            log.info("%r: %d items read", name, self._done[name])

    def library_finished(self, result: LibraryResult) -> None:
        log.info(
            "%r: %d seen, %d new, %d changed, %d unchanged, %d skipped, %d missing",
            result.name, result.seen, result.inserted, result.updated, result.unchanged,
            result.skipped, result.missing,
        )  # fmt: skip


class RichReporter(QuietReporter):
    """A progress bar per library with items, rate and ETA from the server's total."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
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
        self.started: dict[str, float] = {}

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def library_started(self, name: str, total: int | None) -> None:
        self.tasks[name] = self.progress.add_task(name, total=total or None, rate="")
        self.started[name] = time.monotonic()

    def advanced(self, name: str, count: int) -> None:
        if name not in self.tasks:
            self.library_started(name, None)
        task = self.tasks[name]
        self.progress.advance(task, count)
        done = self.progress.tasks[self.tasks[name]].completed
        elapsed = max(time.monotonic() - self.started[name], 1e-6)
        self.progress.update(task, rate=f"{done / elapsed:,.0f} items/s")

    def library_finished(self, result: LibraryResult) -> None:
        task = self.tasks.get(result.name)
        if task is not None:
            self.progress.update(task, total=result.seen, completed=result.seen)
