"""`catalog tags`: cleaning, rules files, plans, and applying them on both databases."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, insert, select, text

from catalog.db.engine import recorded_statements
from catalog.db.locks import job_lock
from catalog.db.models import LIBRARY, MEDIA, MEDIA_TAG, RUN, SERVER, TAG, TAG_ALIAS
from catalog.errors import DatabaseError, RulesError
from catalog.tags import (
    DROP,
    MERGE,
    RENAME,
    Change,
    ChangeReport,
    Plan,
    Rule,
    apply_plan,
    clean_tag,
    parse_rules,
    plan_drop,
    plan_merge,
    plan_normalization,
    run_vocabulary_change,
    tag_names,
)

TAG, MEDIA_TAG, ALIAS, MEDIA = (
    TAG,
    MEDIA_TAG,
    TAG_ALIAS,
    MEDIA,
)

# -- helpers ------------------------------------------------------------------------------------


def seed(engine: Engine, items: dict[str, list[tuple[str, str]]]) -> None:
    """Items (by external id) carrying (tag name, origin) links, written straight in."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        server = conn.execute(
            insert(SERVER).returning(SERVER.c.id),
            {"name": "home", "kind": "jellyfin", "url": "http://127.0.0.1:9"},
        ).scalar_one()
        library = conn.execute(
            insert(LIBRARY).returning(LIBRARY.c.id),
            {"server_id": server, "external_id": "lib", "name": "Movies", "kind": "movies"},
        ).scalar_one()
        conn.execute(
            insert(MEDIA),
            [
                {
                    "library_id": library, "external_id": ext, "kind": "Movie", "name": ext,
                    "sort_name": ext, "subtitles": False, "content_hash": "x",
                    "first_seen_at": now, "updated_at": now, "last_seen_at": now,
                }
                for ext in items
            ],
        )  # fmt: skip
        names = sorted({name for links in items.values() for name, _ in links})
        conn.execute(insert(TAG), [{"name": name} for name in names])
        media_ids = dict(conn.execute(select(MEDIA.c.external_id, MEDIA.c.id)).all())
        tag_ids = dict(conn.execute(select(TAG.c.name, TAG.c.id)).all())
        links = [
            {"media_id": media_ids[ext], "tag_id": tag_ids[name], "origin": origin}
            for ext, pairs in items.items()
            for name, origin in pairs
        ]
        if links:
            conn.execute(insert(MEDIA_TAG), links)


def links(engine: Engine) -> set[tuple[str, str, str]]:
    """Every link as (item, tag name, origin); an orphan shows as a tag name of None."""
    query = (
        select(MEDIA.c.external_id, TAG.c.name, MEDIA_TAG.c.origin)
        .select_from(MEDIA_TAG)
        .join(MEDIA, MEDIA.c.id == MEDIA_TAG.c.media_id)
        .outerjoin(TAG, TAG.c.id == MEDIA_TAG.c.tag_id)
    )
    with engine.connect() as conn:
        return {tuple(row) for row in conn.execute(query)}


def aliases(engine: Engine) -> dict[str, str | None]:
    """raw name → the name of the tag it maps to (None: dropped)."""
    query = select(ALIAS.c.raw_name, TAG.c.name).outerjoin(TAG, TAG.c.id == ALIAS.c.tag_id)
    with engine.connect() as conn:
        return dict(conn.execute(query).all())


def tag_ids(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(select(TAG.c.name, TAG.c.id)).all())


def snapshot(engine: Engine) -> tuple:
    return tag_ids(engine), links(engine), aliases(engine)


