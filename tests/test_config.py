"""Settings: file < environment < flags, and one clear line for each mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from catalog.config import load_settings
from catalog.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalog.toml"
    path.write_text(text)
    return path


FILE = """
database_url = "sqlite:////tmp/from-file.db"
default_server = "home"

[sync]
chunk_size = 200

[servers.home]
url = "http://jellyfin.lan:8096"
token = "file-token"
libraries = ["Movies"]

[servers.cabin]
kind = "emby"
url = "http://cabin.lan:8096/emby"
token = "cabin-token"
"""


def test_file_declares_servers_and_the_default_is_picked(tmp_path):
    settings = load_settings(write(tmp_path, FILE), env={})
    home = settings.server()
    assert (home.name, home.kind, home.url, home.libraries) == (
        "home", "jellyfin", "http://jellyfin.lan:8096", ("Movies",),
    )  # fmt: skip
    assert settings.server("cabin").kind == "emby"
    assert settings.sync.chunk_size == 200 and settings.sync.page_size == 500


def test_environment_overrides_file_and_flags_override_both(tmp_path):
    env = {"CATALOG_DATABASE_URL": "sqlite:////tmp/env.db", "CATALOG_CHUNK_SIZE": "300"}
    settings = load_settings(write(tmp_path, FILE), env=env)
    assert settings.database_url == "sqlite:////tmp/env.db"
    assert settings.sync.chunk_size == 300
    flags = load_settings(
        write(tmp_path, FILE), env=env, database_url="sqlite:////tmp/flag.db", chunk_size=50
    )
    assert flags.database_url == "sqlite:////tmp/flag.db" and flags.sync.chunk_size == 50


def test_server_flag_picks_another_server(tmp_path):
    settings = load_settings(write(tmp_path, FILE), env={}, server="cabin")
    assert settings.server().name == "cabin"


def test_server_environment_refines_the_selected_server(tmp_path):
    env = {"CATALOG_SERVER_TOKEN": "env-token"}
    server = load_settings(write(tmp_path, FILE), env=env).server()
    assert (server.name, server.url, server.token) == (
        "home", "http://jellyfin.lan:8096", "env-token",
    )  # fmt: skip


def test_environment_alone_defines_a_server(tmp_path):
    env = {"CATALOG_SERVER_URL": "http://127.0.0.1:8096", "CATALOG_SERVER_TOKEN": "t"}
    server = load_settings(env=env).server()
    assert (server.name, server.kind, server.url) == (
        "default",
        "jellyfin",
        "http://127.0.0.1:8096",
    )


def test_config_file_from_environment_variable(tmp_path):
    path = write(tmp_path, FILE)
    assert load_settings(env={"CATALOG_CONFIG": str(path)}).default_server == "home"


def test_token_is_not_in_the_repr(tmp_path):
    assert "file-token" not in repr(load_settings(write(tmp_path, FILE), env={}))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("databse_url = 'x'", "databse_url: unknown key"),
        ("[sync]\nchunk_size = 'big'", "sync.chunk_size: must be an integer (got str 'big')"),
        ("[sync]\nchunk_size = 0", "sync.chunk_size: must be greater than 0"),
        ("[sync]\nmass_delete_share = 1.5", "sync.mass_delete_share: must be in (0, 1]"),
        ("[servers.a]\nurl = 'http://x'\nkind = 'kodi'", "servers.a.kind: must be one of"),
        ("[servers.a]\nkind = 'emby'", "servers.a.url: missing"),
        ("[servers.a]\nurl = 'jellyfin.lan'", "servers.a.url: must start with http://"),
        ("[servers.a]\nurl = 'http://x'\ncolour = 1", "servers.a.colour: unknown key"),
        ("this is = not toml =", "not valid TOML"),
    ],
    ids=["typo", "type", "zero", "share", "kind", "no-url", "url", "server-key", "toml"],
)
def test_invalid_config_names_the_key_and_the_problem(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    assert message in str(caught.value)
    assert str(path) in str(caught.value) or "TOML" in str(caught.value)


def test_bad_environment_value_names_the_variable():
    with pytest.raises(ConfigError, match="CATALOG_CHUNK_SIZE: must be an integer"):
        load_settings(env={"CATALOG_CHUNK_SIZE": "lots"})


def test_missing_server_tells_how_to_configure_one():
    with pytest.raises(ConfigError, match=r"CATALOG_SERVER_URL.*catalog demo"):
        load_settings(env={}).server()


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", env={})


def test_bad_server_environment_names_the_variable():
    env = {"CATALOG_SERVER_URL": "http://x", "CATALOG_SERVER_KIND": "kodi"}
    with pytest.raises(ConfigError, match="CATALOG_SERVER_KIND: must be one of jellyfin, emby"):
        load_settings(env=env)


def test_the_readme_config_example_loads(tmp_path: Path) -> None:
    """The documented config file is a valid one, with every key the code knows."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    example = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "config.toml"
    path.write_text(example)
    settings = load_settings(path, env={})
    assert settings.tagger.url == "http://tunabrain.lan:8000"
    assert settings.tagger.older_than_s == 30 * 86400
    assert set(settings.servers) == {"home", "cabin"}
