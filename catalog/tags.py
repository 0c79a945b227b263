"""The tag vocabulary: cleaning names, rules files, normalization plans applied in one go, and
the keyset-paged listing with usage counts.

A plan (old name → new name, or dropped) is computed in Python from the tag list, then applied
in ONE transaction by a fixed number of set-based statements whatever the number of tags. Its
decisions are kept in `tag_alias`, through which every tag entering the catalog passes, so a
normalized vocabulary stays normalized after the next sync.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, and_, distinct, func, or_, select
from sqlalchemy.exc import SQLAlchemyError

from catalog.cursors import decode_cursor as unpack_cursor
from catalog.cursors import encode_cursor as pack_cursor
from catalog.db.locks import job_lock
from catalog.db.models import MediaTag, Server, Tag
from catalog.errors import DatabaseError, RulesError
from catalog.runs import (
    FAILED,
    INTERRUPTED,
    KEEP_RUNS,
    OK,
    RUNNING,
    Retention,
    finish_run,
    start_run,
)

TAG, MEDIA_TAG, SERVER = Tag.__table__, MediaTag.__table__, Server.__table__
TAG_NAME_MAX = TAG.c.name.type.length
RENAME, MERGE, DROP = "rename", "merge", "drop"

# -- cleaning -----------------------------------------------------------------------------------

_SYMBOL_WORDS = (("&", " and "), ("+", " plus "), ("@", " at "))
_ASCII_SEPARATORS = re.compile(r"[\W_]+")


def clean_tag(name: str) -> str:
    """The clean form of a tag name: lower case, `&`/`+`/`@` spelled out, every run of
    characters that are not letters or digits turned into one `_`, none at either end. A name
    with no letter or digit at all (`###`) is kept as it is."""
    text = unicodedata.normalize("NFC", name).lower()
    for symbol, word in _SYMBOL_WORDS:
        text = text.replace(symbol, word)
    words = _ASCII_SEPARATORS.split(text) if text.isascii() else _unicode_words(text)
    # NFC again: lower() may decompose (İ → i + U+0307), and a clean name must be stable.
    return unicodedata.normalize("NFC", "_".join(w for w in words if w)) or name


def _unicode_words(text: str) -> list[str]:
    """Runs of letters and digits. Combining marks count as part of a word: Python's `\\w`
    does not match them, which would cut Devanagari or decomposed accents into pieces."""
    words, word = [], []
    for char in text:
        if char != "_" and (char.isalnum() or unicodedata.category(char).startswith("M")):
            word.append(char)
        elif word:
            words.append("".join(word))
            word = []
    words.append("".join(word))
    return words


# -- rules files --------------------------------------------------------------------------------


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


# -- plans --------------------------------------------------------------------------------------


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


# -- apply --------------------------------------------------------------------------------------


@dataclass
class ApplyCounts:
    """What applying a plan did."""

    renamed: int = 0
    merged: int = 0
    dropped: int = 0
    links_moved: int = 0  # links now on a merge target (a duplicate on the same item excluded)
    links_removed: int = 0  # links gone: those of dropped tags, and merge duplicates


# The plan as a temporary table, then one statement per step whatever the number of tags.
# Order matters: aliases are re-pointed before tags are deleted (tag_alias cascades on delete),
# and new aliases are recorded after, so the cascade checks scan only the aliases that were
# already there (tag_alias.tag_id has no index).
_CREATE_PLAN = (
    "CREATE TEMP TABLE tag_plan (old_name TEXT PRIMARY KEY, new_name TEXT, "
    "action TEXT NOT NULL, old_id INTEGER, new_id INTEGER)"
)
_APPLY_STEPS = {
    "resolve_ids": (
        "UPDATE tag_plan SET old_id = (SELECT id FROM tag WHERE tag.name = tag_plan.old_name), "
        "new_id = (SELECT id FROM tag WHERE tag.name = tag_plan.new_name)"
    ),
    # A rename keeps its id; merges into a new name go to the id of the tag renamed to it.
    "resolve_new_targets": (
        "UPDATE tag_plan SET new_id = r.old_id FROM tag_plan AS r "
        "WHERE r.action = 'rename' AND r.new_name = tag_plan.new_name"
    ),
    "move_links": (
        "INSERT INTO media_tag (media_id, tag_id, origin) "
        "SELECT l.media_id, p.new_id, l.origin FROM tag_plan AS p "
        "JOIN media_tag AS l ON l.tag_id = p.old_id WHERE p.action = 'merge' "
        "ON CONFLICT DO NOTHING"
    ),
    "delete_links": (
        "DELETE FROM media_tag WHERE tag_id IN "
        "(SELECT old_id FROM tag_plan WHERE action <> 'rename')"
    ),
    "repoint_aliases": (
        "UPDATE tag_alias SET tag_id = p.new_id FROM tag_plan AS p "
        "WHERE tag_alias.tag_id = p.old_id AND p.action <> 'rename'"
    ),
    "delete_tags": (
        "DELETE FROM tag WHERE id IN (SELECT old_id FROM tag_plan WHERE action <> 'rename')"
    ),
    "record_aliases": (
        "INSERT INTO tag_alias (raw_name, tag_id) "
        "SELECT old_name, new_id FROM tag_plan WHERE old_id IS NOT NULL "
        "ON CONFLICT (raw_name) DO UPDATE SET tag_id = excluded.tag_id"
    ),
    # A name that is now a tag's must not stay aliased elsewhere (e.g. dropped long ago).
    "alias_targets": (
        "UPDATE tag_alias SET tag_id = p.new_id FROM tag_plan AS p "
        "WHERE tag_alias.raw_name = p.new_name"
    ),
    "rename_tags": (
        "UPDATE tag SET name = p.new_name FROM tag_plan AS p "
        "WHERE tag.id = p.old_id AND p.action = 'rename'"
    ),
}


def apply_plan(conn: Connection, plan: Plan) -> ApplyCounts:
    """Apply `plan` in the caller's transaction with a fixed number of statements. The plan
    must come from the tag list read in this same transaction (see run_vocabulary_change)."""
    counts = ApplyCounts(plan.count(RENAME), plan.count(MERGE), plan.count(DROP))
    if not plan.changes:
        return counts
    hold_write_lock(conn)
    conn.exec_driver_sql(_CREATE_PLAN)
    _fill_plan(conn, plan.changes)
    conn.exec_driver_sql(_APPLY_STEPS["resolve_ids"])
    conn.exec_driver_sql(_APPLY_STEPS["resolve_new_targets"])
    if conn.dialect.name == "postgresql":
        # Without statistics PostgreSQL guesses the temp table's size and may scan all of
        # media_tag per plan row; with them it joins through (tag_id, media_id).
        conn.exec_driver_sql("ANALYZE tag_plan")
    counts.links_moved = conn.exec_driver_sql(_APPLY_STEPS["move_links"]).rowcount
    deleted = conn.exec_driver_sql(_APPLY_STEPS["delete_links"]).rowcount
    counts.links_removed = deleted - counts.links_moved
    for step in ("repoint_aliases", "delete_tags", "record_aliases", "alias_targets"):
        conn.exec_driver_sql(_APPLY_STEPS[step])
    conn.exec_driver_sql(_APPLY_STEPS["rename_tags"])
    conn.exec_driver_sql("DROP TABLE tag_plan")
    return counts


def _fill_plan(conn: Connection, changes: list[Change]) -> None:
    """One statement: unnest()ed arrays on PostgreSQL, executemany in-process on SQLite."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            "INSERT INTO tag_plan (old_name, new_name, action) "
            "SELECT * FROM unnest(%(old)s::text[], %(new)s::text[], %(action)s::text[])",
            {
                "old": [c.old for c in changes],
                "new": [c.new for c in changes],
                "action": [c.action for c in changes],
            },
        )
    else:
        conn.exec_driver_sql(
            "INSERT INTO tag_plan (old_name, new_name, action) VALUES (?, ?, ?)",
            [(c.old, c.new, c.action) for c in changes],
        )


