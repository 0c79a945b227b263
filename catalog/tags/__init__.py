"""The tag vocabulary: cleaning names (`cleaning`), rules files (`rules`), plans (`plan`), applying
them in one transaction (`apply`), how names enter through their aliases (`aliases`), and the
one guard against a change racing a write (`guard`).

A plan (old name → new name, or dropped) is computed in Python from the tag list, then applied
in ONE transaction by a fixed number of set-based statements whatever the number of tags. Its
decisions are kept in `tag_alias`, through which every tag entering the catalog passes, so a
normalized vocabulary stays normalized after the next sync.

The names below load their module when first asked for: `catalog media list` reads tag names
through `cleaning` alone, and applying plans brings in the job machinery it does not need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from catalog.tags.apply import (
        ApplyCounts,
        ChangeReport,
        apply_plan,
        run_vocabulary_change,
        tag_names,
    )
    from catalog.tags.cleaning import TAG_NAME_MAX, clean_tag
    from catalog.tags.guard import guard_links, hold_write_lock, vocabulary_lock
    from catalog.tags.plan import (
        Change,
        Plan,
        plan_drop,
        plan_merge,
        plan_normalization,
        plan_rename,
    )
    from catalog.tags.rules import DROP, MERGE, RENAME, Rule, Rules, parse_rules

_MODULES = {
    "apply": ("ApplyCounts", "ChangeReport", "apply_plan", "run_vocabulary_change", "tag_names"),
    "cleaning": ("TAG_NAME_MAX", "clean_tag"),
    "guard": ("guard_links", "hold_write_lock", "vocabulary_lock"),
    "plan": ("Change", "Plan", "plan_drop", "plan_merge", "plan_normalization", "plan_rename"),
    "rules": ("DROP", "MERGE", "RENAME", "Rule", "Rules", "parse_rules"),
}
_HOME = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "DROP", "MERGE", "RENAME", "TAG_NAME_MAX", "ApplyCounts", "Change", "ChangeReport", "Plan",
    "Rule", "Rules", "apply_plan", "clean_tag", "guard_links", "hold_write_lock", "parse_rules",
    "plan_drop", "plan_merge", "plan_normalization", "plan_rename", "run_vocabulary_change",
    "tag_names", "vocabulary_lock",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
