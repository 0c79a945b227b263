"""The settings layer: one declared table of types and bounds, enforced for the file, the
environment and the flags alike, each error naming where the value came from."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from catalog.config import SPECS, SyncConfig, TaggerConfig, load_settings
from catalog.db.models import MEDIA, RUN
from catalog.errors import ConfigError


def refused(message: str, config: Path | None = None, env: dict[str, str] | None = None,
            **flags: Any) -> str:  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        load_settings(config, env=env or {}, **flags)
    text = str(caught.value)
    assert message in text
    assert "\n" not in text
    return text


# -- the file --------------------------------------------------------------------------------

FILE_CASES = {
    "bound": ("[sync]\nchunk_size = 50000", "sync.chunk_size: must be at most 10000"),
    "bound-low": ("[sync]\npage_size = 0", "sync.page_size: must be greater than 0"),
    "nan-timeout": ("[tagger]\ntimeout_s = nan", "tagger.timeout_s: must be a finite number"),
    "nan-rate": ("[tagger]\nrate = nan", "tagger.rate: must be a finite number (got nan)"),
    "nan-flush": ("[tagger]\nflush_s = nan", "tagger.flush_s: must be a finite number"),
    "inf": ("[sync]\ntimeout_s = inf", "sync.timeout_s: must be a finite number (got inf)"),
    "inf-int": ("[sync]\nchunk_size = inf", "sync.chunk_size: must be an integer (got float inf)"),
    "type": ("[tagger]\nconcurrency = 'many'", "tagger.concurrency: must be an integer"),
    "type-bool": ("[sync]\nretries = true", "sync.retries: must be an integer (got bool True)"),
    "negative": ("[tagger]\nretry_after_max_s = -1", "tagger.retry_after_max_s: must not be"),
    "deadline": ("[sync]\ndeadline_s = 0", "sync.deadline_s: must be greater than 0"),
    "keep": ("[runs]\nkeep = 0", "runs.keep: must be at least 1"),
}


@pytest.mark.parametrize(("text", "message"), FILE_CASES.values(), ids=FILE_CASES.keys())
def test_a_bad_file_value_names_the_file_and_the_key(tmp_path: Path, text: str, message: str):
    path = tmp_path / "catalog.toml"
    path.write_text(text)
    assert refused(message, path).startswith(f"{path}: ")


# -- the environment -------------------------------------------------------------------------

ENV_CASES = {
    "bound": ("CATALOG_TAGGER_CONCURRENCY", "9999", "must be at most 512"),
    "bound-low": ("CATALOG_PAGE_SIZE", "0", "must be greater than 0"),
    "share": ("CATALOG_MASS_DELETE_SHARE", "1.5", "must be in (0, 1]"),
    "nan": ("CATALOG_TAGGER_RATE", "nan", "must be a finite number (got nan)"),
    "inf": ("CATALOG_MASS_DELETE_SHARE", "inf", "must be a finite number (got inf)"),
    "type": ("CATALOG_CHUNK_SIZE", "lots", "must be an integer (got 'lots')"),
    "type-float": ("CATALOG_PAGE_SIZE", "2.5", "must be an integer (got '2.5')"),
    "keep": ("CATALOG_KEEP_RUNS", "0", "must be at least 1"),
    "kind": ("CATALOG_TAGGER_KIND", "gpt", "must be one of tunabrain, openai"),
    "duration": ("CATALOG_RETAG_OLDER_THAN", "soon", "'soon' is not a duration"),
}


@pytest.mark.parametrize(("var", "value", "message"), ENV_CASES.values(), ids=ENV_CASES.keys())
def test_a_bad_environment_value_names_the_variable(var: str, value: str, message: str):
    assert refused(message, env={var: value}).startswith(f"{var}: ")


def test_the_environment_is_held_to_the_bounds_the_file_is_held_to(tmp_path: Path):
    """What the flags refused and the file or the environment let through, before."""
    path = tmp_path / "catalog.toml"
    path.write_text("[sync]\nchunk_size = 50000")
    refused(f"{path}: sync.chunk_size: must be at most 10000", path)
    refused("CATALOG_CHUNK_SIZE: must be at most 10000", env={"CATALOG_CHUNK_SIZE": "50000"})
    refused("--chunk-size: must be at most 10000", chunk_size=50000)


# -- the flags ---------------------------------------------------------------------------------

FLAG_CASES = {
    "bound": ({"chunk_size": 50000}, "--chunk-size: must be at most 10000"),
    "bound-low": ({"page_size": 0}, "--page-size: must be greater than 0"),
    "concurrency": ({"tagger_concurrency": 513}, "--concurrency: must be at most 512"),
    "nan": ({"tagger_rate": float("nan")}, "--rate: must be a finite number (got nan)"),
    "inf": ({"tagger_rate": float("inf")}, "--rate: must be a finite number (got inf)"),
    "type": ({"tagger_concurrency": "8"}, "--concurrency: must be an integer (got str '8')"),
    "duration": ({"tagger_older_than": "soon"}, "--older-than: 'soon' is not a duration"),
    "undeclared-flag": ({"tagger_deadline_s": -1.0}, "--tagger-deadline-s: must be greater than"),
}


@pytest.mark.parametrize(("flags", "message"), FLAG_CASES.values(), ids=FLAG_CASES.keys())
def test_a_bad_flag_value_names_the_flag(flags: dict[str, Any], message: str):
    assert refused(message, **flags).startswith("--")


def test_an_unknown_override_is_a_programming_error():
    with pytest.raises(TypeError, match="chunk_sise"):
        load_settings(env={}, chunk_sise=5)


# -- the table ---------------------------------------------------------------------------------


def test_every_sync_and_tagger_field_is_declared_once():
    for section, cls in (("sync", SyncConfig), ("tagger", TaggerConfig)):
        declared = {k.removeprefix(f"{section}.") for k in SPECS if k.startswith(f"{section}.")}
        assert declared == {f.name for f in fields(cls)}, section


def test_deadlines_default_to_four_timeouts_unless_set(tmp_path: Path):
    settings = load_settings(env={})
    assert settings.sync.deadline_s == 4 * settings.sync.timeout_s == 120.0
    assert settings.tagger.deadline_s == 4 * settings.tagger.timeout_s
    assert (settings.sync.retry_after_max_s, settings.tagger.retry_after_max_s) == (60.0, 60.0)
    path = tmp_path / "catalog.toml"
    path.write_text("[sync]\ntimeout_s = 5\n[tagger]\ndeadline_s = 7\nretry_after_max_s = 0\n")
    settings = load_settings(path, env={})
    assert (settings.sync.deadline_s, settings.tagger.deadline_s) == (20.0, 7.0)
    assert settings.tagger.retry_after_max_s == 0.0


def test_good_values_from_every_source_still_win_in_order(tmp_path: Path):
    path = tmp_path / "catalog.toml"
    path.write_text("[sync]\nchunk_size = 10000\n[tagger]\nconcurrency = 512\nrate = 1\n")
    env = {"CATALOG_TAGGER_RATE": "2.5", "CATALOG_CHUNK_SIZE": "1"}
    settings = load_settings(path, env=env, tagger_concurrency=1)
    assert (settings.sync.chunk_size, settings.tagger.rate, settings.tagger.concurrency) == (
        1, 2.5, 1,
    )  # fmt: skip


# -- the commands ------------------------------------------------------------------------------


def counts(engine: Any) -> tuple[int, int]:
    with engine.connect() as conn:
        runs = conn.execute(select(func.count()).select_from(RUN)).scalar_one()
        media = conn.execute(select(func.count()).select_from(MEDIA)).scalar_one()
    return runs, media


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["sync", "--chunk-size", "50000"], {}, "--chunk-size: must be at most 10000"),
        (["sync", "--chunk-size", "0"], {}, "--chunk-size: must be greater than 0"),
        (["sync"], {"CATALOG_PAGE_SIZE": "0"}, "CATALOG_PAGE_SIZE: must be greater than 0"),
        (["retag", "--rate", "nan"], {}, "--rate: must be a finite number (got nan)"),
        (["retag", "--concurrency", "9999"], {}, "--concurrency: must be at most 512"),
        (["retag"], {"CATALOG_TAGGER_CONCURRENCY": "9999"}, "CATALOG_TAGGER_CONCURRENCY: must"),
    ],
    ids=["chunk-high", "chunk-zero", "env-page", "rate-nan", "concurrency", "env-concurrency"],
)
def test_a_command_refuses_a_bad_setting_in_one_line_and_writes_nothing(
    cli: Any, engine: Any, args: list[str], env: dict[str, str], message: str
):
    env = {"CATALOG_TAGGER_URL": "http://127.0.0.1:9", **env}
    out = cli(*args, env=env)
    assert out.exit_code == 2
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert counts(engine) == (0, 0)


def test_a_nan_timeout_in_the_file_stops_the_retag_before_it_starts(
    cli: Any, engine: Any, tmp_path: Path
):
    assert cli("sync", "--quiet").exit_code == 0
    before = counts(engine)
    path = tmp_path / "catalog.toml"
    path.write_text('[tagger]\nurl = "http://127.0.0.1:9"\ntimeout_s = nan\n')
    out = cli("retag", "--config", str(path))
    assert out.exit_code == 2
    assert f"{path}: tagger.timeout_s: must be a finite number (got nan)" in out.stderr
    assert counts(engine) == before  # no retag run recorded
