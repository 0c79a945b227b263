"""Small asyncio pieces: one-page prefetch, a database thread, and signal-aware running."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
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

        handled = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, on_signal, signum)
                handled.append(signum)
            except (RuntimeError, ValueError):  # not the main thread: signals stay default
                pass
        try:
            return await main()
        except asyncio.CancelledError:
            if received:
                raise Interrupted(received[0]) from None
            raise
        finally:
            for signum in handled:
                loop.remove_signal_handler(signum)

    return asyncio.run(guarded())
