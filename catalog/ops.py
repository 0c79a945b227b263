"""What every unattended run reports beyond its run record: Prometheus metrics in a textfile and
a healthchecks.io-style ping. One context manager wraps a job command; nothing it does can
fail or change the job's outcome.

`catalog.cli.jobs.run_job` wraps every job command in `observed_job`. An exception leaving the
block sets the exit code (`catalog.jobs.exit_code_of`) and is re-raised untouched; the counts
are the run record's, whose seen / written / failed are the items metric.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from filelock import FileLock

from catalog.http import HttpClient, Peer, RetryPolicy
from catalog.jobs import LOCK_HELD_EXIT, SUCCESS_EXITS, exit_code_of
from catalog.runs import utcnow

log = logging.getLogger(__name__)

HEALTHCHECK_TIMEOUT_S = 5.0
HEALTHCHECK_MAX_BYTES = 64 * 1024  # the answer is "OK"
METRICS_LOCK_TIMEOUT_S = 10.0
ITEM_KINDS = ("seen", "written", "failed")
SERVER_FIELD = "{server}"  # in a healthcheck URL: one check per server


@dataclass
class JobOutcome:
    """One run of a job as the observers see it; the command fills in what it knows."""

    job: str
    server: str | None = None
    database_url: str | None = None
    counts: Mapping[str, Any] | None = None
    exit_code: int = 0
    started: float = field(default_factory=time.monotonic)
    duration_s: float = 0.0
    # A command that ran the job once per server observed each run on its own (see
    # catalog.cli.jobs.JobRun.observed): its own outcome writes no metrics, and pings the
    # healthcheck only when the URL has no `{server}` (one check, the worst run's code).
    observed_apart: bool = False

    @property
    def succeeded(self) -> bool:
        return self.exit_code in SUCCESS_EXITS


@contextmanager
def observed_job(
    job: str,
    server: str | None = None,
    *,
    metrics_file: Path | None = None,
    healthcheck_url: str | None = None,
) -> Iterator[JobOutcome]:
    """Run the block as one run of `job`, then write metrics and ping the healthcheck."""
    outcome = JobOutcome(job, server)
    try:
        yield outcome
    except BaseException as exc:
        outcome.exit_code = exit_code_of(exc)
        raise
    finally:
        outcome.duration_s = time.monotonic() - outcome.started
        if metrics_file is not None and not outcome.observed_apart:
            write_metrics(metrics_file, outcome)
        if healthcheck_url and not (outcome.observed_apart and SERVER_FIELD in healthcheck_url):
            ping_healthcheck(healthcheck_url, outcome)


# -- items --------------------------------------------------------------------------------------


def job_items(counts: Mapping[str, Any] | None) -> dict[str, int]:
    """Items seen, written and failed in a run, from the counts its run record holds."""
    counts = counts or {}
    return {kind: int(counts.get(kind, 0)) for kind in ITEM_KINDS}


# -- Prometheus textfile ------------------------------------------------------------------------

METRICS = {
    "catalog_job_duration_seconds": ("gauge", "How long the last run of the job took."),
    "catalog_job_items": ("gauge", "Items the last run of the job saw, wrote and failed on."),
    "catalog_job_exit_code": ("gauge", "Exit code of the last run (0 ok, 3 partial, 75 locked)."),
    "catalog_job_last_run_timestamp_seconds": ("gauge", "When the last run of the job ended."),
    "catalog_job_last_success_timestamp_seconds": (
        "gauge", "When a run of the job last succeeded (exit 0 or 3).",
    ),
}  # fmt: skip
_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

Labels = tuple[tuple[str, str], ...]
Samples = dict[tuple[str, Labels], float]


def write_metrics(path: Path, outcome: JobOutcome) -> None:
    """Replace this job's samples in the metrics file, keeping other jobs'. Atomic (a temp
    file in the same directory, renamed over); a failure is logged, never raised."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Two jobs finishing together must not lose each other's samples.
        with FileLock(f"{path}.lock", timeout=METRICS_LOCK_TIMEOUT_S):
            samples = read_metrics(path)
            previous = _last_success_in(samples, outcome)
            samples = {k: v for k, v in samples.items() if not _is_this_job(k[1], outcome)}
            samples.update(job_samples(outcome, previous))
            _write_atomically(path, render_metrics(samples))
    except Exception as exc:
        log.warning("could not write the metrics file %s: %s", path, exc)


