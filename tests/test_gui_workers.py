"""Workers and the garbage collector: while one runs, cycles are collected on the GUI thread
only, so no Qt object is ever destroyed in a worker thread (that deadlocked a test run)."""

import gc
import threading

import pytest
from PySide6.QtWidgets import QMenu

from galaxy_inspector.gui.workers import Worker, start_worker, wait_for_workers

pytestmark = pytest.mark.gui


class _Cycle:
    """A reference cycle holding a Qt widget, as a closed dialog can leave behind."""

    destroyed_in: list = []

    def __init__(self):
        self.me = self
        self.menu = QMenu()

    def __del__(self):
        _Cycle.destroyed_in.append(threading.current_thread() is threading.main_thread())


def test_cycles_are_collected_on_the_gui_thread_while_a_worker_runs(qtbot):
    release = threading.Event()

    def busy():  # allocates, as building a network does, until released
        junk = []
        while not release.wait(0.001):
            junk.append([object() for _ in range(50)])
            del junk[:-10]

    was_enabled = gc.isenabled()
    worker = start_worker(Worker(busy))
    try:
        assert not gc.isenabled()  # only the GUI thread's timer collects now
        _Cycle()
        kept = [[] for _ in range(5 * gc.get_threshold()[0])]  # due for a collection
        qtbot.waitUntil(lambda: bool(_Cycle.destroyed_in), timeout=10_000)
        assert _Cycle.destroyed_in == [True]
        del kept
    finally:
        release.set()
        assert wait_for_workers(10)
    assert not worker.is_running
    assert gc.isenabled() == was_enabled  # handed back to Python once no worker runs
