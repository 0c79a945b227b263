"""Rules files: CSV lines saying what becomes of a tag, applied after cleaning."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from catalog.errors import RulesError
from catalog.tags.cleaning import TAG_NAME_MAX, clean_tag

RENAME, MERGE, DROP = "rename", "merge", "drop"


@dataclass(frozen=True)
class Rule:
    """Where a (cleaned) tag name ends up: a clean name, or None for dropped."""

    target: str | None
    line: int  # the rules-file line that decided it (the first of a chain)


Rules = dict[str, Rule]  # keyed by clean name: a rule may name a tag in raw or cleaned form

_RULE_ACTIONS = {"rename": RENAME, "merge": RENAME, "drop": DROP, "": None}


def parse_rules(path: Path) -> Rules:
    """Read a rules file: CSV lines `tag,rename,new`, `tag,merge,new` (the same), `tag,drop` or
    `tag,` (nothing to do); blank lines and lines starting with `#` are ignored. Names and
    targets are cleaned, chains are followed (a→b, b→c gives a→c). Any bad line, conflict or
    cycle raises RulesError naming the file and line, before anything is applied."""
    direct: Rules = {}
    for number, fields in _rule_lines(path):
        parsed = _parse_rule(fields, f"{path}:{number}")
        if parsed is None or parsed[0] == parsed[1]:
            continue
        key, target = parsed
        earlier = direct.setdefault(key, Rule(target, number))
        if earlier.target != target:
            raise RulesError(
                f"{path}:{number}: {key!r} already has a different rule on line {earlier.line}"
            )
    return _follow_chains(direct, path)


def _rule_lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError(f"{path}: cannot read the rules file: {exc}") from None
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            fields = next(csv.reader([line.rstrip("\r")], strict=True))
        except csv.Error as exc:
            raise RulesError(f"{path}:{number}: malformed line: {exc}") from None
        yield number, [f.strip() for f in fields]


def _parse_rule(fields: list[str], where: str) -> tuple[str, str | None] | None:
    """(clean name, clean target or None for drop), or None for a line that does nothing."""
    if len(fields) > 3:
        raise RulesError(f"{where}: malformed line: expected `tag,action[,new name]`")
    name, action, target = (*fields, "", "")[:3]
    if not name:
        raise RulesError(f"{where}: malformed line: no tag name")
    if action.lower() not in _RULE_ACTIONS:
        raise RulesError(f"{where}: unknown action {action!r} (expected rename, merge or drop)")
    verb = _RULE_ACTIONS[action.lower()]
    if verb == RENAME and not target:
        raise RulesError(f"{where}: {action.lower()} needs a new name (`tag,{action},new`)")
    if verb != RENAME and target:
        raise RulesError(f"{where}: {action.lower() or 'an empty action'} takes no new name")
    if verb is None:
        return None
    new = clean_tag(target) if verb == RENAME else None
    if new is not None and len(new) > TAG_NAME_MAX:
        raise RulesError(f"{where}: the new name is longer than {TAG_NAME_MAX} characters")
    return clean_tag(name), new


def _follow_chains(direct: Rules, path: Path) -> Rules:
    resolved: Rules = {}
    for key, first in direct.items():
        trail, rule = [key], first
        while rule.target is not None and rule.target in direct:
            if rule.target in trail:
                cycle = [*trail[trail.index(rule.target) :], rule.target]
                lines = ", ".join(str(direct[k].line) for k in cycle[:-1])
                raise RulesError(
                    f"{path}: rules form a cycle: {' -> '.join(cycle)} (lines {lines})"
                )
            trail.append(rule.target)
            rule = direct[rule.target]
        resolved[key] = Rule(rule.target, first.line)
    return resolved
