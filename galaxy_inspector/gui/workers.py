"""The only adapter between the engine and Qt threads (after napari's ``thread_worker``).

The engine's long tasks are plain functions or generators. ``Worker`` runs one on the global
``QThreadPool`` and reports through Qt signals, which arrive on the GUI thread:
``started``, ``yielded(value)`` (each item a generator yields: progress), ``returned(result)``,
``errored(exception)``, ``aborted`` and ``finished`` (always last). Cancelling is cooperative: a
generator is closed at its next ``yield``; a function may poll the ``should_stop`` callable it is
given when it accepts one (``pass_stop=True``) and returns normally (``returned``) when it
stops early. A function that reports progress through a
callback instead of yielding gets ``report`` (``pass_report=True``), which emits ``yielded``.

While any worker runs, Python's cyclic garbage collector runs only on the GUI thread
(``_collect_on_gui_thread``): run by the allocation of a worker thread, it would destroy there an
unreachable Qt object (a closed dialog's menu), and Qt deadlocks (seen: a ``QMenu`` destructor
waiting for the GIL in a worker that was building a network, while the GUI thread waited for the
worker).

superqt's ``thread_worker`` is not used: a running one replaces the process's warning filters
(superqt 0.9), and it drops ``returned`` after ``quit``, which a cancelled batch needs to report.
"""

from __future__ import annotations

import gc
import inspect
import threading
import traceback

from PySide6.QtCore import QCoreApplication, QObject, QRunnable, QThreadPool, QTimer, Signal

__all__ = ["Worker", "WorkerSignals", "start_worker", "active_workers", "wait_for_workers"]

_ACTIVE: set[Worker] = set()
_ACTIVE_LOCK = threading.Lock()
#: Milliseconds between the GUI thread's garbage collections while workers run.
GC_INTERVAL_MS = 500
_GC_TIMER: list[QTimer] = []  # the GUI thread's collector, made on first use


class WorkerSignals(QObject):
    """Signals of a ``Worker`` (a QRunnable cannot carry signals itself)."""

    started = Signal()
    yielded = Signal(object)
    returned = Signal(object)
    errored = Signal(object)
    aborted = Signal()
    finished = Signal()


class Worker(QRunnable):
    """Run ``func(*args, **kwargs)`` off the GUI thread; a generator's items become ``yielded``."""

    def __init__(self, func, *args, pass_stop: bool = False, pass_report: bool = False,
                 **kwargs):
        super().__init__()
        self.setAutoDelete(False)
        self.signals = WorkerSignals()
        self._stop = threading.Event()
        self._done = threading.Event()
        if pass_stop:
            kwargs["should_stop"] = self._stop.is_set
        if pass_report:
            kwargs["report"] = self.signals.yielded.emit
        self._call = (func, args, kwargs)
        self.traceback = ""

    def quit(self) -> None:
        """Ask the task to stop at its next opportunity (no-op once finished)."""
        self._stop.set()

    @property
    def abort_requested(self) -> bool:
        return self._stop.is_set()

    @property
    def is_running(self) -> bool:
        return not self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the task finished (tests and shutdown only, never in a slot)."""
        return self._done.wait(timeout)

    def run(self) -> None:  # called on a pool thread
        func, args, kwargs = self._call
        self.signals.started.emit()
        try:
            result = func(*args, **kwargs)
            if inspect.isgenerator(result):
                finished, result = self._drain(result)
                if not finished:
                    self.signals.aborted.emit()
                    return
            self.signals.returned.emit(result)
        except Exception as exc:  # reported to the GUI, which shows it to the user
            self.traceback = traceback.format_exc()
            self.signals.errored.emit(exc)
        finally:
            self._done.set()
            self.signals.finished.emit()

    def _drain(self, generator) -> tuple[bool, object]:
        """(ran to the end, return value) of a generator, closing it early on ``quit``."""
        while True:
            if self._stop.is_set():
                generator.close()
                return False, None
            try:
                self.signals.yielded.emit(next(generator))
            except StopIteration as stop:
                return True, stop.value


def _collect_generations() -> None:
    """What the automatic collector would do now: the oldest generation over its threshold."""
    counts, thresholds = gc.get_count(), gc.get_threshold()
    for generation in (2, 1, 0):
        if counts[generation] > thresholds[generation]:
            gc.collect(generation)
            return


def _collect_on_gui_thread(running: bool) -> None:
    """Hand the garbage collector to the GUI thread while workers run (called there), and back
    to Python's automatic collection when none does."""
    if not _GC_TIMER:
        timer = QTimer()
        timer.setInterval(GC_INTERVAL_MS)
        timer.timeout.connect(_collect_generations)
        _GC_TIMER.append(timer)
    if running:
        gc.disable()
        _GC_TIMER[0].start()
    else:
        _GC_TIMER[0].stop()
        gc.enable()


def _forget(worker: Worker) -> None:
    with _ACTIVE_LOCK:
        _ACTIVE.discard(worker)
        idle = not _ACTIVE
    if idle:
        _collect_on_gui_thread(False)


def start_worker(worker: Worker) -> Worker:
    """Queue ``worker`` on the global thread pool, keeping it alive until it finishes."""
    with _ACTIVE_LOCK:
        _ACTIVE.add(worker)
    _collect_on_gui_thread(True)
    worker.signals.finished.connect(lambda: _forget(worker))
    QThreadPool.globalInstance().start(worker)
    return worker


def active_workers() -> list[Worker]:
    with _ACTIVE_LOCK:
        return list(_ACTIVE)


def wait_for_workers(timeout: float = 30.0) -> bool:
    """Ask every running worker to stop and wait for them (application shutdown, tests)."""
    for worker in active_workers():
        worker.quit()
    done = QThreadPool.globalInstance().waitForDone(int(timeout * 1000))
    if done:  # deliver their finished signals: the collector goes back to Python
        QCoreApplication.sendPostedEvents()
    return done
