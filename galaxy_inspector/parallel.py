"""An ordered map over worker processes that outlives a dead worker and stays quiet on Ctrl-C.

``ordered_map(function, items, workers, died)`` yields ``function(item)`` for every item, in
order, computed in ``workers`` spawned processes with at most ``2 * workers`` items in flight
(memory stays flat in the number of items). ``--batch`` reads and cuts its images this way.

- A worker that dies (the out-of-memory killer, a crash in a C library) breaks a
  ``ProcessPoolExecutor`` and fails every item it held without saying which one killed it. Each
  such item is then computed again alone, in a process of its own, and a fresh pool takes the
  items after them; an item whose process dies twice gets ``died(item, why)`` instead
  ("died (signal 9, SIGKILL: ...)").
- Workers ignore SIGINT: Ctrl-C at a terminal goes to the whole process group, and the main
  process alone stops the run and says so. SIGINT is blocked while a worker starts (workers
  inherit the signal mask), so not even a Ctrl-C during its start-up prints a traceback.
- Workers exit with their parent (``exit_with_parent``), even when it is killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool

__all__ = ["ordered_map", "exit_with_parent", "death_reason", "usable_cores"]


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the system has one, as under
    taskset or a container's cpuset), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1

#: Tries of an item in a process of its own before it is given up as the one killing workers.
ALONE_TRIES = 2


def ordered_map(function: Callable, items: Iterable, workers: int,
                died: Callable[[object, str], object]) -> Iterator:
    """``function(item)`` for each of ``items`` in order, in ``workers`` processes; an item
    whose process dies twice yields ``died(item, reason)`` (see the module docstring).
    ``function`` and the items must pickle."""
    pool = _pool(workers)
    window: deque = deque()  # (item, future), in input order
    try:
        for item in items:
            try:
                with _sigint_blocked():  # the pool starts its workers in submit
                    future = pool.submit(function, item)
            except BrokenProcessPool:  # a worker died before this item's turn came
                pool = _resettle(window, pool, function, workers, died)
                with _sigint_blocked():
                    future = pool.submit(function, item)
            window.append((item, future))
            if len(window) >= 2 * workers:
                result, pool = _first_result(window, pool, function, workers, died)
                yield result
        while window:
            result, pool = _first_result(window, pool, function, workers, died)
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _first_result(window: deque, pool, function, workers: int, died):
    """The result of the first item of ``window`` (removed from it) and the pool to go on with
    (a new one where a worker died: see ``_resettle``)."""
    item, future = window[0]
    try:
        result = future.result()
    except BrokenProcessPool:
        pool = _resettle(window, pool, function, workers, died)
        result = window[0][1].result()
    window.popleft()
    return result, pool


def _resettle(window: deque, pool, function, workers: int, died):
    """After a worker of ``pool`` died: every item of ``window`` gets a finished future (its
    result where the broken pool had computed it, else computed alone) and a new pool is
    returned to go on with."""
    pool.shutdown(wait=False, cancel_futures=True)
    for k, (item, future) in enumerate(window):
        done = Future()
        done.set_result(future.result() if _succeeded(future)
                        else _alone(function, item, died))
        window[k] = (item, done)
    return _pool(workers)


def _succeeded(future: Future) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None


def _alone(function, item, died):
    """``function(item)`` in a process of its own (tried ``ALONE_TRIES`` times), or
    ``died(item, reason)`` when that process dies each time."""
    import multiprocessing as mp

    context = mp.get_context("spawn")
    for _ in range(ALONE_TRIES):
        receive, send = context.Pipe(duplex=False)
        process = context.Process(target=_send_result, args=(send, function, item), daemon=True)
        with _sigint_blocked():
            process.start()
        send.close()
        try:
            return receive.recv()
        except EOFError:  # the process died before it answered
            pass
        finally:
            receive.close()
            process.join()
    return died(item, death_reason(process.exitcode))


def _send_result(connection, function, item) -> None:
    """In the process of ``_alone``: compute and send back."""
    _worker_start()
    connection.send(function(item))
    connection.close()


def death_reason(exitcode: int | None) -> str:
    """How a worker process ended, in words: "died (signal 9, SIGKILL: ...)"."""
    if exitcode is not None and exitcode < 0:
        number = -exitcode
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "unknown signal"
        why = (": killed, often by the out-of-memory killer" if number == signal.SIGKILL
               else ": it crashed" if number in (signal.SIGSEGV, signal.SIGBUS) else "")
        return f"died (signal {number}, {name}{why})"
    return f"exited unexpectedly (status {exitcode})"


def _pool(workers: int):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                               initializer=_worker_start)


@contextlib.contextmanager
def _sigint_blocked():
    """SIGINT blocked in this thread (where supported): a process started meanwhile inherits
    the mask and so cannot be interrupted before ``_worker_start`` ignores SIGINT."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _worker_start() -> None:
    """In a worker: ignore SIGINT (then unblock it: a Ctrl-C pending from the start-up is
    dropped) and exit with the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    exit_with_parent()


def exit_with_parent() -> None:
    """In a worker: exit as soon as the parent process dies (e.g. kill -9), leaving no orphans.

    On Linux the kernel itself kills the worker (``PR_SET_PDEATHSIG``), even when it is busy in
    C code holding the GIL; elsewhere a thread waits on the parent's sentinel.
    """
    import multiprocessing as mp
    import sys
    import threading
    from multiprocessing.connection import wait

    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    parent = mp.parent_process()
    if parent is not None:
        threading.Thread(target=lambda: (wait([parent.sentinel]), os._exit(1)),
                         daemon=True).start()
