"""What every benchmark shares: keeping its own section of BENCHMARKS.md up to date, and a
child process's peak RSS and CPU time."""

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


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds a process has used so far (None: it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


class CpuMeter:
    """CPU seconds used while the block runs by the processes named `names` (every PostgreSQL
    process, say) and by the pids given, polled: a process that exits keeps what it had used
    at its last poll, so at most one interval of it is lost."""

    def __init__(self, names: tuple[str, ...] = (), pids: dict[str, int] | None = None) -> None:
        self.names, self.pids = names, dict(pids or {})
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._group: dict[int, str] = {}
        self._names: dict[int, str] = {}  # a pid's command name, read once
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> CpuMeter:
        self._poll(new_are_fresh=False)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._poll(new_are_fresh=True)

    def seconds(self, group: str) -> float:
        """CPU seconds of `group` (a name in `names` or a key of `pids`) during the block."""
        return sum(
            self._last[pid] - self._first[pid] for pid, g in self._group.items() if g == group
        )

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            self._poll(new_are_fresh=True)

    def _poll(self, new_are_fresh: bool) -> None:
        candidates = {pid: group for group, pid in self.pids.items()}
        if self.names:
            for entry in Path("/proc").iterdir():
                pid = int(entry.name) if entry.name.isdigit() else None
                if pid is None or pid in candidates:
                    continue
                if pid not in self._names:  # every 20 ms: read each process's name once
                    self._names[pid] = process_name(pid)
                if self._names[pid] in self.names:
                    candidates[pid] = self._names[pid]
        for pid, group in candidates.items():
            used = process_cpu_s(pid)
            if used is None:
                continue
            if pid not in self._first:  # a process started during the block used all it has
                self._first[pid] = 0.0 if new_are_fresh else used
                self._group[pid] = group
            self._last[pid] = used


def watch_peak_rss(pid: int, peak: dict[str, float]) -> None:
    """Follow VmHWM (the process's own RSS high-water mark) until the process is gone, and its
    CPU time. ru_maxrss would not do: Linux carries the parent's high-water mark across fork
    and exec, and this benchmark process holds more than `catalog` does."""
    status = Path(f"/proc/{pid}/status")
    while True:
        try:
            text_ = status.read_text()
        except OSError:
            return
        peak["cpu_s"] = process_cpu_s(pid) or peak["cpu_s"]
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
    cpu_s: float = 0.0  # user + system, as last seen (the last poll interval may be missing)


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
    peak = {"kib": 0.0, "cpu_s": 0.0}
    watcher = threading.Thread(target=watch_peak_rss, args=(proc.pid, peak))
    watcher.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - started
    watcher.join()
    if proc.returncode != 0:
        raise SystemExit(f"catalog {args[0]} failed ({proc.returncode}): {err.decode()[-500:]}")
    return Watched(wall, peak["kib"] / 1024, out or b"", peak["cpu_s"])


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
