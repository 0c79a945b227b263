"""Settings: a TOML file, overridden by CATALOG_* environment variables, overridden by flags.

Each setting's type and bounds are declared once (`SPECS`) and enforced for all three sources;
every problem is one ConfigError line naming where the value came from (`FILE: sync.chunk_size`,
`CATALOG_PAGE_SIZE`, `--chunk-size`) and what is wrong.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import platformdirs
from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError

from catalog.errors import ConfigError
from catalog.logs import add_secrets
from catalog.runs import JOBS, KEEP_RUN_DAYS, KEEP_RUNS, Retention

log = logging.getLogger(__name__)

APP_NAME = "catalog"
SERVER_KINDS = ("jellyfin", "emby", "plex")
TAGGER_KINDS = ("tunabrain", "openai")
MiB = 1024 * 1024
MAX_CHUNK_SIZE = 10_000  # items per transaction: bigger chunks only hold locks longer
MAX_CONCURRENCY = 512  # tagging calls in flight
DEADLINE_TIMEOUTS = 4  # an unset deadline_s: this many timeouts


def default_database_url() -> str:
    """The embedded catalog: a SQLite file in the user data directory."""
    path = platformdirs.user_data_path(APP_NAME) / "catalog.db"
    return f"sqlite:///{path}"


def default_config_path() -> Path:
    return platformdirs.user_config_path(APP_NAME) / "config.toml"


@dataclass(frozen=True)
class ServerConfig:
    """One media server the catalog is fed from."""

    name: str
    url: str
    kind: str = "jellyfin"
    token: str = field(default="", repr=False)
    libraries: tuple[str, ...] = ()
    redirect_hosts: tuple[str, ...] = ()  # other hosts it may redirect to (never given the token)


@dataclass(frozen=True)
class SyncConfig:
    """How a sync pages, chunks, retries and guards against mass deletion."""

    page_size: int = 500
    chunk_size: int = 1000
    mass_delete_share: float = 0.5
    max_page_bytes: int = 64 * MiB
    timeout_s: float = 30.0
    retries: int = 5
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0
    deadline_s: float | None = None  # a request's whole budget; None: DEADLINE_TIMEOUTS x timeout_s
    retry_after_max_s: float = 60.0  # the longest Retry-After honoured


@dataclass(frozen=True)
class TaggerConfig:
    """Where the tagging service is and how hard `catalog retag` may press it."""

    url: str = ""
    kind: str = "tunabrain"
    token: str = field(default="", repr=False)
    model: str = ""
    rate: float = 2.0
    burst: int = 0  # 0: a tenth of a second's worth of calls, at least 1
    concurrency: int = 4
    older_than: str = "30d"
    timeout_s: float = 60.0
    retries: int = 4
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0
    existing_tags: int = 200
    breaker_failures: int = 5
    breaker_cooldown_s: float = 30.0
    breaker_max_opens: int = 3
    batch_size: int = 100
    flush_s: float = 2.0
    max_answer_bytes: int = 1 * MiB
    deadline_s: float | None = None  # a call's whole budget; None: DEADLINE_TIMEOUTS x timeout_s
    retry_after_max_s: float = 60.0
    redirect_hosts: tuple[str, ...] = ()  # other hosts it may redirect to (never given the token)
    # Retag workers sharing a PostgreSQL catalog: how often each renews its registration and
    # claims (and re-reads its share of rate and concurrency), and how long a silent one's
    # claims hold before another worker may take them.
    heartbeat_s: float = 5.0
    lease_s: float = 30.0

    @property
    def effective_burst(self) -> int:
        return self.burst or max(1, round(self.rate / 10))

    @property
    def older_than_s(self) -> float:
        return parse_duration(self.older_than, "tagger.older_than")


@dataclass(frozen=True)
class PushConfig:
    """How hard `catalog push` may press a media server, and how much it may change at once."""

    rate: float = 10.0  # calls per second (reads and writes), across all workers
    burst: int = 0  # 0: a tenth of `rate`, at least 1
    concurrency: int = 4
    max_items: int = 0  # refuse to change more items than this; 0: `max_share` of the library
    max_share: float = 0.5
    batch_size: int = 100  # written items recorded per transaction
    timeout_s: float = 30.0
    retries: int = 5
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0
    deadline_s: float | None = None
    retry_after_max_s: float = 60.0
    breaker_failures: int = 5
    breaker_cooldown_s: float = 30.0
    breaker_max_opens: int = 3

    @property
    def effective_burst(self) -> int:
        return self.burst or max(1, round(self.rate / 10))


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str, name: str) -> float:
    """Seconds in `7d`, `12h`, `90m`, `3600s` or a bare number of seconds."""
    value, unit = text.strip(), "s"
    if value and value[-1].lower() in _UNITS:
        value, unit = value[:-1], value[-1].lower()
    try:
        seconds = float(value) * _UNITS[unit]
    except ValueError:
        raise ConfigError(
            f"{name}: {text!r} is not a duration (examples: 30d, 12h, 90m, 3600s)"
        ) from None
    if seconds < 0:
        raise ConfigError(f"{name}: must not be negative (got {text!r})")
    return seconds


@dataclass(frozen=True)
class Settings:
    """Everything a command needs to know, resolved from file, environment and flags."""

    database_url: str = field(default_factory=default_database_url)
    servers: Mapping[str, ServerConfig] = field(default_factory=dict)
    default_server: str | None = None
    sync: SyncConfig = field(default_factory=SyncConfig)
    tagger: TaggerConfig = field(default_factory=TaggerConfig)
    push: PushConfig = field(default_factory=PushConfig)
    keep_runs: int = KEEP_RUNS
    keep_run_days: int | None = KEEP_RUN_DAYS
    schedule: Mapping[str, str] = field(default_factory=dict)  # job -> cron expression
    config_path: Path | None = None

    @property
    def retention(self) -> Retention:
        """How much run history to keep (pass to finish_run)."""
        return Retention(self.keep_runs, self.keep_run_days or None)

    def server(self, name: str | None = None) -> ServerConfig:
        """The server to work against: by name, else the default, else the only one."""
        name = name or self.default_server
        if name is not None:
            if name not in self.servers:
                known = ", ".join(sorted(self.servers)) or "none"
                raise ConfigError(f"no server named {name!r} is configured (known: {known})")
            return self.servers[name]
        if len(self.servers) == 1:
            return next(iter(self.servers.values()))
        if not self.servers:
            raise ConfigError(
                "no media server is configured: set CATALOG_SERVER_URL and CATALOG_SERVER_TOKEN, "
                f"or add a [servers.NAME] table to {self.config_path or default_config_path()} "
                "(or try `catalog demo`)"
            )
        raise ConfigError(
            "several servers are configured: pick one with --server NAME "
            f"({', '.join(sorted(self.servers))}) or set default_server"
        )


# --- the declared table ------------------------------------------------------------------------
# Every setting's type and bounds, declared once here and enforced wherever a value comes from:
# the TOML file, a CATALOG_* variable or a flag. Each error names that source.


@dataclass(frozen=True)
class Spec:
    """One setting: its type, its bounds, and the variable and flag that may set it."""

    kind: type
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # `low` itself is refused: "must be greater than 0"
    env: str | None = None
    flag: str | None = None
    choices: tuple[str, ...] = ()
    check: Callable[[Any, str], None] | None = None  # raises ConfigError naming the source

    def from_text(self, text: str, source: str) -> Any:
        """A value given as text (an environment variable), typed and checked."""
        if self.kind is str:
            return self.validate(text, source)
        try:
            value = self.kind(text)
        except ValueError:
            raise ConfigError(f"{source}: must be {_type_name(self.kind)} (got {text!r})") from None
        return self.validate(value, source)

    def validate(self, value: Any, source: str) -> Any:
        """The value, coerced int -> float where a number is expected; else a ConfigError."""
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, self.kind) or (self.kind is int and isinstance(value, bool)):
            raise ConfigError(
                f"{source}: must be {_type_name(self.kind)} (got {type(value).__name__} {value!r})"
            )
        if self.kind is list:
            return tuple(str(v) for v in value)
        if self.kind is float and not math.isfinite(value):
            raise ConfigError(f"{source}: must be a finite number (got {value})")
        if problem := self._out_of_bounds(value):
            raise ConfigError(f"{source}: {problem}")
        if self.choices and value not in self.choices:
            raise ConfigError(f"{source}: must be one of {', '.join(self.choices)} (got {value!r})")
        if self.check is not None:
            self.check(value, source)
        return value

    def _out_of_bounds(self, value: Any) -> str | None:
        low, high = self.low, self.high
        if self.kind is float and low is not None and high is not None:  # a share: an interval
            inside = (low < value if self.low_open else low <= value) and value <= high
            opening = "(" if self.low_open else "["
            return None if inside else f"must be in {opening}{_num(low)}, {_num(high)}]"
        if low is not None and (value <= low if self.low_open else value < low):
            if self.low_open:
                return f"must be greater than {_num(low)}"
            return "must not be negative" if low == 0 else f"must be at least {_num(low)}"
        if high is not None and value > high:
            return f"must be at most {_num(high)}"
        return None


def _num(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def _positive(kind: type, **more: Any) -> Spec:
    return Spec(kind, low=0, low_open=True, **more)


def _not_negative(kind: type, **more: Any) -> Spec:
    return Spec(kind, low=0, **more)


def _http_url(value: str, source: str) -> None:
    if value and not value.startswith(("http://", "https://")):
        raise ConfigError(f"{source}: must start with http:// or https://")
    check_no_credentials_in_url(value, source, "the token setting")


def _duration(value: str, source: str) -> None:
    parse_duration(value, source)


SPECS: dict[str, Spec] = {
    "database_url": Spec(str, env="CATALOG_DATABASE_URL", flag="--database-url"),
    "default_server": Spec(str, env="CATALOG_SERVER", flag="--server"),
    "sync.page_size": _positive(int, env="CATALOG_PAGE_SIZE", flag="--page-size"),
    "sync.chunk_size": Spec(
        int, low=0, high=MAX_CHUNK_SIZE, low_open=True, env="CATALOG_CHUNK_SIZE",
        flag="--chunk-size",
    ),
    "sync.mass_delete_share": Spec(float, 0, 1, low_open=True, env="CATALOG_MASS_DELETE_SHARE"),
    "sync.max_page_bytes": _positive(int),
    "sync.timeout_s": _positive(float),
    "sync.retries": _not_negative(int),
    "sync.backoff_s": _not_negative(float),
    "sync.backoff_max_s": _not_negative(float),
    "sync.deadline_s": _positive(float),
    "sync.retry_after_max_s": _not_negative(float),
    "tagger.url": Spec(str, env="CATALOG_TAGGER_URL", check=_http_url),
    "tagger.kind": Spec(str, env="CATALOG_TAGGER_KIND", choices=TAGGER_KINDS),
    "tagger.token": Spec(str, env="CATALOG_TAGGER_TOKEN"),
    "tagger.model": Spec(str, env="CATALOG_TAGGER_MODEL"),
    "tagger.rate": _positive(float, env="CATALOG_TAGGER_RATE", flag="--rate"),
    "tagger.burst": _not_negative(int),
    "tagger.concurrency": Spec(
        int, low=0, high=MAX_CONCURRENCY, low_open=True, env="CATALOG_TAGGER_CONCURRENCY",
        flag="--concurrency",
    ),
    "tagger.older_than": Spec(
        str, env="CATALOG_RETAG_OLDER_THAN", flag="--older-than", check=_duration
    ),
    "tagger.timeout_s": _positive(float),
    "tagger.retries": _not_negative(int),
    "tagger.backoff_s": _not_negative(float),
    "tagger.backoff_max_s": _not_negative(float),
    "tagger.deadline_s": _positive(float),
    "tagger.retry_after_max_s": _not_negative(float),
    "tagger.existing_tags": _not_negative(int),
    "tagger.breaker_failures": _positive(int),
    "tagger.breaker_cooldown_s": _not_negative(float),
    "tagger.breaker_max_opens": _positive(int),
    "tagger.batch_size": _positive(int),
    "tagger.flush_s": _positive(float),
    "tagger.max_answer_bytes": _positive(int),
    "tagger.redirect_hosts": Spec(list),
    # At least a second: a worker's lowered share must outlast the limiter's one-second window
    # before another worker may take what it gave up.
    "tagger.heartbeat_s": Spec(float, low=1, env="CATALOG_RETAG_HEARTBEAT_S"),
    "tagger.lease_s": _positive(float, env="CATALOG_RETAG_LEASE_S"),
    "push.rate": _positive(float, env="CATALOG_PUSH_RATE", flag="--rate"),
    "push.burst": _not_negative(int),
    "push.concurrency": Spec(
        int, low=0, high=MAX_CONCURRENCY, low_open=True, env="CATALOG_PUSH_CONCURRENCY",
        flag="--concurrency",
    ),
    "push.max_items": _not_negative(int, env="CATALOG_PUSH_MAX_ITEMS"),
    "push.max_share": Spec(float, 0, 1, low_open=True),
    "push.batch_size": _positive(int),
    "push.timeout_s": _positive(float),
    "push.retries": _not_negative(int),
    "push.backoff_s": _not_negative(float),
    "push.backoff_max_s": _not_negative(float),
    "push.deadline_s": _positive(float),
    "push.retry_after_max_s": _not_negative(float),
    "push.breaker_failures": _positive(int),
    "push.breaker_cooldown_s": _not_negative(float),
    "push.breaker_max_opens": _positive(int),
    "runs.keep": Spec(int, low=1, env="CATALOG_KEEP_RUNS"),
    "runs.keep_days": _not_negative(int, env="CATALOG_KEEP_DAYS"),
}  # fmt: skip
# Where a dotted setting lives on Settings when that is not the same name.
_ATTRIBUTES = {"runs.keep": "keep_runs", "runs.keep_days": "keep_run_days"}


def load_settings(
    config_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Resolve settings: file < environment < flags (`overrides`, None meaning 'not given').

    An override is named as load_settings is called: `chunk_size` for sync settings,
    `tagger_rate` for tagger settings, `database_url`, `server`; SPECS says which flag it is."""
    env = os.environ if env is None else env
    path = _config_path(config_path, env)
    raw = _read_toml(path) if path else {}
    if path:
        warn_if_token_readable(path, raw)
    where = str(path) if path else "settings"
    settings = _from_mapping(raw, where, path)
    settings = _apply_env(settings, env)
    settings = _apply_overrides(settings, {k: v for k, v in overrides.items() if v is not None})
    settings = _resolve_deadlines(settings)
    _check_tagger(settings.tagger, where)
    secrets = [settings.tagger.token, *(s.token for s in settings.servers.values())]
    add_secrets(*secrets, _db_password(settings.database_url))
    return settings


