"""Settings: a TOML file, overridden by CATALOG_* environment variables, overridden by flags.

Every problem is reported as one ConfigError line naming the file, the key and what is wrong.
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import platformdirs
from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError

from catalog.errors import ConfigError
from catalog.logs import add_secrets
from catalog.runs import Retention
from catalog.schedule import JOBS, check_expression

log = logging.getLogger(__name__)

APP_NAME = "catalog"
SERVER_KINDS = ("jellyfin", "emby")
TAGGER_KINDS = ("tunabrain", "openai")
MiB = 1024 * 1024


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
    retry_after_max_s: float = 60.0  # a longer Retry-After fails the request at once
    deadline_s: float = 0.0  # one attempt, connect to last byte; 0: 4 x timeout_s


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
    retry_after_max_s: float = 60.0  # a longer Retry-After fails the call at once
    deadline_s: float = 0.0  # one attempt, connect to last byte; 0: 4 x timeout_s
    redirect_hosts: tuple[str, ...] = ()  # other hosts it may redirect to (never given the token)

    @property
    def effective_burst(self) -> int:
        return self.burst or max(1, round(self.rate / 10))

    @property
    def older_than_s(self) -> float:
        return parse_duration(self.older_than, "tagger.older_than")


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
    keep_runs: int = 500
    keep_run_days: int | None = 90
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


def load_settings(
    config_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Resolve settings: file < environment < flags (`overrides`, None meaning 'not given')."""
    env = os.environ if env is None else env
    path = _config_path(config_path, env)
    raw = _read_toml(path) if path else {}
    if path:
        warn_if_token_readable(path, raw)
    where = str(path) if path else "settings"
    settings = _from_mapping(raw, where, path)
    settings = _apply_env(settings, env)
    settings = _apply_overrides(settings, {k: v for k, v in overrides.items() if v is not None})
    _check_sync(settings.sync, where)
    _check_tagger(settings.tagger, where)
    _check_runs(settings, where)
    secrets = [settings.tagger.token, *(s.token for s in settings.servers.values())]
    add_secrets(*secrets, _db_password(settings.database_url))
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
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc


def _from_mapping(raw: dict[str, Any], where: str, path: Path | None) -> Settings:
    top = {
        "database_url": str, "default_server": str, "sync": dict, "servers": dict, "runs": dict,
        "tagger": dict, "schedule": dict,
    }  # fmt: skip
    _check_keys(raw, top, where, "")
    sync_raw = raw.get("sync", {})
    sync = SyncConfig(**_typed(sync_raw, _field_types(SyncConfig), where, "sync."))
    tagger_raw = raw.get("tagger", {})
    tagger_values = _typed(tagger_raw, _field_types(TaggerConfig), where, "tagger.")
    if "redirect_hosts" in tagger_values:
        tagger_values["redirect_hosts"] = tuple(str(v) for v in tagger_values["redirect_hosts"])
    tagger = TaggerConfig(**tagger_values)
    runs = _typed(raw.get("runs", {}), {"keep": int, "keep_days": int}, where, "runs.")
    schedule = _typed(raw.get("schedule", {}), dict.fromkeys(JOBS, str), where, "schedule.")
    for job, expression in schedule.items():
        check_expression(job, expression, f"{where}: schedule.{job}")
    servers = {name: _server(name, table, where) for name, table in raw.get("servers", {}).items()}
    settings = Settings(
        servers=servers, sync=sync, tagger=tagger, schedule=schedule, config_path=path
    )
    if "database_url" in raw:
        settings = replace(settings, database_url=_typed(raw, top, where, "")["database_url"])
    if "default_server" in raw:
        settings = replace(settings, default_server=raw["default_server"])
    if "keep" in runs:
        settings = replace(settings, keep_runs=runs["keep"])
    if "keep_days" in runs:
        settings = replace(settings, keep_run_days=runs["keep_days"])
    return settings


def _check_runs(settings: Settings, where: str) -> None:
    if settings.keep_runs < 1:
        raise ConfigError(f"{where}: runs.keep: must be at least 1")
    if settings.keep_run_days is not None and settings.keep_run_days < 0:
        raise ConfigError(f"{where}: runs.keep_days: must not be negative (0: no age limit)")


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


def _check_sync(sync: SyncConfig, where: str) -> None:
    positive = ("page_size", "chunk_size", "max_page_bytes", "timeout_s", "retry_after_max_s")
    for name in positive:
        if getattr(sync, name) <= 0:
            raise ConfigError(f"{where}: sync.{name}: must be greater than 0")
    if sync.deadline_s < 0:
        raise ConfigError(f"{where}: sync.deadline_s: must not be negative (0: 4 x timeout_s)")
    if not 0 < sync.mass_delete_share <= 1:
        raise ConfigError(f"{where}: sync.mass_delete_share: must be in (0, 1]")
    if sync.retries < 0:
        raise ConfigError(f"{where}: sync.retries: must not be negative")