def hold_write_lock(conn: Connection) -> None:
    """Make what follows one transaction. SQLite's driver opens its transaction only at the
    first INSERT/UPDATE/DELETE: the tag list read and the temp table would fall outside it,
    so open it now, taking the write lock before reading what will be rewritten. PostgreSQL's
    transaction is open already."""
    if conn.dialect.name == "sqlite" and not conn.connection.driver_connection.in_transaction:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def tag_names(conn: Connection) -> list[str]:
    """Every tag name in the catalog (the vocabulary is small next to the links)."""
    return list(conn.execute(select(TAG.c.name)).scalars())


# -- a run: lock, plan, apply, record -----------------------------------------------------------


@dataclass
class ChangeReport:
    """One run of a vocabulary change, filled in as it goes (rendered whatever the outcome)."""

    status: str = RUNNING
    plan: Plan = field(default_factory=Plan)
    counts: ApplyCounts = field(default_factory=ApplyCounts)
    run_id: int | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status, **asdict(self.counts), "skipped": len(self.plan.skipped),
            "run_id": self.run_id, "error": self.error,
        }  # fmt: skip

    def run_counts(self) -> dict[str, Any]:
        """The counts kept in the run record (and read by catalog.ops.job_items)."""
        return {**asdict(self.counts), "skipped": len(self.plan.skipped)}


