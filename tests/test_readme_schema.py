"""The README's schema (for people reading the catalog with other tools) names every table and
column of the models and nothing else, and every origin a link can have."""

from __future__ import annotations

import re
from pathlib import Path

from catalog.db.models import metadata
from catalog.db.writers import SERVER_ORIGIN
from catalog.push import PUSHED_ORIGINS
from catalog.retag import TAGGER_ORIGIN

README = Path(__file__).resolve().parent.parent / "README.md"


def schema_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("\n### Schema\n")
    return text[start : text.index("\n## ", start)]


def documented_tables() -> dict[str, str]:
    """Each `#### \\`table\\`` heading's text, by table name."""
    parts = re.split(r"^#### `(\w+)`$", schema_section(), flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def first_column(text: str, header: str) -> list[str]:
    """The backticked names in the first column of the table whose header row is `header`."""
    rows = text[text.index(header) :].split("\n\n")[0].splitlines()[2:]
    return [re.match(r"\| `(\w+)` \|", row).group(1) for row in rows]


def test_the_readme_documents_every_table_and_column_and_no_other():
    tables = documented_tables()
    assert set(tables) == set(metadata.tables)
    for name, text in tables.items():
        documented = first_column(text, "| column | meaning |")
        assert documented == [c.name for c in metadata.tables[name].columns], name


def test_the_readme_names_every_origin_of_a_tag_link():
    origins = first_column(documented_tables()["media_tag"], "| origin | meaning | replaced by |")
    assert set(origins) == {SERVER_ORIGIN, TAGGER_ORIGIN, *PUSHED_ORIGINS}
