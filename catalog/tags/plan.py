"""Plans: every change to the vocabulary (old name → new name, or dropped), computed in Python
from the tag list before anything is written."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from catalog.errors import RulesError
from catalog.tags.cleaning import TAG_NAME_MAX, clean_tag
from catalog.tags.rules import DROP, MERGE, RENAME, Rules


@dataclass(frozen=True)
class Change:
    """One tag's fate. A rename keeps the tag (and its links) under a new name; a merge moves
    its links to the tag of that name and deletes it; a drop deletes it with its links."""

    old: str
    new: str | None
    action: str
    reason: str


@dataclass
class Plan:
    """Every change to the vocabulary, and the tags left alone for a reason worth telling."""

    changes: list[Change] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, why)

    def count(self, action: str) -> int:
        return sum(c.action == action for c in self.changes)

    def as_dict(self) -> dict[str, Any]:
        return {
            "renamed": self.count(RENAME),
            "merged": self.count(MERGE),
            "dropped": self.count(DROP),
            "changes": [asdict(c) for c in self.changes],
            "skipped": [{"tag": name, "reason": why} for name, why in self.skipped],
        }


Decisions = dict[str, tuple[str | None, str]]  # old name → (new name or None, why)


def plan_normalization(names: Iterable[str], rules: Rules | None = None) -> Plan:
    """Clean every name, then apply `rules` to the clean form. Names that end up the same are
    merged (into the tag already bearing that name, else into one of them, renamed)."""
    rules = rules or {}
    existing = sorted(set(names))
    decisions: Decisions = {}
    skipped = []
    for name in existing:
        cleaned = clean_tag(name)
        rule = rules.get(cleaned)
        target, why = (rule.target, f"rule line {rule.line}") if rule else (cleaned, "clean")
        if target is not None and len(target) > TAG_NAME_MAX:
            skipped.append((name, f"the clean name is longer than {TAG_NAME_MAX} characters"))
            continue
        decisions[name] = (target, why)
    return _build_plan(set(existing), decisions, skipped)


def plan_merge(names: Iterable[str], sources: Sequence[str], into: str) -> Plan:
    """Merge `sources` into `into`, taken as given (not cleaned). When no tag is named `into`,
    the first source is renamed to it and the others merged into that one."""
    existing = set(names)
    _require(existing, sources)
    if not into.strip() or len(into) > TAG_NAME_MAX:
        raise RulesError(f"the new name must have 1 to {TAG_NAME_MAX} characters: {into!r}")
    decisions: Decisions = {s: (into, "by hand") for s in dict.fromkeys(sources) if s != into}
    return _build_plan(existing, decisions)


def plan_rename(names: Iterable[str], old: str, new: str) -> Plan:
    """Rename `old` to `new`: a merge when a tag named `new` exists already."""
    return plan_merge(names, [old], new)


def plan_drop(names: Iterable[str], drop: Sequence[str]) -> Plan:
    """Drop these tags and their links."""
    existing = set(names)
    _require(existing, drop)
    return _build_plan(existing, {name: (None, "by hand") for name in drop})


def _require(existing: set[str], names: Sequence[str]) -> None:
    unknown = [n for n in names if n not in existing]
    if unknown:
        raise RulesError(f"no tag named {', '.join(map(repr, unknown))} in the catalog")


def _build_plan(
    existing: set[str], decisions: Decisions, skipped: list[tuple[str, str]] | None = None
) -> Plan:
    """Turn old → new decisions into changes. Targets are never themselves changed (cleaning
    and chained rules reach fixed points), so renames can't collide with each other."""
    changes = [Change(old, None, DROP, why) for old, (new, why) in decisions.items() if new is None]
    groups: dict[str, list[tuple[str, str]]] = {}
    for old, (new, why) in decisions.items():
        if new is not None and new != old:
            groups.setdefault(new, []).append((old, why))
    for target, sources in groups.items():
        for index, (old, why) in enumerate(sources):
            # Renaming keeps the tag's id, so its links need not move: one source of a new
            # name is renamed, and only the others' links move.
            renamed = index == 0 and target not in existing
            changes.append(Change(old, target, RENAME if renamed else MERGE, why))
    return Plan(sorted(changes, key=lambda c: c.old), skipped or [])