@contextmanager
def vocabulary_lock(engine: Engine) -> Iterator[None]:
    """The normalize job's lock, and every sync's: a sync resolves tag ids in one statement
    and links them in a later one, so a merge committed in between would orphan its links."""
    with job_lock(engine, "normalize", "catalog"), ExitStack() as stack:
        with engine.connect() as conn:
            servers = conn.execute(select(SERVER.c.name).order_by(SERVER.c.name)).scalars()
            names = list(servers)
        for server in names:
            stack.enter_context(job_lock(engine, "sync", server))
        yield


def run_vocabulary_change(
    engine: Engine,
    command: str,
    make_plan: Callable[[list[str]], Plan],
    report: ChangeReport,
    keep_runs: int | Retention = KEEP_RUNS,
) -> ChangeReport:
    """Under the locks, read the tag list, plan, and apply in one transaction; record the run.
    Any failure rolls everything back and raises (a database failure as DatabaseError)."""
    with vocabulary_lock(engine):
        report.run_id = start_run(engine, command, None)
        try:
            with engine.begin() as conn:
                hold_write_lock(conn)
                report.plan = make_plan(tag_names(conn))
                report.counts = apply_plan(conn, report.plan)
            report.status = OK
        except KeyboardInterrupt:
            report.status, report.error = INTERRUPTED, "interrupted; nothing was changed"
            raise
        except SQLAlchemyError as exc:
            report.status, report.error = FAILED, f"nothing was changed: {_reason(exc)}"
            raise DatabaseError(report.error) from exc
        except Exception as exc:
            report.status, report.error = FAILED, str(exc) or type(exc).__name__
            raise
        finally:
            counts = report.run_counts()
            finish_run(engine, report.run_id, report.status, counts, report.error, keep_runs)
    return report


def _reason(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- listing ------------------------------------------------------------------------------------

BY_COUNT, BY_NAME = "count", "name"


@dataclass
class TagPage:
    """One page of tags with the number of items carrying each; `next_cursor` None at the end."""

    items: list[dict[str, Any]]
    next_cursor: str | None


def list_tags(
    conn: Connection, order: str = BY_COUNT, limit: int = 100, after: str | None = None
) -> TagPage:
    """Tags by usage (most used first, then by name) or by name, keyset-paged: `after` is the
    cursor the previous page gave. A bad cursor raises ValueError."""
    key = decode_cursor(after, order) if after else None
    query = _by_count(key) if order == BY_COUNT else _by_name(key)
    rows = conn.execute(query.limit(limit + 1)).all()
    items = [{"name": name, "count": count} for name, count in rows[:limit]]
    more = len(rows) > limit
    last = items[-1] if items else None
    cursor = encode_cursor(order, last) if more and last else None
    return TagPage(items, cursor)


def _by_count(key: list[Any] | None) -> Any:
    # Every tag's count is needed to know which come first; the vocabulary is small.
    usage = (
        select(TAG.c.name, func.count(distinct(MEDIA_TAG.c.media_id)).label("count"))
        .select_from(TAG.outerjoin(MEDIA_TAG, MEDIA_TAG.c.tag_id == TAG.c.id))
        .group_by(TAG.c.id, TAG.c.name)
        .subquery()
    )
    query = select(usage.c.name, usage.c["count"]).order_by(usage.c["count"].desc(), usage.c.name)
    if key is not None:
        count, name = key
        after = or_(usage.c["count"] < count, and_(usage.c["count"] == count, usage.c.name > name))
        query = query.where(after)
    return query


def _by_name(key: list[Any] | None) -> Any:
    # Only the page's tags are counted, each through the (tag_id, media_id) index.
    count = (
        select(func.count(distinct(MEDIA_TAG.c.media_id)))
        .where(MEDIA_TAG.c.tag_id == TAG.c.id)
        .scalar_subquery()
    )
    query = select(TAG.c.name, count.label("count")).order_by(TAG.c.name)
    return query.where(TAG.c.name > key[0]) if key is not None else query


def encode_cursor(order: str, last: dict[str, Any]) -> str:
    key = [last["count"], last["name"]] if order == BY_COUNT else [last["name"]]
    return pack_cursor({"order": order, "key": key})


def decode_cursor(cursor: str, order: str) -> list[Any]:
    """The keyset position in `cursor`; ValueError unless a listing in `order` gave it out."""
    data = unpack_cursor(cursor)
    try:
        key = data["key"]
    except (TypeError, KeyError) as exc:
        raise ValueError(f"{cursor!r} is not a cursor this listing gave out") from exc
    shape = (int, str) if order == BY_COUNT else (str,)
    valid = len(key) == len(shape) and all(
        isinstance(k, t) for k, t in zip(key, shape, strict=True)
    )
    if data.get("order") != order or not valid:
        raise ValueError(f"{cursor!r} is not a cursor of a listing by {order}")
    return key