def _set(settings: Settings, path: str, value: Any) -> Settings:
    """Settings with the dotted setting `path` (a SPECS key) replaced."""
    section, _, name = path.rpartition(".")
    if section in ("sync", "tagger", "push"):
        config = replace(getattr(settings, section), **{name: value})
        return replace(settings, **{section: config})
    return replace(settings, **{_ATTRIBUTES.get(path, path): value})


def _resolve_deadlines(settings: Settings) -> Settings:
    for section in ("sync", "tagger", "push"):
        config = getattr(settings, section)
        if config.deadline_s is None:
            deadline = DEADLINE_TIMEOUTS * config.timeout_s
            settings = _set(settings, f"{section}.deadline_s", deadline)
    return settings


def _config_path(given: Path | None, env: Mapping[str, str]) -> Path | None:
    if given is not None:
        if not given.is_file():
            raise ConfigError(f"config file {given} does not exist")
        return given
    if env.get("CATALOG_CONFIG"):
        path = Path(env["CATALOG_CONFIG"])
        if not path.is_file():
            raise ConfigError(f"CATALOG_CONFIG names {path}, which does not exist")
        return path
    path = default_config_path()
    return path if path.is_file() else None


def _read_toml(path: Path) -> dict[str, Any]:
    import tomllib  # here: most runs have no config file, and every command reads settings

    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc


