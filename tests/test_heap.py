"""The collector's settings for a bulk pass (catalog.heap)."""

from __future__ import annotations

import gc
import threading
import weakref

from catalog.heap import BULK_THRESHOLD, bulk_pass


def test_a_pass_freezes_the_heap_it_starts_with_and_restores_the_collector_after():
    before, frozen_before = gc.get_threshold(), gc.get_freeze_count()
    kept = [object() for _ in range(10)]  # noqa: F841 (alive before the pass: frozen by it)
    with bulk_pass():
        assert gc.get_threshold()[0] == BULK_THRESHOLD
        assert gc.get_threshold()[1:] == before[1:]
        assert gc.get_freeze_count() > frozen_before
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen_before


def test_cycles_made_during_a_pass_are_still_collected_without_asking():
    collected = threading.Event()
    with bulk_pass():
        cycle: list = []
        cycle.append(cycle)
        weakref.finalize(_Box(cycle), collected.set)
        del cycle
        # Allocations alone bring the next collection (net ones: a freed object counts back).
        # Should one come before the cycle is dropped, it waits for the next generation's:
        # ten of the youngest's.
        alive = []
        for _ in range(30):
            alive.append([[n] for n in range(BULK_THRESHOLD)])
            if collected.is_set():
                break
        assert collected.is_set()
        assert len(alive) <= 12


class _Box:
    """An object a finalizer can watch, kept alive only by the cycle it is put in."""

    def __init__(self, cycle: list) -> None:
        cycle.append(self)


def test_overlapping_passes_restore_the_collector_only_when_the_last_ends():
    before = gc.get_threshold()
    first_in, second_out = threading.Event(), threading.Event()
    seen = {}

    def second() -> None:
        first_in.wait()
        with bulk_pass():
            pass
        seen["after second"] = gc.get_threshold()
        second_out.set()

    thread = threading.Thread(target=second)
    thread.start()
    with bulk_pass():
        first_in.set()
        second_out.wait()
        seen["inside first"] = gc.get_threshold()
    thread.join()
    assert seen["after second"][0] == BULK_THRESHOLD  # the first pass was still on
    assert seen["inside first"][0] == BULK_THRESHOLD
    assert gc.get_threshold() == before
