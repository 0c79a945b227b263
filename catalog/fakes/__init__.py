"""Fakes of the outside world for tests, `catalog demo` and benchmarks.

Names are re-exported lazily, so `python -m catalog.fakes.media_server` does not import the
module twice (runpy warns when a package has already imported the module it is asked to run).
"""

from __future__ import annotations

from typing import Any

__all__ = ["FakeLibrary", "FakeMediaServer", "Faults", "ItemShape", "RecordedRequest"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from catalog.fakes import media_server

        return getattr(media_server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