def _from_mapping(raw: dict[str, Any], where: str, path: Path | None) -> Settings:
    top = {
        "database_url": str, "default_server": str, "sync": dict, "servers": dict, "runs": dict,
        "tagger": dict, "push": dict, "schedule": dict,
    }  # fmt: skip
    _typed(raw, top, where, "")
    settings = Settings(config_path=path)
    for section in ("sync", "tagger", "push", "runs"):
        table = raw.get(section, {})
        _check_keys(table, _section_keys(section), where, f"{section}.")
        for key, value in table.items():
            dotted = f"{section}.{key}"
            settings = _set(settings, dotted, SPECS[dotted].validate(value, f"{where}: {dotted}"))
    for key in ("database_url", "default_server"):
        if key in raw:
            settings = _set(settings, key, SPECS[key].validate(raw[key], f"{where}: {key}"))
    schedule = _typed(raw.get("schedule", {}), dict.fromkeys(JOBS, str), where, "schedule.")
    for job, expression in schedule.items():
        _cron(job, expression, f"{where}: schedule.{job}")
    servers = {name: _server(name, table, where) for name, table in raw.get("servers", {}).items()}
    return replace(settings, servers=servers, schedule=schedule)


def _section_keys(section: str) -> dict[str, type]:
    return {
        path.removeprefix(f"{section}."): spec.kind
        for path, spec in SPECS.items() if path.startswith(f"{section}.")
    }  # fmt: skip