def write_rules(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "tag-rules.csv"
    path.write_text(body, encoding="utf-8")
    return path


def apply(engine: Engine, plan: Plan):
    with engine.begin() as conn:
        return apply_plan(conn, plan)


# -- cleaning -----------------------------------------------------------------------------------

CLEANING = {
    "Sci-Fi": "sci_fi",
    "Rock&Roll": "rock_and_roll",
    "C++Programming": "c_plus_plus_programming",
    "email@domain": "email_at_domain",
    "Comedy/Drama": "comedy_drama",
    "---tag---": "tag",
    "Café": "café",
    "日本語": "日本語",
    "###": "###",
    "already_clean": "already_clean",
    "a__b  c": "a_b_c",
    "père & fils": "père_and_fils",
    "Cafe\u0301": "café",  # decomposed accent: composed, not cut off
    "हिन्दी": "हिन्दी",  # vowel signs are combining marks, part of the word
}


@pytest.mark.parametrize(("raw", "clean"), CLEANING.items(), ids=list(CLEANING))
def test_clean_tag_examples(raw, clean):
    assert clean_tag(raw) == clean


SPECIAL = st.sampled_from([*"&+@_-/ #.İßẞ\u0301\u0307", "\u0130", "ǅ", "Σ"])


@given(st.text() | st.lists(SPECIAL | st.characters(), max_size=12).map("".join))
def test_cleaning_is_idempotent(name):
    once = clean_tag(name)
    assert clean_tag(once) == once


# -- rules files --------------------------------------------------------------------------------


def test_rules_file_with_comments_blank_lines_and_every_action(tmp_path):
    path = write_rules(
        tmp_path,
        "# tag,action,new\n"
        "\n"
        "Sci-Fi,rename,Science Fiction\n"
        "  # an indented comment\n"
        "scifi,merge,science fiction\n"
        "Gore,drop\n"
        "Drama,\n"
        '"Drama, Romance",rename,romance\n'
        "kids,DROP,\n",
    )
    assert parse_rules(path) == {
        "sci_fi": Rule("science_fiction", 3),
        "scifi": Rule("science_fiction", 5),
        "gore": Rule(None, 6),
        "drama_romance": Rule("romance", 8),
        "kids": Rule(None, 9),
    }


def test_rules_chain_to_their_end_and_name_tags_raw_or_clean(tmp_path):
    path = write_rules(tmp_path, "a,rename,B\nb,rename,c\nC,drop\nx,rename,Y Z\ny-z,rename,w\n")
    rules = parse_rules(path)
    assert rules["a"] == Rule(None, 1) and rules["b"] == Rule(None, 2)
    assert rules["x"] == Rule("w", 4)


def test_a_cycle_is_an_error_naming_its_tags(tmp_path):
    path = write_rules(tmp_path, "a,rename,b\nkeep,drop\nb,rename,c\nc,rename,A\n")
    with pytest.raises(RulesError) as caught:
        parse_rules(path)
    assert str(caught.value) == f"{path}: rules form a cycle: a -> b -> c -> a (lines 1, 3, 4)"


BAD_RULES = {
    "unknown action": ("ok,drop\nfoo,explode,bar\n", "2: unknown action 'explode'"),
    "missing target": ("# header\nfoo,rename\n", "2: rename needs a new name"),
    "empty target": ("foo,merge, \n", "1: merge needs a new name"),
    "drop with a target": ("foo,drop,bar\n", "1: drop takes no new name"),
    "too many fields": ("foo,rename,bar,baz\n", "1: malformed line"),
    "no tag name": ("\n,drop\n", "2: malformed line: no tag name"),
    "unclosed quote": ('"foo,drop\n', "1: malformed line"),
    "conflict": ("Foo,drop\nfoo,rename,bar\n", "2: 'foo' already has a different rule on line 1"),
    "target too long": (f"foo,rename,{'x' * 201}\n", "1: the new name is longer than 200"),
}


@pytest.mark.parametrize(("body", "message"), BAD_RULES.values(), ids=list(BAD_RULES))
def test_bad_rules_are_named_by_file_and_line(tmp_path, body, message):
    path = write_rules(tmp_path, body)
    with pytest.raises(RulesError) as caught:
        parse_rules(path)
    assert str(caught.value).startswith(f"{path}:{message}")


def test_a_missing_rules_file_is_a_rules_error(tmp_path):
    with pytest.raises(RulesError, match="cannot read the rules file"):
        parse_rules(tmp_path / "nope.csv")


# -- plans --------------------------------------------------------------------------------------


def test_names_cleaning_alike_become_one_rename_and_merges():
    plan = plan_normalization(["Sci-Fi", "SCI FI", "sci-fi", "Drama"])
    assert plan.changes == [
        Change("Drama", "drama", RENAME, "clean"),
        Change("SCI FI", "sci_fi", RENAME, "clean"),
        Change("Sci-Fi", "sci_fi", MERGE, "clean"),
        Change("sci-fi", "sci_fi", MERGE, "clean"),
    ]


def test_names_merge_into_the_tag_already_bearing_the_clean_name():
    plan = plan_normalization(["Sci-Fi", "sci_fi", "drama"])
    assert plan.changes == [Change("Sci-Fi", "sci_fi", MERGE, "clean")]


def test_rules_apply_after_cleaning():
    rules = {"sci_fi": Rule("science_fiction", 3), "gore": Rule(None, 4)}
    plan = plan_normalization(["Sci-Fi", "science_fiction", "GORE", "gore"], rules)
    assert plan.changes == [
        Change("GORE", None, DROP, "rule line 4"),
        Change("Sci-Fi", "science_fiction", MERGE, "rule line 3"),
        Change("gore", None, DROP, "rule line 4"),
    ]


def test_a_clean_name_too_long_for_the_column_is_left_alone():
    long = "&" * 40  # "and_" forty times: 159 characters, fine
    longer = "&" * 60
    plan = plan_normalization([long, longer])
    assert [c.old for c in plan.changes] == [long]
    assert plan.skipped == [(longer, "the clean name is longer than 200 characters")]


def test_hand_made_plans_take_names_as_given_and_check_they_exist():
    names = ["Sci-Fi", "sci-fi", "Gore"]
    assert plan_merge(names, ["Sci-Fi", "sci-fi"], "Science Fiction").changes == [
        Change("Sci-Fi", "Science Fiction", RENAME, "by hand"),
        Change("sci-fi", "Science Fiction", MERGE, "by hand"),
    ]
    assert plan_drop(names, ["Gore"]).changes == [Change("Gore", None, DROP, "by hand")]
    with pytest.raises(RulesError, match="no tag named 'Horror'"):
        plan_drop(names, ["Gore", "Horror"])


# -- applying, on both databases ----------------------------------------------------------------


def test_merges_on_the_same_item_leave_one_link_per_origin(cli, engine):
    seed(
        engine,
        {
            "a": [("Sci-Fi", "server"), ("sci-fi", "server"), ("SCI FI", "tagger")],
            "b": [("Sci-Fi", "tagger"), ("sci_fi", "tagger")],
            "c": [("sci-fi", "manual"), ("Drama", "server")],
        },
    )
    kept = tag_ids(engine)["sci_fi"]
    out = cli("tags", "normalize", "--json")
    assert out.exit_code == 0, out.stderr
    summary = out.json()
    assert summary == {
        "status": "ok", "renamed": 1, "merged": 3, "dropped": 0, "links_moved": 3,
        "links_removed": 2, "skipped": 0, "run_id": summary["run_id"], "error": None,
    }  # fmt: skip
    assert links(engine) == {
        ("a", "sci_fi", "server"), ("a", "sci_fi", "tagger"), ("b", "sci_fi", "tagger"),
        ("c", "sci_fi", "manual"), ("c", "drama", "server"),
    }  # fmt: skip
    assert tag_ids(engine)["sci_fi"] == kept
    assert aliases(engine) == {
        "Sci-Fi": "sci_fi", "sci-fi": "sci_fi", "SCI FI": "sci_fi", "Drama": "drama",
    }  # fmt: skip
    again = cli("tags", "normalize", "--json").json()
    assert (again["renamed"], again["merged"], again["links_moved"]) == (0, 0, 0)


def test_a_rename_keeps_the_tag_and_its_links(cli, engine):
    seed(engine, {"a": [("Sci-Fi", "server")], "b": [("Sci-Fi", "tagger")]})
    before = tag_ids(engine)["Sci-Fi"]
    out = cli("tags", "rename", "Sci-Fi", "Science Fiction", "--json")
    assert out.exit_code == 0, out.stderr
    assert (out.json()["renamed"], out.json()["links_moved"]) == (1, 0)
    assert tag_ids(engine) == {"Science Fiction": before}
    assert links(engine) == {("a", "Science Fiction", "server"), ("b", "Science Fiction", "tagger")}
    assert aliases(engine) == {"Sci-Fi": "Science Fiction"}


def test_renaming_onto_an_existing_tag_merges_them(cli, engine):
    seed(engine, {"a": [("Sci-Fi", "server"), ("sci_fi", "server")], "b": [("Sci-Fi", "tagger")]})
    kept = tag_ids(engine)["sci_fi"]
    out = cli("tags", "rename", "Sci-Fi", "sci_fi", "--json")
    assert out.exit_code == 0, out.stderr
    assert {k: out.json()[k] for k in ("renamed", "merged", "links_moved", "links_removed")} == {
        "renamed": 0, "merged": 1, "links_moved": 1, "links_removed": 1,
    }  # fmt: skip
    assert tag_ids(engine) == {"sci_fi": kept}
    assert links(engine) == {("a", "sci_fi", "server"), ("b", "sci_fi", "tagger")}


def test_merge_into_a_new_name_renames_the_first_and_moves_the_rest(cli, engine):
    seed(engine, {"a": [("Sci-Fi", "server"), ("SF", "server")], "b": [("SF", "server")]})
    out = cli("tags", "merge", "Sci-Fi", "SF", "INTO", "Science Fiction", "--json")
    assert out.exit_code == 0, out.stderr
    assert {k: out.json()[k] for k in ("renamed", "merged", "links_moved", "links_removed")} == {
        "renamed": 1, "merged": 1, "links_moved": 1, "links_removed": 1,
    }  # fmt: skip
    assert links(engine) == {("a", "Science Fiction", "server"), ("b", "Science Fiction", "server")}
    assert set(tag_ids(engine)) == {"Science Fiction"}


def test_drop_removes_the_tags_and_their_links_and_leaves_no_orphans(cli, engine):
    seed(engine, {"a": [("Gore", "server"), ("Drama", "server")], "b": [("Gore", "tagger")]})
    out = cli("tags", "drop", "Gore", "--json")
    assert out.exit_code == 0, out.stderr
    assert (out.json()["dropped"], out.json()["links_removed"]) == (1, 2)
    assert links(engine) == {("a", "Drama", "server")}
    assert set(tag_ids(engine)) == {"Drama"}
    assert aliases(engine) == {"Gore": None}
    assert cli("db", "check").exit_code == 0


def test_existing_aliases_follow_merges_and_drops(cli, engine, tmp_path):
    seed(
        engine,
        {
            "a": [
                ("Sci-Fi", "server"),
                ("sci_fi", "server"),
                ("Gore", "server"),
                ("Drama", "server"),
            ]
        },
    )
    ids = tag_ids(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(ALIAS),
            [
                {"raw_name": "SciFi (old)", "tag_id": ids["Sci-Fi"]},
                {"raw_name": "gore (old)", "tag_id": ids["Gore"]},
                {"raw_name": "drama", "tag_id": None},  # dropped long ago
            ],
        )
    rules = write_rules(tmp_path, "gore,drop\n")
    assert cli("tags", "normalize", "--rules", str(rules)).exit_code == 0
    assert aliases(engine) == {
        "SciFi (old)": "sci_fi", "Sci-Fi": "sci_fi",  # merged away: re-pointed
        "gore (old)": None, "Gore": None,  # dropped
        "Drama": "drama", "drama": "drama",  # a name in the vocabulary is no longer dropped
    }  # fmt: skip


def test_resync_after_normalize_keeps_the_vocabulary_normalized(cli, fake, engine, tmp_path):
    raw = ["Sci-Fi", "sci-fi", "Rock&Roll", "LGBTQ+", "père & fils", "spy"]
    fake.edit("Movies", 0, Tags=raw)
    assert cli("sync").exit_code == 0
    rules = write_rules(tmp_path, "spy,drop\n")
    assert cli("tags", "normalize", "--rules", str(rules)).exit_code == 0
    assert all(clean_tag(name) == name for name in tag_ids(engine))
    for index in range(1, 6):  # the server still sends the raw names
        fake.edit("Movies", index, Tags=raw)
    assert cli("sync").exit_code == 0
    vocabulary = set(tag_ids(engine))
    assert all(clean_tag(name) == name for name in vocabulary)
    assert "spy" not in vocabulary and "Sci-Fi" not in vocabulary
    expected = {"sci_fi", "rock_and_roll", "lgbtq_plus", "père_and_fils"}
    for index in range(6):
        external_id = fake.item_id("Movies", index)
        assert {tag for ext, tag, _ in links(engine) if ext == external_id} == expected
    assert cli("db", "check").exit_code == 0


def test_a_failure_midway_rolls_everything_back(engine):
    seed(
        engine,
        {"a": [("Sci-Fi", "server"), ("sci-fi", "server"), ("Gore", "tagger"), ("Keep", "server")]},
    )
    if engine.dialect.name == "sqlite":  # PostgreSQL enforces varchar(200) itself; SQLite not
        with engine.begin() as conn:
            conn.execute(
                text(
                    "CREATE TRIGGER tag_name_length BEFORE UPDATE OF name ON tag "
                    "WHEN length(NEW.name) > 200 "
                    "BEGIN SELECT RAISE(ABORT, 'value too long for tag.name'); END"
                )
            )
    before = snapshot(engine)
    # Renames come last: the links have moved and the old tags are gone when this one fails.
    plan = Plan(
        [
            Change("Gore", None, DROP, "test"),
            Change("Keep", "k" * 201, RENAME, "test"),
            Change("Sci-Fi", "sci_fi", RENAME, "test"),
            Change("sci-fi", "sci_fi", MERGE, "test"),
        ]
    )
    report = ChangeReport()
    with pytest.raises(DatabaseError, match="nothing was changed: value too long"):
        run_vocabulary_change(engine, "tags", lambda names: plan, report)
    assert snapshot(engine) == before
    with engine.connect() as conn:
        run = conn.execute(select(RUN).where(RUN.c.id == report.run_id)).one()
    assert run.status == "failed" and "value too long" in run.error
    # Nothing was left behind either (the plan's temp table went with the transaction).
    retry = Plan([c for c in plan.changes if c.old != "Keep"])
    run_vocabulary_change(engine, "tags", lambda names: retry, ChangeReport())
    assert links(engine) == {("a", "sci_fi", "server"), ("a", "Keep", "server")}


def test_apply_issues_as_many_statements_for_1000_tags_as_for_10(engine):
    def tags(prefix: str, count: int) -> dict[str, list[tuple[str, str]]]:
        items = {}
        for i in range(count):
            kind = ("Rename", "Merge", "Drop")[i % 3]
            pair = [(f"{prefix} {kind} {i}", "server")]
            if kind == "Merge":  # the clean name exists: a merge, colliding on one item
                pair.append((clean_tag(f"{prefix} {kind} {i}"), "server"))
            items[f"{prefix}-{i}"] = pair
            items[f"{prefix}-{i}-other"] = [(f"{prefix} {kind} {i}", "tagger")]
        return items

    seed(engine, {**tags("Small", 10), **tags("Large", 1000)})
    statements = {}
    for prefix in ("Small", "Large"):
        with engine.connect() as conn:
            names = [n for n in tag_names(conn) if n.lower().startswith(prefix.lower())]
        rules = {clean_tag(n): Rule(None, 1) for n in names if " Drop " in n}
        plan = plan_normalization(names, rules)
        assert len(plan.changes) == (10 if prefix == "Small" else 1000)
        with recorded_statements(engine) as seen:
            apply(engine, plan)
        statements[prefix] = len(seen)
    assert statements["Small"] == statements["Large"] <= 15
    assert not any(" Drop " in n or " Merge " in n for n in tag_ids(engine))


# -- the commands -------------------------------------------------------------------------------


def test_dry_run_lists_every_change_and_writes_nothing(cli, engine):
    seed(engine, {"a": [("Sci-Fi", "server"), ("sci-fi", "server"), ("drama", "server")]})
    before = snapshot(engine)
    out = cli("tags", "normalize", "--dry-run", "--json")
    assert out.exit_code == 0, out.stderr
    assert out.json() == {
        "status": "dry_run", "renamed": 1, "merged": 1, "dropped": 0, "skipped": [],
        "changes": [
            {"old": "Sci-Fi", "new": "sci_fi", "action": "rename", "reason": "clean"},
            {"old": "sci-fi", "new": "sci_fi", "action": "merge", "reason": "clean"},
        ],
    }  # fmt: skip
    table = cli("tags", "normalize", "--dry-run").stdout
    assert "2 changes: 1 renamed, 1 merged, 0 dropped" in table
    assert "sci-fi" in table and "merge" in table
    assert snapshot(engine) == before


def test_bad_rules_file_exits_2_naming_the_line_and_changes_nothing(cli, engine, tmp_path):
    seed(engine, {"a": [("Sci-Fi", "server")]})
    before = snapshot(engine)
    rules = write_rules(tmp_path, "Sci-Fi,rename,scifi\ngore,nuke\n")
    out = cli("tags", "normalize", "--rules", str(rules))
    assert out.exit_code == 2
    assert (
        out.stderr.strip()
        == f"error: {rules}:2: unknown action 'nuke' (expected rename, merge or drop)"
    )
    assert snapshot(engine) == before


def test_hand_made_changes_refuse_unknown_tags_and_bad_syntax(cli, engine):
    seed(engine, {"a": [("Sci-Fi", "server")]})
    out = cli("tags", "rename", "Horror", "horror")
    assert out.exit_code == 2 and "no tag named 'Horror'" in out.stderr
    out = cli("tags", "merge", "Sci-Fi", "sci_fi")
    assert out.exit_code == 2 and "A [B...] INTO C" in out.stderr
    assert set(tag_ids(engine)) == {"Sci-Fi"}


def test_runs_are_recorded(cli, engine):
    seed(engine, {"a": [("Sci-Fi", "server")]})
    run_id = cli("tags", "normalize", "--json").json()["run_id"]
    cli("tags", "drop", "sci_fi")
    with engine.connect() as conn:
        runs = conn.execute(select(RUN).where(RUN.c.id >= run_id).order_by(RUN.c.id)).all()
    assert [(r.command, r.status) for r in runs] == [("normalize", "ok"), ("tags", "ok")]
    assert runs[0].counts["renamed"] == 1 and runs[1].counts["dropped"] == 1


def test_a_running_normalize_or_sync_holds_normalize_off(cli, engine):
    seed(engine, {"a": [("Sci-Fi", "server")]})
    for job, server in (("normalize", "catalog"), ("sync", "home")):
        with job_lock(engine, job, server):
            out = cli("tags", "normalize")
        assert out.exit_code == 75, out.stderr
        assert f"another `catalog {job}`" in out.stderr
    assert set(tag_ids(engine)) == {"Sci-Fi"}


# -- listing ------------------------------------------------------------------------------------


@pytest.fixture
def listed(engine) -> Engine:
    """Tags used by 3, 2, 2, 1 and 0 items (b and c tie)."""
    seed(
        engine,
        {
            "1": [("a", "server"), ("b", "server"), ("c", "server"), ("d", "server")],
            "2": [("a", "server"), ("b", "server"), ("b", "tagger"), ("c", "tagger")],
            "3": [("a", "tagger")],
        },
    )
    with engine.begin() as conn:
        conn.execute(insert(TAG), {"name": "unused"})
    return engine


def pages(cli, *args: str) -> list[list[dict]]:
    """Every page of `catalog tags ARGS --format json`, following the cursors."""
    found, cursor = [], None
    while True:
        out = cli("tags", *args, "--format", "json", *(["--after", cursor] if cursor else []))
        assert out.exit_code == 0, out.stderr
        found.append(out.json()["items"])
        cursor = out.json()["next_cursor"]
        if cursor is None:
            return found


def test_tags_are_listed_by_usage_then_name_a_page_at_a_time(cli, listed):
    found = pages(cli, "--limit", "2")
    assert found == [
        [{"name": "a", "count": 3}, {"name": "b", "count": 2}],
        [{"name": "c", "count": 2}, {"name": "d", "count": 1}],
        [{"name": "unused", "count": 0}],
    ]


def test_tags_are_listed_by_name_a_page_at_a_time(cli, listed):
    found = pages(cli, "--order", "name", "--limit", "3")
    assert [[item["name"] for item in page] for page in found] == [["a", "b", "c"], ["d", "unused"]]


def test_tags_listing_formats(cli, listed):
    ndjson = cli("tags", "--format", "ndjson", "--limit", "2")
    assert [json.loads(line) for line in ndjson.stdout.splitlines()] == [
        {"name": "a", "count": 3}, {"name": "b", "count": 2},
    ]  # fmt: skip
    assert "next page: --after " in ndjson.stderr
    rows = list(csv.DictReader(io.StringIO(cli("tags", "--format", "csv").stdout)))
    assert rows[0] == {"name": "a", "count": "3"} and len(rows) == 5
    table = cli("tags").stdout
    assert "unused" in table and "items" in table


def test_a_cursor_from_another_listing_is_a_usage_error(cli, listed):
    cursor = cli("tags", "--format", "json", "--limit", "1").json()["next_cursor"]
    out = cli("tags", "--order", "name", "--after", cursor)
    assert out.exit_code == 2 and "--after" in out.stderr
    assert cli("tags", "--after", "not-a-cursor").exit_code == 2