def job_samples(outcome: JobOutcome, previous_success: float | None) -> Samples:
    labels = (("job", outcome.job), ("server", outcome.server or ""))
    now = utcnow().timestamp()
    samples: Samples = {
        ("catalog_job_duration_seconds", labels): round(outcome.duration_s, 3),
        ("catalog_job_exit_code", labels): outcome.exit_code,
        ("catalog_job_last_run_timestamp_seconds", labels): now,
    }
    for kind, count in job_items(outcome.counts).items():
        samples[("catalog_job_items", (*labels, ("kind", kind)))] = count
    success = now if outcome.succeeded else previous_success or _success_in_db(outcome)
    if success is not None:
        samples[("catalog_job_last_success_timestamp_seconds", labels)] = success
    return samples


def _is_this_job(labels: Labels, outcome: JobOutcome) -> bool:
    found = dict(labels)
    return found.get("job") == outcome.job and found.get("server") == (outcome.server or "")


def _last_success_in(samples: Samples, outcome: JobOutcome) -> float | None:
    for (name, labels), value in samples.items():
        if name == "catalog_job_last_success_timestamp_seconds" and _is_this_job(labels, outcome):
            return value
    return None


def _success_in_db(outcome: JobOutcome) -> float | None:
    """A first metrics file after failed runs still says when the job last succeeded."""
    if outcome.database_url is None:
        return None
    from catalog.db.engine import create_catalog_engine  # only on this rare path
    from catalog.reads.runs import last_success

    engine = create_catalog_engine(outcome.database_url)
    try:
        with engine.connect() as conn:
            when: datetime | None = last_success(conn, outcome.job, outcome.server)
        return when.timestamp() if when else None
    except Exception as exc:  # an unreachable catalog is likely why the run failed
        log.debug("no last success from the catalog: %s", exc)
        return None
    finally:
        engine.dispose()


def read_metrics(path: Path) -> Samples:
    """The samples of our metrics in a textfile (others', comments and junk are dropped)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    samples: Samples = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match or match["name"] not in METRICS:
            continue
        labels = tuple(
            (k, _unescape(v)) for k, v in _LABEL.findall(match["labels"] or "")
        )  # fmt: skip
        try:
            samples[(match["name"], labels)] = float(match["value"])
        except ValueError:
            continue
    return samples


def render_metrics(samples: Samples) -> str:
    """Prometheus text exposition format, metrics in a fixed order, samples sorted."""
    lines: list[str] = []
    for name, (kind, help_text) in METRICS.items():
        mine = sorted((labels, value) for (n, labels), value in samples.items() if n == name)
        if not mine:
            continue
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for labels, value in mine:
            rendered = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            lines.append(f"{name}{{{rendered}}} {_number(value)}")
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    if math.isfinite(value) and value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], value)


def _write_atomically(path: Path, text: str) -> None:
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, 0o644)  # node_exporter usually runs as another user
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


# -- healthcheck ping ---------------------------------------------------------------------------


def healthcheck_target(url: str, outcome: JobOutcome) -> str | None:
    """The URL to ping for this outcome, None for none: `{job}` is replaced by the job name
    and `{server}` by the server's (one check per job, or per job and server, from one
    setting); a failure pings URL/fail; a run that found its job
    locked pings nothing, since the run holding the lock will report."""
    if outcome.exit_code == LOCK_HELD_EXIT:
        return None
    url = url.replace("{job}", outcome.job).replace(SERVER_FIELD, outcome.server or "")
    return url if outcome.succeeded else url.rstrip("/") + "/fail"


def ping_healthcheck(url: str, outcome: JobOutcome, timeout: float = HEALTHCHECK_TIMEOUT_S) -> None:
    """GET the healthcheck URL for this outcome; a failure is a warning, never an error."""
    target = healthcheck_target(url, outcome)
    if target is None:
        return
    # The URL's path is the check's secret (a UUID or ping key): messages name the host only.
    host = urlsplit(target).hostname or "?"
    try:
        asyncio.run(_ping(target, host, timeout))
    except Exception as exc:
        log.warning("healthcheck ping to %s failed: %s", host, type(exc).__name__)


async def _ping(target: str, host: str, timeout: float) -> None:
    # One try: the next run pings again, and a job must not wait on its monitor.
    policy = RetryPolicy(retries=0, timeout_s=timeout, max_bytes=HEALTHCHECK_MAX_BYTES)
    async with HttpClient(target, peer=Peer(f"the healthcheck at {host}"), policy=policy) as http:
        await http.get(target)
