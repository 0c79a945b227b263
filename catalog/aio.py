"""Small asyncio pieces: one-page prefetch, a database thread, and signal-aware running."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from catalog.errors import Interrupted

T = TypeVar("T")


async def prefetch(source: AsyncIterator[T]) -> AsyncIterator[T]:
    """Yield from `source` while already fetching its next element: at most one ahead."""
    pending: asyncio.Future[T] = asyncio.ensure_future(anext(source))
    try:
        while True:
            try:
                element = await pending
            except StopAsyncIteration:
                return
            pending = asyncio.ensure_future(anext(source))
            yield element
    finally:
        if not pending.done():
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
        if hasattr(source, "aclose"):
            await source.aclose()


class DbThread:
    """Runs blocking database work on ONE thread, so the event loop keeps fetching meanwhile
    and the connection never hops threads. A cancelled caller still waits for the work in
    flight: a chunk commits or rolls back whole before the run reports the interruption."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="catalog-db")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        future = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            await asyncio.wait([future])
            raise

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    def __enter__(self) -> DbThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_interruptible(main: Callable[[], Awaitable[T]]) -> T:
    """asyncio.run(main()), turning SIGINT/SIGTERM into cancellation and then `Interrupted`."""

    async def guarded() -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        received: list[int] = []

        def on_signal(signum: int) -> None:
            received.append(signum)
            task.cancel()

        handled = {}
        for signum in STOP_SIGNALS:
            try:
                previous = signal.getsignal(signum)
                loop.add_signal_handler(signum, on_signal, signum)
                handled[signum] = previous
            except (RuntimeError, ValueError):  # not the main thread: signals stay default
                pass
        try:
            return await main()
        except asyncio.CancelledError:
            if received:
                raise Interrupted(received[0]) from None
            raise
        finally:
            for signum, previous in handled.items():
                loop.remove_signal_handler(signum)
                signal.signal(signum, previous)  # asyncio would leave the default behind

    return asyncio.run(guarded())


# -- signals outside an event loop ---------------------------------------------------------------

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Stops:
    """SIGINT/SIGTERM as `Interrupted` where no event loop turns them into cancellation
    (a job that runs on the main thread), or held while a run record is being written."""

    holding = 0
    held: list[int] = []

    @classmethod
    def handler(cls, signum: int, frame: object) -> None:
        if cls.holding:
            cls.held.append(signum)
            return
        raise Interrupted(signum)


@contextmanager
def interruptible() -> Iterator[None]:
    """For the block, SIGINT and SIGTERM raise `Interrupted` (an event loop run inside it
    still turns them into cancellation), instead of ending the process on the spot."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    for signum in STOP_SIGNALS:
        signal.signal(signum, _Stops.handler)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT/SIGTERM for the block (a run record written whole), then act on them.
    Inside an event loop nothing is needed: its signal handlers run between awaits."""
    if signal.getsignal(signal.SIGTERM) != _Stops.handler:  # bound anew on each access
        yield
        return
    _Stops.holding += 1
    try:
        yield
    finally:
        _Stops.holding -= 1
    if not _Stops.holding and _Stops.held:
        signum = _Stops.held[0]
        _Stops.held.clear()
        raise Interrupted(signum)
