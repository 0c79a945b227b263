"""Job locks, so two runs of the same job against the same server never overlap.

PostgreSQL: a session-level advisory lock held on a dedicated connection. SQLite: an OS file
lock beside the catalog file. Both vanish with the process that held them, so a killed run
never blocks the next one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout
from sqlalchemy import Engine, text

from catalog.db.engine import sqlite_path
from catalog.errors import LockHeld

CATALOG_SCOPE = "catalog"  # the scope of a job on the whole catalog (retag, normalize)


def lock_key(job: str, server: str) -> int:
    """A stable signed 64-bit advisory-lock key for (job, server)."""
    digest = hashlib.blake2b(f"catalog:{job}:{server}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextmanager
def job_lock(engine: Engine, job: str, server: str | None) -> Iterator[None]:
    """Hold the lock of `job` on `server` (None: on the whole catalog) for the block, or raise
    LockHeld at once."""
    server = CATALOG_SCOPE if server is None else server
    path = sqlite_path(engine.url)
    if engine.dialect.name == "postgresql":
        with _advisory_lock(engine, job, server):
            yield
    elif path is not None:
        with _file_lock(path.with_name(f"{path.name}.{job}-{_safe(server)}.lock"), job, server):
            yield
    else:
        yield  # an in-memory SQLite catalog cannot be shared between processes


def _held(job: str, server: str) -> LockHeld:
    if server == CATALOG_SCOPE and job in CATALOG_JOBS:
        return LockHeld(f"another `catalog {job}` is running on this catalog; try again later")
    return LockHeld(f"another `catalog {job}` of server {server!r} is running; try again later")


CATALOG_JOBS = ("retag", "normalize")  # jobs on the whole catalog, not one server


@contextmanager
def _advisory_lock(engine: Engine, job: str, server: str) -> Iterator[None]:
    key = lock_key(job, server)
    with engine.connect() as conn:
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
        conn.commit()
        if not got:
            raise _held(job, server)
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            conn.commit()


@contextmanager
def _file_lock(path: Path, job: str, server: str) -> Iterator[None]:
    lock = FileLock(path, timeout=0, is_singleton=False, thread_local=False)
    try:
        lock.acquire()
    except Timeout:
        raise _held(job, server) from None
    try:
        yield
    finally:
        lock.release()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
