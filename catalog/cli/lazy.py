"""The root command, loading each command's module only when that command is used.

`catalog --help` lists every command from the table below, and `catalog media list` imports the
media commands and what they need, not the sync's HTTP client or the scheduler: a command's
dependencies (SQLAlchemy above all) cost more than the interpreter's own start-up. A test
checks the table against the commands themselves.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import typer.main

from catalog.cli.parsing import CatalogCommand, CatalogGroup


@dataclass(frozen=True)
class Entry:
    """Where a command lives and its line in `catalog --help`. `group`: the module's app is
    the command (a group of subcommands); else the command is one of the module's app."""

    module: str
    summary: str
    group: bool = False


COMMANDS = {
    "sync": Entry("catalog.cli.sync", "Sync the server's libraries into the catalog (full, or "
                  "--since-last); with several servers configured and no --server, each of them "
                  "in turn."),
    "libraries": Entry("catalog.cli.sync", "The server's libraries and what the catalog holds "
                       "of each; with several servers configured and no --server, every "
                       "server's."),
    "demo": Entry("catalog.cli.sync", "Start the bundled fake server on 127.0.0.1 and sync it "
                  "into a demo catalog of its own (what an earlier demo left there is "
                  "replaced)."),
    "retag": Entry("catalog.cli.retag", "Tag items never tagged, or not within --older-than, "
                   "through the tagging service."),
    "push": Entry("catalog.cli.push", "Write the catalog's tags (tagger and manual) back to the "
                  "media servers."),
    "status": Entry("catalog.cli.status", "The last runs, newest first: command (and "
                    "server), start, duration, status, items; then their errors."),
    "db": Entry("catalog.cli.db", "The catalog database: migrations and integrity.", True),
    "media": Entry("catalog.cli.media", "The catalog's items: list them with filters, a page "
                   "at a time; show one.", True),
    "tags": Entry("catalog.cli.tags", "The tag vocabulary: list it, normalize it, rename, "
                  "merge or drop tags.", True),
    "schedule": Entry("catalog.cli.schedule", "The configured jobs' schedules (\\[schedule] in "
                      "the config): show them, emit crontab, systemd or Kubernetes forms of "
                      "them, or run them in the foreground.", True),
}  # fmt: skip


def load_command(name: str, entry: Entry) -> Any:
    """The real command `name`, its module imported now."""
    module = importlib.import_module(entry.module)
    group = typer.main.get_group(module.app)
    if entry.group:
        group.name = name
        return group
    return group.commands[name]


class RootGroup(CatalogGroup):
    """`catalog`: its commands come from COMMANDS, loaded when resolved; while the root's own
    help is written, each is only its name and summary."""

    listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        return [*COMMANDS, *super().list_commands(ctx)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return super().get_command(ctx, cmd_name)
        if self.listing:
            return CatalogCommand(name=cmd_name, help=entry.summary)
        return load_command(cmd_name, entry)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self.listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self.listing = False
