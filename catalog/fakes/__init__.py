"""Fakes of the outside world for tests, `catalog demo` and benchmarks.

Names are re-exported lazily, so `python -m catalog.fakes.media_server` does not import the
module twice (runpy warns when a package has already imported the module it is asked to run).
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULES = {
    "FakeLibrary": "media_server", "FakeMediaServer": "media_server", "Faults": "media_server",
    "ItemShape": "media_server", "RecordedRequest": "media_server",
    "FakeTagger": "tagger", "TaggerFaults": "tagger",
}  # fmt: skip
__all__ = list(_MODULES)


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        module = importlib.import_module(f"catalog.fakes.{_MODULES[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
