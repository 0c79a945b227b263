"""What every benchmark shares: keeping its own section of BENCHMARKS.md up to date."""

from __future__ import annotations

from pathlib import Path


def write_section(path: Path, header: str, section: str) -> None:
    """Replace the section that starts with `header` (up to the next `## `), keeping the
    others; append it when the file has none yet."""
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    if header in text:
        start = text.index(header)
        end = text.find("\n## ", start + len(header))
        text = text[:start] + section + (text[end + 1 :] if end != -1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)