def _db_password(url: str) -> str | None:
    try:
        return make_url(url).password  # type: ignore[return-value]
    except ArgumentError:
        return None


def _server(name: str, table: Any, where: str) -> ServerConfig:
    prefix = f"servers.{name}."
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: servers.{name}: must be a table")
    types = {"url": str, "kind": str, "token": str, "libraries": list, "redirect_hosts": list}
    values = _typed(table, types, where, prefix)
    if "url" not in values:
        raise ConfigError(f"{where}: {prefix}url: missing (the server's base URL)")
    for key in ("libraries", "redirect_hosts"):
        if key in values:
            values[key] = tuple(str(v) for v in values[key])
    server = ServerConfig(name=name, **values)
    _check_server(server, f"{where}: {prefix}")
    return server


def _check_server(server: ServerConfig, prefix: str, env_style: bool = False) -> None:
    kind, url = ("KIND", "URL") if env_style else ("kind", "url")
    if server.kind not in SERVER_KINDS:
        raise ConfigError(
            f"{prefix}{kind}: must be one of {', '.join(SERVER_KINDS)} (got {server.kind!r})"
        )
    if not server.url.startswith(("http://", "https://")):
        raise ConfigError(f"{prefix}{url}: must start with http:// or https://")
    check_no_credentials_in_url(
        server.url, f"{prefix}{url}", f"{prefix}{'TOKEN' if env_style else 'token'}"
    )


