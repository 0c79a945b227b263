"""The command line itself: shell completion, closed sets of values, help text that survives
rich's markup, natural usage lines, and usage errors in one line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer._types import TyperChoice
from typer.main import get_command
from typer.testing import CliRunner

from catalog.cli import app
from catalog.config import SERVER_KINDS
from catalog.items import MEDIA_KINDS
from catalog.runs import COMMANDS

CATALOG = str(Path(sys.executable).with_name("catalog"))  # the console script, as a shell runs it


def run_catalog(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CATALOG, *args], capture_output=True, text=True, env={**os.environ, **(env or {})},
        timeout=60, check=False,
    )  # fmt: skip


def invoke(args: list[str], env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(app, args, env=env, prog_name="catalog")


def all_commands(group: Any, prefix: tuple[str, ...] = ()) -> Any:
    yield prefix, group
    for name, command in getattr(group, "commands", {}).items():
        yield from all_commands(command, (*prefix, name))


COMMAND_PATHS = [path for path, _ in all_commands(get_command(app))]


# -- shell completion ---------------------------------------------------------------------------

# Typer detects the shell on its own; this switch (Typer's) makes it take the shell named.
NAMED_SHELL = {"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}


@pytest.mark.parametrize(
    ("shell", "hook"),
    [("bash", "complete -o default -F _catalog_completion catalog"),
     ("zsh", "compdef _catalog_completion catalog")],
    ids=["bash", "zsh"],
)  # fmt: skip
def test_show_completion_prints_a_script_calling_the_program_back(shell: str, hook: str):
    out = run_catalog("--show-completion", shell, env=NAMED_SHELL)
    assert out.returncode == 0, out.stderr
    assert f"_CATALOG_COMPLETE=complete_{shell}" in out.stdout
    assert hook in out.stdout.splitlines()


def bash_completions(line: str) -> list[str]:
    """What bash would offer for `line`, through the protocol the script above speaks."""
    words = line.split(" ")
    env = {"_CATALOG_COMPLETE": "complete_bash", "COMP_WORDS": line,
           "COMP_CWORD": str(len(words) - 1)}  # fmt: skip
    out = run_catalog(env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


@pytest.mark.parametrize(
    ("line", "offered"),
    [("catalog me", ["media"]), ("catalog media l", ["list"]),
     ("catalog media list --so", ["--sort"]),
     ("catalog media list --kind ", sorted(MEDIA_KINDS)),
     ("catalog media list --kind m", ["movie", "musicvideo"]),
     ("catalog status --job ", list(COMMANDS))],
    ids=["command", "subcommand", "option", "kinds", "kinds-prefix", "jobs"],
)  # fmt: skip
def test_bash_completion_offers_commands_options_and_values(line: str, offered: list[str]):
    assert bash_completions(line) == offered


def test_zsh_completion_offers_the_command_with_its_help():
    env = {"_CATALOG_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "catalog me"}
    out = run_catalog(env=env)
    assert out.returncode == 0 and '"media":"The catalog' in out.stdout


# -- closed sets --------------------------------------------------------------------------------

CLOSED_SETS = [
    (["media", "list", "--kind", "film"], "--kind", "film", MEDIA_KINDS),
    (["media", "list", "--sort", "popularity"], "--sort", "popularity",
     ("name", "year", "added", "rating")),
    (["media", "list", "--format", "xml"], "--format", "xml", ("table", "json", "ndjson", "csv")),
    (["tags", "--format", "xml"], "--format", "xml", ("table", "json", "ndjson", "csv")),
    (["tags", "--order", "size"], "--order", "size", ("count", "name")),
    (["status", "--job", "backup"], "--job", "backup", COMMANDS),
    (["sync", "--log-format", "xml"], "--log-format", "xml", ("text", "json")),
    (["retag", "--log-format", "xml"], "--log-format", "xml", ("text", "json")),
    (["schedule", "run", "--log-format", "xml"], "--log-format", "xml", ("text", "json")),
    (["demo", "--kind", "kodi"], "--kind", "kodi", SERVER_KINDS),
    (["--show-completion", "tcsh"], "--show-completion", "tcsh",
     ("bash", "zsh", "fish", "powershell", "pwsh")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "flag", "value", "valid"), CLOSED_SETS,
    ids=["media-kind", "media-sort", "media-format", "tags-format", "tags-order", "status-job",
         "sync-log-format", "retag-log-format", "schedule-run-log-format", "demo-kind",
         "completion-shell"],
)  # fmt: skip
def test_a_value_outside_a_closed_set_is_one_line_naming_the_valid_ones(
    args: list[str], flag: str, value: str, valid: tuple[str, ...], tmp_path: Path, monkeypatch: Any
):
    # Typer reads it when it builds the command, before CliRunner sets its env.
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    out = invoke(args, env={"CATALOG_DATABASE_URL": url})
    assert out.exit_code == 2
    assert out.stderr.splitlines() == [f"error: {flag} {value!r} is not one of: {', '.join(valid)}"]
    assert out.stdout == "" and not (tmp_path / "catalog.db").exists()


def test_every_option_with_a_fixed_set_of_values_is_a_closed_set():
    """An option whose help lists its values by hand ("a, b or c") would accept anything: such
    options are enums, whose values --help and completion take from the declaration."""
    for path, command in all_commands(get_command(app)):
        for param in command.params:
            by_hand = re.search(r"\b\w+, \w+ or \w+\b", param.help or "")
            assert not by_hand or isinstance(param.type, TyperChoice), (path, param.name)


def test_kinds_are_declared_once_for_every_source():
    from catalog.sources.jellyfin import ITEM_TYPES
    from catalog.sources.plex import KINDS

    assert {t.lower() for t in ITEM_TYPES} == set(MEDIA_KINDS)
    assert set(KINDS.values()) <= set(MEDIA_KINDS)


def test_kind_filter_takes_any_case_and_filters(cli: Any):
    cli("sync", "--quiet")
    out = cli("media", "list", "--kind", "Series", "--limit", "1000", "--format", "json")
    kinds = {item["kind"] for item in out.json()["items"]}
    assert out.exit_code == 0 and kinds == {"series"}


def test_every_run_command_is_a_known_one(cli: Any, engine: Any):
    from sqlalchemy import select

    from catalog.db.models import RUN

    cli("sync", "--quiet")
    cli("tags", "normalize", "--quiet")
    with engine.connect() as conn:
        recorded = set(conn.execute(select(RUN.c.command)).scalars())
    assert recorded == {"sync", "normalize"} and recorded <= set(COMMANDS)
    assert [r["command"] for r in cli("status", "--job", "normalize", "--json").json()["runs"]] == [
        "normalize"
    ]


# -- help text ----------------------------------------------------------------------------------

WIDE = {"COLUMNS": "200", "TERMINAL_WIDTH": "200"}
_BOX = re.compile(r"[│╭╮╰╯─]")


def help_of(path: tuple[str, ...]) -> str:
    out = invoke([*path, "--help"], env=WIDE)
    assert out.exit_code == 0, out.stderr
    return " ".join(_BOX.sub(" ", out.stdout).split())


def usage_of(path: tuple[str, ...]) -> str:
    lines = invoke([*path, "--help"], env=WIDE).stdout.splitlines()
    return next(line.strip() for line in lines if line.strip().startswith("Usage:"))


def bracketed(text: str | None) -> list[str]:
    """The [bracketed] parts of a help source, as a reader should see them (`\\[` unescaped)."""
    return [m.replace("\\[", "[") for m in re.findall(r"\\?\[[^\]\[]*\]", text or "")]


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=lambda p: " ".join(p) or "catalog")
def test_help_keeps_bracketed_text_and_has_no_empty_parentheses(path: tuple[str, ...]):
    shown = help_of(path)
    command = dict(all_commands(get_command(app)))[path]
    sources = [command.help, *(param.help for param in command.params)]
    for part in (part for source in sources for part in bracketed(source)):
        assert part in shown, part
    assert "()" not in shown


def test_server_help_names_the_config_table():
    assert "NAME of its [servers.NAME] table" in help_of(("sync",))


@pytest.mark.parametrize(
    ("path", "usage"),
    [(("media", "show"), "catalog media show [OPTIONS] ITEM"),
     (("db", "upgrade"), "catalog db upgrade [OPTIONS] [REVISION]"),
     (("tags", "rename"), "catalog tags rename [OPTIONS] OLD NEW"),
     (("tags", "merge"), "catalog tags merge [OPTIONS] A [B...] INTO C"),
     (("tags", "drop"), "catalog tags drop [OPTIONS] TAG..."),
     (("media",), "catalog media [OPTIONS] COMMAND [ARGS]...")],
    ids=["show", "upgrade", "rename", "merge", "drop", "group"],
)  # fmt: skip
def test_usage_lines_name_arguments_naturally(path: tuple[str, ...], usage: str):
    assert usage_of(path) == f"Usage: {usage}"


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=lambda p: " ".join(p) or "catalog")
def test_no_usage_line_shows_braces(path: tuple[str, ...]):
    assert "{" not in usage_of(path)


# -- usage errors -------------------------------------------------------------------------------

USAGE_ERRORS = [
    (["media", "list", "--frobnicate"],
     "error: No such option: --frobnicate (Possible options: --format) "
     "(try 'catalog media list --help')"),
    (["media", "show"], "error: Missing argument 'ITEM' (try 'catalog media show --help')"),
    (["frobnicate"], "error: No such command 'frobnicate' (try 'catalog --help')"),
    (["media"], "error: Missing command (try 'catalog media --help')"),
    (["media", "list", "--limit", "0"],
     "error: Invalid value for '--limit': 0 is not in the range 1<=x<=5000 "
     "(try 'catalog media list --help')"),
    (["tags", "merge", "a", "b"],
     "error: Invalid value for the tags to merge: expected A [B...] INTO C "
     "(try 'catalog tags merge --help')"),
]  # fmt: skip
USAGE_IDS = ["unknown-option", "missing-argument", "unknown-command", "missing-command",
             "out-of-range", "command-check"]  # fmt: skip


@pytest.mark.parametrize(("args", "line"), USAGE_ERRORS, ids=USAGE_IDS)
def test_a_usage_error_is_one_line_and_exit_2(args: list[str], line: str, tmp_path: Path):
    env = {"CATALOG_DATABASE_URL": f"sqlite:///{tmp_path / 'catalog.db'}"}
    out = invoke(args, env=env)
    assert (out.exit_code, out.stderr.splitlines(), out.stdout) == (2, [line], "")


def test_a_usage_error_is_one_line_on_a_real_stderr():
    out = run_catalog("media", "list", "--frobnicate")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.splitlines() == [USAGE_ERRORS[0][1]]


def test_no_arguments_still_prints_the_help():
    out = invoke([], env=WIDE)
    assert out.exit_code == 2 and "Usage: catalog [OPTIONS] COMMAND" in out.stdout
    assert out.stderr == ""


def test_an_app_error_keeps_its_exit_code_through_the_one_line_handler(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    out = invoke(["db", "upgrade", "nosuchrev", "--database-url", url])
    assert out.exit_code == 2 and len(out.stderr.splitlines()) == 1
    assert invoke(["--version"]).exit_code == 0
