"""What every benchmark shares: keeping its own section of BENCHMARKS.md up to date, and a
child process's peak RSS."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any


def write_section(path: Path, header: str, section: str) -> None:
    """Replace the section that starts with `header` (up to the next `## `), keeping the
    others; append it when the file has none yet."""
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    if header in text:
        start = text.index(header)
        end = text.find("\n## ", start + len(header))
        text = text[:start] + section + (text[end + 1 :] if end != -1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def watch_peak_rss(pid: int, peak: dict[str, int]) -> None:
    """Follow VmHWM (the process's own RSS high-water mark) until the process is gone.
    ru_maxrss would not do: Linux carries the parent's high-water mark across fork and exec,
    and this benchmark process holds more than `catalog` does."""
    status = Path(f"/proc/{pid}/status")
    while True:
        try:
            text_ = status.read_text()
        except OSError:
            return
        for line in text_.splitlines():
            if line.startswith("VmHWM:"):
                peak["kib"] = max(peak["kib"], int(line.split()[1]))
                break
        else:
            return  # a zombie: memory already released
        time.sleep(0.02)


@dataclass
class Watched:
    """How a `catalog` command run as a child process went."""

    wall_s: float
    peak_rss_mb: float
    stdout: bytes


def run_catalog(
    args: list[str],
    env: dict[str, str],
    stdout: IO[Any] | int = subprocess.PIPE,
    cwd: Path | None = None,
) -> Watched:
    """`python -m catalog ARGS` as a user runs it: wall time and peak RSS; exits the benchmark
    with the command's stderr when it fails."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "catalog", *args],
        env=env, stdout=stdout, stderr=subprocess.PIPE, cwd=cwd,
    )  # fmt: skip
    peak = {"kib": 0}
    watcher = threading.Thread(target=watch_peak_rss, args=(proc.pid, peak))
    watcher.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - started
    watcher.join()
    if proc.returncode != 0:
        raise SystemExit(f"catalog {args[0]} failed ({proc.returncode}): {err.decode()[-500:]}")
    return Watched(wall, peak["kib"] / 1024, out or b"")


def machine(postgres_version: str | None = None) -> str:
    """One line naming the machine, for a benchmark's section."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    text = (
        f"{os.cpu_count()} cores ({cpu}; shared with other work, so noisy), {mem:.0f} GiB, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}"
    )
    if postgres_version:
        text += f", PostgreSQL {postgres_version} on the same machine"
    return text


def met(ok: bool) -> str:
    """A target's verdict, as BENCHMARKS.md words it."""
    return "met" if ok else "missed"