def _check_tagger(tagger: TaggerConfig, where: str) -> None:
    """What no single value shows: the checks that need two settings."""
    if tagger.kind == "openai" and not tagger.model:
        raise ConfigError(f"{where}: tagger.model: required for the openai kind")
    if tagger.lease_s < 2 * tagger.heartbeat_s:
        raise ConfigError(
            f"{where}: tagger.lease_s: must be at least twice tagger.heartbeat_s "
            f"({tagger.lease_s:g} < 2 x {tagger.heartbeat_s:g}): a live worker would lose "
            "its claims"
        )


def _check_keys(raw: Mapping[str, Any], types: Mapping[str, type], where: str, prefix: str) -> None:
    for key in raw:
        if key not in types:
            known = ", ".join(sorted(types))
            raise ConfigError(f"{where}: {prefix}{key}: unknown key (expected one of {known})")


def _typed(
    raw: Mapping[str, Any], types: Mapping[str, type], where: str, prefix: str
) -> dict[str, Any]:
    _check_keys(raw, types, where, prefix)
    out = {}
    for key, value in raw.items():
        expected = types[key]
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ConfigError(
                f"{where}: {prefix}{key}: must be {_type_name(expected)} "
                f"(got {type(value).__name__} {value!r})"
            )
        out[key] = value
    return out