def _check_tagger(tagger: TaggerConfig, where: str) -> None:
    if tagger.kind not in TAGGER_KINDS:
        raise ConfigError(
            f"{where}: tagger.kind: must be one of {', '.join(TAGGER_KINDS)} (got {tagger.kind!r})"
        )
    if tagger.kind == "openai" and not tagger.model:
        raise ConfigError(f"{where}: tagger.model: required for the openai kind")
    if tagger.url and not tagger.url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: tagger.url: must start with http:// or https://")
    check_no_credentials_in_url(tagger.url, f"{where}: tagger.url", "tagger.token")
    positive = ("rate", "concurrency", "timeout_s", "batch_size", "flush_s", "max_answer_bytes",
                "breaker_failures", "breaker_max_opens", "retry_after_max_s")  # fmt: skip
    for name in positive:
        if getattr(tagger, name) <= 0:
            raise ConfigError(f"{where}: tagger.{name}: must be greater than 0")
    for name in ("burst", "retries", "existing_tags", "breaker_cooldown_s", "deadline_s"):
        if getattr(tagger, name) < 0:
            raise ConfigError(f"{where}: tagger.{name}: must not be negative")
    tagger.older_than_s  # noqa: B018 -- parses, raising ConfigError naming the setting


def _field_types(cls: type) -> dict[str, type]:
    kinds = {"int": int, "float": float, "str": str, "tuple[str, ...]": list}
    return {f.name: kinds[str(f.type)] for f in fields(cls)}


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
    if env.get("CATALOG_DATABASE_URL"):
        settings = replace(settings, database_url=env["CATALOG_DATABASE_URL"])
    if env.get("CATALOG_SERVER"):
        settings = replace(settings, default_server=env["CATALOG_SERVER"])
    sync_env = {
        "CATALOG_PAGE_SIZE": "page_size",
        "CATALOG_CHUNK_SIZE": "chunk_size",
        "CATALOG_MASS_DELETE_SHARE": "mass_delete_share",
    }
    for var, name in sync_env.items():
        if env.get(var):
            settings = _set_from_env(settings, "sync", name, env[var], var)
    for name in ("url", "kind", "token", "model", "rate", "concurrency"):
        var = f"CATALOG_TAGGER_{name.upper()}"
        if env.get(var):
            settings = _set_from_env(settings, "tagger", name, env[var], var)
    if older := env.get("CATALOG_RETAG_OLDER_THAN"):
        var = "CATALOG_RETAG_OLDER_THAN"
        settings = _set_from_env(settings, "tagger", "older_than", older, var)
    if any(env.get(var) for var in ENV_SERVER):
        settings = _env_server(settings, env)
    return _env_schedule(settings, env)


def _env_schedule(settings: Settings, env: Mapping[str, str]) -> Settings:
    """CATALOG_SCHEDULE_<JOB> replaces [schedule] <job>; CATALOG_KEEP_RUNS / _DAYS, [runs]."""
    schedule = dict(settings.schedule)
    for job in JOBS:
        var = f"CATALOG_SCHEDULE_{job.upper()}"
        if env.get(var):
            schedule[job] = check_expression(job, env[var], var)
    settings = replace(settings, schedule=schedule)
    for var, name in (("CATALOG_KEEP_RUNS", "keep_runs"), ("CATALOG_KEEP_DAYS", "keep_run_days")):
        if env.get(var):
            try:
                settings = replace(settings, **{name: int(env[var])})
            except ValueError:
                raise ConfigError(f"{var}: must be an integer (got {env[var]!r})") from None
    return settings


def _set_from_env(settings: Settings, section: str, name: str, text: str, var: str) -> Settings:
    config = getattr(settings, section)
    kind = _field_types(type(config))[name]
    try:
        value = kind(text)
    except ValueError:
        raise ConfigError(f"{var}: must be {_type_name(kind)} (got {text!r})") from None
    return replace(settings, **{section: replace(config, **{name: value})})


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
    if "database_url" in overrides:
        settings = replace(settings, database_url=overrides.pop("database_url"))
    if "server" in overrides:
        settings = replace(settings, default_server=overrides.pop("server"))
    sync_fields = {f.name for f in fields(SyncConfig)}
    sync_changes = {k: overrides.pop(k) for k in list(overrides) if k in sync_fields}
    tagger_changes = {
        k.removeprefix("tagger_"): overrides.pop(k) for k in list(overrides)
        if k.startswith("tagger_")
    }  # fmt: skip
    if overrides:
        raise TypeError(f"unknown setting overrides: {sorted(overrides)}")
    return replace(
        settings,
        sync=replace(settings.sync, **sync_changes),
        tagger=replace(settings.tagger, **tagger_changes),
    )


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
