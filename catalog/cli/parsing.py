"""How the command line is read: closed sets of values, usage lines that read naturally, and
usage errors as one line like every other error.

Every command group is a `CatalogTyper`, so its commands get these classes without saying so.
Typer vendors Click and exports only BadParameter of its exceptions: the others come from
`typer._click`, and the type Typer gives an enum option (TyperChoice) from `typer._types`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from enum import Enum, StrEnum
from typing import Any

import typer
from typer._click.exceptions import BadParameter, ClickException, NoArgsIsHelpError, UsageError
from typer._types import TyperChoice
from typer.core import TyperArgument, TyperCommand, TyperGroup

from catalog.cli.console import error_line


def closed_set(name: str, values: Iterable[str]) -> type[StrEnum]:
    """An enum of the values a domain declares (catalog.items.MEDIA_KINDS, ...), for an option
    that takes one of them: --help lists them, completion offers them, and anything else is a
    usage error naming them (see `usage_message`)."""
    return StrEnum(name, {value: value for value in values})  # type: ignore[return-value]


class OutsideClosedSet(BadParameter):
    """A value that is none of a closed set's: the message names the value and the valid ones."""

    def __init__(self, value: Any, choices: Iterable[Any], **where: Any) -> None:
        names = ", ".join(str(c.value) if isinstance(c, Enum) else str(c) for c in choices)
        super().__init__(f"{value!r} is not one of: {names}", **where)


class ClosedSet(TyperChoice):
    """The type of an option taking one of a closed set: Typer's, failing as OutsideClosedSet."""

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        try:
            return super().convert(value, param, ctx)
        except BadParameter:
            raise OutsideClosedSet(value, self.choices, ctx=ctx, param=param) from None


def _closed(params: Iterable[Any]) -> None:
    """Give each of `params` that takes one of a set of values the ClosedSet type. Done as the
    command line is parsed, since Typer adds some parameters (--show-completion) to a group
    after making it."""
    for param in params:
        if type(param.type) is TyperChoice:
            param.type = ClosedSet(param.type.choices, param.type.case_sensitive)


class _NaturalUsage:
    """Usage lines name arguments the way man pages do: `ITEM`, `[REVISION]`, `TAG...` (Typer
    writes a required one as `{item}`); a value outside a closed set is an OutsideClosedSet."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        _closed(self.get_params(ctx))  # type: ignore[attr-defined]
        return super().parse_args(ctx, args)  # type: ignore[misc]

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces: list[str] = super().collect_usage_pieces(ctx)  # type: ignore[misc]
        typer_style = {
            param.get_usage_pieces(ctx)[0]: _usage_name(param)
            for param in self.get_params(ctx)  # type: ignore[attr-defined]
            if isinstance(param, TyperArgument)
        }
        return [typer_style.get(piece, piece) for piece in pieces]


def _usage_name(argument: TyperArgument) -> str:
    if argument.metavar:  # written out by the command (`A [B...] INTO C`)
        return argument.metavar
    name = (argument.name or "").upper() + ("..." if argument.nargs != 1 else "")
    return name if argument.required else f"[{name}]"


class CatalogCommand(_NaturalUsage, TyperCommand):
    """A command whose usage line reads naturally."""


class CatalogGroup(_NaturalUsage, TyperGroup):
    """A command group; as the root, it reports usage errors in one line (exit 2)."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except NoArgsIsHelpError as exc:  # the help was printed: that is the answer
            sys.exit(exc.exit_code)
        except ClickException as exc:
            error_line(usage_message(exc))
            sys.exit(exc.exit_code)
        except typer.Abort:
            error_line("aborted")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def usage_message(exc: ClickException) -> str:
    """One line: what is wrong, and where to look (unless the line lists the valid values)."""
    choices = _choices_of(exc)
    if choices is not None:
        return choices
    ctx = getattr(exc, "ctx", None)
    hint = f" (try '{ctx.command_path} --help')" if isinstance(exc, UsageError) and ctx else ""
    return " ".join(exc.format_message().split()).rstrip(".") + hint


def _choices_of(exc: ClickException) -> str | None:
    """`--kind 'film' is not one of: episode, movie, ...` for a value outside a closed set."""
    param = getattr(exc, "param", None)
    if not isinstance(exc, OutsideClosedSet) or param is None:
        return None
    flag = max(param.opts, key=len) if param.opts else param.name
    return f"{flag} {exc.message}"


class CatalogTyper(typer.Typer):
    """A Typer app whose groups are CatalogGroups and whose commands are CatalogCommands."""

    def __init__(self, **options: Any) -> None:
        options.setdefault("cls", CatalogGroup)
        super().__init__(**options)

    def command(self, name: str | None = None, **options: Any) -> Any:
        options.setdefault("cls", CatalogCommand)
        return super().command(name, **options)