def _type_name(t: type) -> str:
    return {int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table"}[
        t
    ]


ENV_SERVER = ("CATALOG_SERVER_URL", "CATALOG_SERVER_KIND", "CATALOG_SERVER_TOKEN")


def _apply_env(settings: Settings, env: Mapping[str, str]) -> Settings:
    for path, spec in SPECS.items():
        if spec.env and env.get(spec.env):
            settings = _set(settings, path, spec.from_text(env[spec.env], spec.env))
    if any(env.get(var) for var in ENV_SERVER):
        settings = _env_server(settings, env)
    return _env_schedule(settings, env)


def _env_schedule(settings: Settings, env: Mapping[str, str]) -> Settings:
    """CATALOG_SCHEDULE_<JOB> replaces [schedule] <job>."""
    schedule = dict(settings.schedule)
    for job in JOBS:
        var = f"CATALOG_SCHEDULE_{job.upper()}"
        if env.get(var):
            schedule[job] = _cron(job, env[var], var)
    return replace(settings, schedule=schedule)


def _cron(job: str, expression: str, where: str) -> str:
    """catalog.schedule.check_expression, imported only when there is an expression to check:
    the scheduler and croniter cost every command's start-up more than the settings do."""
    from catalog.schedule import check_expression

    return check_expression(job, expression, where)


def _env_server(settings: Settings, env: Mapping[str, str]) -> Settings:
    """CATALOG_SERVER_* refine the selected server, or define one named 'default'."""
    try:
        base = settings.server()
    except ConfigError:
        if settings.servers and not env.get("CATALOG_SERVER_URL"):
            raise
        base = ServerConfig(name=settings.default_server or "default", url="")
    changes = {
        "url": env.get("CATALOG_SERVER_URL") or base.url,
        "kind": env.get("CATALOG_SERVER_KIND") or base.kind,
        "token": env.get("CATALOG_SERVER_TOKEN") or base.token,
    }
    server = replace(base, **changes)
    if not server.url:
        raise ConfigError("CATALOG_SERVER_URL: missing (the media server's base URL)")
    _check_server(server, "CATALOG_SERVER_", env_style=True)
    servers = {**settings.servers, server.name: server}
    return replace(settings, servers=servers, default_server=server.name)


def _apply_overrides(settings: Settings, overrides: dict[str, Any]) -> Settings:
    for key, value in overrides.items():
        path = _override_path(key)
        spec = SPECS[path]
        flag = spec.flag or "--" + key.replace("_", "-")
        settings = _set(settings, path, spec.validate(value, flag))
    return settings


def _override_path(key: str) -> str:
    """The SPECS key of a load_settings override (`chunk_size`, `tagger_rate`, `server`)."""
    if key in ("server", "database_url"):
        return {"server": "default_server"}.get(key, key)
    candidates = (
        f"sync.{key}",
        key.replace("tagger_", "tagger.", 1),
        key.replace("push_", "push.", 1),
    )
    for path in candidates:
        if path in SPECS:
            return path
    raise TypeError(f"unknown setting override: {key}")


def check_no_credentials_in_url(url: str, setting: str, token_setting: str) -> None:
    """Refuse a user name or password in a server or tagger URL: it would travel to every
    redirect target and show up wherever the URL is shown. The URL is not repeated."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ConfigError(f"{setting}: not a valid URL") from None
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            f"{setting}: holds a user name or password (user:password@host); remove it and "
            f"put the token in {token_setting}"
        )


def warn_if_token_readable(path: Path, raw: Mapping[str, Any]) -> None:
    """One warning when a config file holding a token can be read by group or others."""
    tables = [raw.get("tagger"), *dict(raw.get("servers") or {}).values()]
    if not any(isinstance(t, dict) and t.get("token") for t in tables):
        return
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & 0o077:
        log.warning(
            "%s holds a token and is readable by group or others; run: chmod 600 %s", path, path
        )
