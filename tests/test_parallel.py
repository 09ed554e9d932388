"""ordered_map outlives dead workers wherever they die: in an item's turn, or before it."""

import os
import signal
import time

import pytest

from galaxy_inspector.parallel import ordered_map


def _double_or_die(item):
    if item == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    return 2 * item


def _died(item, reason):
    return f"{item}: {reason}"


def _slow_after_first(items, pause):
    """The items, with a pause after the first: a worker that dies on it has broken the pool
    before the next item is submitted."""
    for k, item in enumerate(items):
        yield item
        if k == 0:
            time.sleep(pause)


@pytest.mark.slow
def test_a_worker_dead_before_the_next_submit_fails_only_its_item():
    items = ["die", 1, 2, 3, 4, 5]
    results = list(ordered_map(_double_or_die, _slow_after_first(items, 3.0), 2, died=_died))
    assert results[0].startswith("die: died (signal 9, SIGKILL")
    assert results[1:] == [2, 4, 6, 8, 10]


@pytest.mark.slow
def test_a_worker_dead_in_the_middle_keeps_order_and_every_item():
    items = [1, 2, "die", 3, 4, 5, 6, 7]
    results = list(ordered_map(_double_or_die, items, 2, died=_died))
    assert results[:2] == [2, 4] and results[2].startswith("die: died")
    assert results[3:] == [6, 8, 10, 12, 14]
