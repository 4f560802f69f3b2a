"""autolabel.stream.map_ahead: results in the items' order, a bounded look-ahead, a worker
that dies loses only the items in flight, and an item's exception reaches the consumer.

The worker functions live at the top of this module: a spawned worker process imports them."""

from __future__ import annotations

import os
import time

import pytest

from autolabel.stream import WorkerLost, map_ahead


def _double_slowly_first(item: int) -> int:
    if item == 0:
        time.sleep(0.5)  # the other worker finishes the later items first
    return 2 * item


def _make_doubler():
    return _double_slowly_first


def _double_or_die(item):
    if item == "die":
        os._exit(1)
    if item == "raise":
        raise ValueError("bad item")
    return 2 * item


def _make_fragile():
    return _double_or_die


def test_results_come_in_the_items_order_whatever_order_the_workers_finish_them():
    results = list(map_ahead(_make_doubler, range(6), workers=2, ahead=4))
    assert results == [(item, 2 * item) for item in range(6)]


def test_items_are_drawn_no_further_than_the_look_ahead_beyond_the_results():
    drawn = []

    def items():
        for item in range(10):
            drawn.append(item)
            yield item

    stream = map_ahead(_make_doubler, items(), workers=1, ahead=3)
    assert next(stream) == (0, 0)
    assert drawn == [0, 1, 2]
    assert next(stream) == (1, 2)
    assert drawn == [0, 1, 2, 3]
    stream.close()


def test_a_dead_worker_loses_the_items_in_flight_and_a_fresh_pool_does_the_rest():
    results = dict(map_ahead(_make_fragile, [0, 1, "die", 3, 4, 5, 6], workers=1, ahead=2))
    assert isinstance(results["die"], WorkerLost) and "died" in results["die"].reason
    assert results[3] in (6, results["die"])  # in flight with the dead one, or done first
    assert [results[item] for item in (0, 1, 4, 5, 6)] == [0, 2, 8, 10, 12]


def test_an_exception_for_an_item_is_raised_when_its_turn_comes():
    stream = map_ahead(_make_fragile, [1, "raise", 2], workers=1, ahead=3)
    assert next(stream) == (1, 2)
    with pytest.raises(ValueError, match="bad item"):
        next(stream)
