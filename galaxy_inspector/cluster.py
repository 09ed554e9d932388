"""Running work on a Dask cluster: where the cluster is, its client, and tasks streamed back.

``--cluster ADDRESS`` (``galaxy-inspector --batch``, ``galaxy-inspector-train simulate``):

- ``local:N`` — a ``distributed.LocalCluster`` of N single-threaded worker processes here;
- ``tcp://HOST:PORT`` (any ``scheme://``) or the path of a scheduler file — an existing
  scheduler (``dask scheduler --scheduler-file FILE``, then ``dask worker`` on the nodes);
- ``slurm``, ``pbs``, ``sge``, ``lsf``, ``htcondor`` — the dask-jobqueue cluster of that
  name, configured from the user's Dask configuration (``jobqueue.<name>`` in
  ``~/.config/dask/jobqueue.yaml``) and scaled to ``jobs`` jobs.

dask, distributed and dask-jobqueue are the optional extra ``cluster``; without them a
cluster run is refused with a one-line message. ``stream`` submits one task per item with a
bounded number in flight (the client's memory stays flat in the number of items) and yields
results as they complete; the scheduler retries the task of a worker that dies on another
worker. Workers must see the same files as the client (inputs, bundles): a shared filesystem.
``worker_models`` loads the bundles once per worker process.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from galaxy_inspector.errors import BundleError, GalaxyInspectorError, InputError, user_message

__all__ = ["ClusterAddress", "parse_address", "check_address", "open_client", "dashboard_link",
           "stream", "model_key", "worker_models", "ClusterLost", "INSTALL_HINT"]

INSTALL_HINT = "pip install 'galaxy-inspector[cluster]'"
#: dask-jobqueue's cluster class of each batch system.
JOBQUEUE_CLASSES = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster",
                    "lsf": "LSFCluster", "htcondor": "HTCondorCluster"}
#: Seconds to reach an existing scheduler before giving up (a typo'd address fails fast).
CONNECT_TIMEOUT_S = 10
#: Tasks in flight per worker thread: one running, one queued, so no worker waits for the
#: client; at least ``MIN_IN_FLIGHT`` while a jobqueue cluster's workers are still queued.
IN_FLIGHT_PER_THREAD = 2
MIN_IN_FLIGHT = 4
#: How often the number of worker threads (hence the window) is asked again, in seconds.
WINDOW_REFRESH_S = 2.0


class ClusterLost(GalaxyInspectorError, OSError):
    """The scheduler stopped answering in the middle of a run."""


LOST = ("the Dask scheduler stopped answering; the rows written so far are kept: add --resume "
        "to finish")


@dataclass(frozen=True)
class ClusterAddress:
    """A parsed ``--cluster``: ``kind`` is ``local`` (``value``: workers), ``scheduler`` (an
    address), ``scheduler_file`` (a path) or ``jobqueue`` (a key of ``JOBQUEUE_CLASSES``)."""

    kind: str
    value: str | int


def parse_address(text: str) -> ClusterAddress:
    """``--cluster`` text -> ``ClusterAddress``; ``InputError`` naming the forms it accepts."""
    text = str(text).strip()
    forms = ("give local:N, tcp://HOST:PORT, a scheduler file, or one of "
             + ", ".join(JOBQUEUE_CLASSES))
    if text.lower().startswith("local:"):
        count = text[len("local:"):]
        if not count.isdigit() or int(count) < 1:
            raise InputError(f"--cluster {text}: local:N needs a whole number of workers of at "
                             "least 1, e.g. local:4")
        return ClusterAddress("local", int(count))
    if "://" in text:
        return ClusterAddress("scheduler", text)
    if text.lower() in JOBQUEUE_CLASSES:
        return ClusterAddress("jobqueue", text.lower())
    path = Path(text).expanduser()
    if path.is_file():
        if not _is_scheduler_file(path):
            raise InputError(f"--cluster {text}: not a Dask scheduler file (a JSON file with an "
                             "\"address\", as dask scheduler --scheduler-file writes it)")
        return ClusterAddress("scheduler_file", str(path))
    if path.suffix.lower() == ".json":
        raise InputError(f"--cluster {text}: no such scheduler file (dask scheduler "
                         "--scheduler-file writes it)")
    raise InputError(f"--cluster {text!r} is not a cluster address: {forms}")


def _is_scheduler_file(path: Path) -> bool:
    import json

    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(content, dict) and isinstance(content.get("address"), str)


def check_address(text: str) -> ClusterAddress:
    """``parse_address``, and Dask installed (with the address's dask-jobqueue where needed)."""
    address = parse_address(text)
    needed = ["dask", "distributed"] + (["dask_jobqueue"] if address.kind == "jobqueue" else [])
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise InputError(f"--cluster needs {', '.join(missing)}, which are not installed: "
                         f"{INSTALL_HINT}")
    return address


@contextlib.contextmanager
def open_client(text: str, jobs: int = 1) -> Iterator:
    """A ``distributed.Client`` of the cluster at ``text`` (see the module docstring), closed
    (and a cluster it started shut down) on exit. ``InputError`` when the cluster cannot be
    started or reached within ``CONNECT_TIMEOUT_S``."""
    address = check_address(text)
    from distributed import Client, LocalCluster

    with contextlib.ExitStack() as stack:
        try:
            if address.kind == "local":
                cluster = stack.enter_context(LocalCluster(  # its routine warnings unsaid
                    n_workers=address.value, threads_per_worker=1, processes=True,
                    dashboard_address=":0", silence_logs=logging.ERROR,
                    preload=[__name__]))  # dask_setup below, in each worker
                client = Client(cluster)
            elif address.kind == "jobqueue":
                cluster = stack.enter_context(_jobqueue_cluster(address.value, jobs))
                client = Client(cluster)
            elif address.kind == "scheduler":
                client = Client(address.value, timeout=CONNECT_TIMEOUT_S)
            else:
                client = Client(scheduler_file=address.value, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            raise InputError(f"--cluster {text}: the Dask scheduler could not be reached within "
                             f"{CONNECT_TIMEOUT_S} s ({_reason(exc)}); is it running, and is the "
                             "address right?") from None
        stack.enter_context(client)
        yield client


def _jobqueue_cluster(kind: str, jobs: int):
    """dask-jobqueue's cluster for batch system ``kind`` from the Dask configuration,
    scaled to ``jobs`` jobs."""
    import dask_jobqueue

    try:
        cluster = getattr(dask_jobqueue, JOBQUEUE_CLASSES[kind])()
    except ValueError as exc:  # no cores/memory in the configuration
        raise InputError(f"--cluster {kind}: {_reason(exc)} (set them under jobqueue: {kind}: "
                         "in ~/.config/dask/jobqueue.yaml; see the README)") from None
    cluster.scale(jobs=jobs)
    return cluster


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def dashboard_link(client) -> str:
    """The Dask dashboard's address, and what to install when it cannot show anything."""
    link = client.dashboard_link or ""
    if link and importlib.util.find_spec("bokeh") is None:
        link += " (pip install bokeh to see it)"
    return link


def stream(client, function: Callable, items: Iterable, failed: Callable, **kwargs) -> Iterator:
    """``function(item, **kwargs)`` for each of ``items`` as a task of ``client``'s cluster,
    yielded as the tasks complete (not in input order).

    At most ``IN_FLIGHT_PER_THREAD`` tasks per worker thread are submitted at a time, and the
    next item is taken from ``items`` only when a task completes. A task that raises, or whose
    workers all died (the scheduler retries a lost worker's task elsewhere, then gives up with
    ``KilledWorker``), yields ``failed(item, reason)``. Closing the generator (a cancelled run)
    cancels the tasks in flight. ``ClusterLost`` when the scheduler goes away.
    """
    from distributed import as_completed

    items = iter(items)
    carried: dict = {}  # future -> its item
    completed = as_completed()
    window = _Window(client)

    def refill():
        while len(carried) < window.size():
            item = next(items, _END)
            if item is _END:
                return
            future = client.submit(function, item, pure=False, **kwargs)
            carried[future] = item
            completed.add(future)

    try:
        refill()
        for future in completed:
            item = carried.pop(future)
            if future.status == "finished":
                yield future.result()
            elif future.status == "error":
                yield failed(item, _task_failure(future.exception()))
            else:  # cancelled by the scheduler: it restarted or went away
                raise ClusterLost(LOST)
            refill()
    except ClusterLost:
        raise
    except OSError:  # distributed's CommClosedError: the scheduler's connection went
        raise ClusterLost(LOST) from None
    finally:
        if carried:
            with contextlib.suppress(OSError):  # a scheduler gone has nothing left to cancel
                client.cancel(list(carried))


_END = object()


class _Window:
    """How many tasks may be in flight: ``IN_FLIGHT_PER_THREAD`` per worker thread (workers
    come and go on a jobqueue cluster, so it is asked again every ``WINDOW_REFRESH_S``)."""

    def __init__(self, client):
        self.client = client
        self.asked = -float("inf")
        self.value = MIN_IN_FLIGHT

    def size(self) -> int:
        now = time.monotonic()
        if now - self.asked > WINDOW_REFRESH_S:
            threads = sum(self.client.nthreads().values())
            self.value = max(MIN_IN_FLIGHT, IN_FLIGHT_PER_THREAD * threads)
            self.asked = now
        return self.value


def _task_failure(exc: BaseException) -> str:
    """Why a task gave no result, in words."""
    from distributed import KilledWorker

    if isinstance(exc, KilledWorker):
        return ("failed: every Dask worker that ran it died (killed, perhaps for memory; see "
                "the workers' logs)")
    return f"failed: {user_message(exc)}"


# -- on the workers -------------------------------------------------------------------------

def dask_setup(worker) -> None:
    """Dask's preload hook, run in each worker process of a ``local:N`` cluster as it starts:
    a Ctrl-C at the terminal goes to the whole process group, and this process alone stops
    the run and says so (the workers would each print a traceback)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


_models: dict = {}
_models_lock = threading.Lock()


def model_key(morphology, properties) -> tuple:
    """What a worker needs to load the client's models: ``(bundle folder, weights SHA-256)``
    of each, morphology first."""
    return tuple((str(m.bundle.path), m.bundle.sha256)
                 for m in ([morphology] if morphology else []) + list(properties))


def worker_models(key: tuple):
    """``(morphology or None, [property models])`` of ``model_key`` ``key``, loaded once per
    worker process. ``BundleError`` when a bundle on this worker is not the client's (the
    workers must read the same bundle folders: a shared filesystem)."""
    with _models_lock:
        if key not in _models:
            import torch

            from galaxy_inspector.engine import load_models

            torch.set_num_threads(1)  # Dask's worker threads and processes are the parallelism
            with _may_start_children():
                morphology, properties = load_models([path for path, _ in key])
            loaded = ([morphology] if morphology else []) + properties
            for (path, sha), model in zip(key, loaded, strict=True):
                if model.bundle.sha256 != sha:
                    raise BundleError(f"the bundle {path} on this Dask worker has other weights "
                                      f"({model.bundle.sha256[:12]}...) than the client's "
                                      f"({sha[:12]}...); workers must see the same bundle")
            _models[key] = (morphology, properties)
        return _models[key]


@contextlib.contextmanager
def _may_start_children():
    """Dask's worker processes are daemonic, and a daemonic process may not start children;
    loading a LightGBM bundle starts one to probe its models (``gbm_text.verify_models``) and
    waits for it, so the flag is lifted meanwhile."""
    import multiprocessing

    process = multiprocessing.current_process()
    daemon = process.daemon
    process.daemon = False
    try:
        yield
    finally:
        process.daemon = daemon
