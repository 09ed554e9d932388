"""Headless batch measurement: INPUTs -> HDF5 catalogue, streaming, parallel, resumable.

``run_batch`` is what ``galaxy-inspector --batch`` and the GUI's batch dialog both call::

    summary = run_batch(["images/", "targets.csv"], "cat.h5", BatchOptions(workers=2),
                        progress=lambda p: print(p.done, p.failed), cancel=lambda: False)

Pipeline: ``expand_inputs`` yields targets lazily; consecutive targets of one file form a work
unit; units are read and cut into stamps (``prepare_unit``) in ``workers`` processes with a
bounded number in flight (memory stays flat in the number of inputs); the main process runs the
model on batches of stamps and the one writer appends rows chunk by chunk. Every target yields at
least one row: a measurement, or ``status=error`` with a one-line reason. A target's rows are
always written together, so ``--resume`` (which skips input keys already in the file) finishes a
killed run with every input exactly once.

Models: ``BatchOptions.model`` is one bundle or a list (``--model`` repeated): at most one
morphology model plus any number of physical-property models (``engine.load_models``); property
models alone give a property-only run. Each property model gets its own stamp per object (its
bands from the same file: planes of a FITS cube by band name, or a JPEG's R, G, B channels) and
the redshift/photometry of the input table's row. A property model that cannot predict a row
(no redshift, missing band, uncalibrated fluxes) leaves that row's columns NaN with the reason
in ``property_error``; the morphology is still measured, and the row counts as ``partial``
(``BatchProgress.partial``; the CLI exits 2). In a property-only run a row no model could
predict is an error row.
"""

from __future__ import annotations

import dataclasses
import os
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from galaxy_inspector.catalogue import (
    CatalogueWriter,
    Provenance,
    RowBuilder,
    RowOrigin,
    provenance,
)
from galaxy_inspector.engine import (
    StampSpec,
    bare_measurements,
    load_models,
    measure_stamps,
    stamp_for,
)
from galaxy_inspector.errors import InputError, user_message
from galaxy_inspector.io import Target, expand_inputs, read_image
from galaxy_inspector.physical_properties.measure import (
    DEFAULT_PROPERTY_SAMPLES,
    measure_properties,
)
from galaxy_inspector.physical_properties.stamps import PropertySpec, property_inputs
from galaxy_inspector.preprocessing import NOMINAL_SKY_SIGMA_NJY, Stamp, detect_galaxies

__all__ = ["BatchOptions", "BatchProgress", "run_batch", "prepare_unit"]

UNIT_SIZE = 64  # targets of the same file read together
# A chunk is written after batch_size stamps or this many inputs (error rows need no model).
# Chunks depend only on the inputs, not on timing, so results do not depend on --workers.
MAX_PENDING_INPUTS = 256


@dataclass
class BatchOptions:
    """Settings of a batch run (the ``--batch`` options). ``model``: one bundle name/path or a
    list of them (None: the default morphology model)."""

    model: str | list | None = None
    n_samples: int | None = None
    save_samples: bool = False
    resume: bool = False
    overwrite: bool = False
    workers: int = 1
    pixel_scale: float | None = None
    zero_point: float | None = None
    hdu: int | str | None = None
    plane: int = 0
    detect: bool = False
    seed: int = 0
    batch_size: int = 32
    command_line: str = ""
    redshift_column: str | None = None


@dataclass
class BatchProgress:
    """Counts so far: rows written (``done`` ok + ``failed`` errors), inputs answered in this
    run (``inputs``; with --detect one input gives several rows), inputs ``skipped`` by resume,
    ``partial``: ok rows where a property model could not predict (see ``property_error``).
    ``notes`` are things the user should know about the run (e.g. demo models).
    """

    done: int = 0
    partial: int = 0
    notes: list = field(default_factory=list)
    inputs: int = 0
    failed: int = 0
    skipped: int = 0
    elapsed: float = 0.0
    cancelled: bool = False

    @property
    def rate(self) -> float:
        """Galaxies (rows) per second."""
        return (self.done + self.failed) / self.elapsed if self.elapsed > 0 else 0.0


@dataclass
class _Prepared:
    """One target after reading: its stamps (several with --detect) or an error."""

    target: Target
    source: str
    hdu: int = -1
    stamps: list = field(default_factory=list)
    error: str = ""
    property_inputs: list = field(default_factory=list)  # per stamp: one PropertyInput a model


def _seed(key: str, seed: int) -> int:
    return (zlib.crc32(key.encode("utf-8")) + seed) % (2 ** 32)


def _prepare_target(target: Target, image, spec: StampSpec, detect: bool,
                    seed: int) -> list[Stamp]:
    if target.ra is not None:
        if image.wcs is None:
            raise InputError("the image has no celestial WCS, so the table's RA/Dec cannot be "
                             "placed on it; give x/y columns instead")
        positions = [image.sky_to_pixel(target.ra, target.dec) + (0,)]
    elif target.x is not None:
        positions = [(target.x, target.y, 0)]
    elif detect:
        positions = detect_galaxies(image)
        if not positions:
            raise InputError("no galaxy detected in the image")
    else:
        ny, nx = image.shape
        positions = [((nx - 1) / 2.0, (ny - 1) / 2.0, 0)]
    stamps = []
    for k, (x, y, flag) in enumerate(positions):
        stamp = stamp_for(image, x, y, spec, seed=_seed(f"{target.key}#{k}", seed))
        if flag:
            stamp = dataclasses.replace(stamp, flags=stamp.flags | flag)
        stamps.append(stamp)
    return stamps


def prepare_unit(targets: list[Target], spec: StampSpec, options: BatchOptions,
                 property_specs: tuple = ()) -> list[_Prepared]:
    """Read the file shared by ``targets`` once and cut each target's stamps (worker side):
    the morphology (or reference) stamp and, per property model, its own stamp."""
    out = [_Prepared(t, source=t.path, error=t.error) for t in targets]
    todo = [p for p in out if not p.error]
    if not todo:
        return out
    try:
        image = read_image(targets[0].path, hdu=options.hdu, plane=options.plane,
                           pixel_scale=options.pixel_scale, zero_point=options.zero_point)
    except Exception as exc:  # every input is answered, whatever a hostile file raises
        for p in todo:
            p.error = user_message(exc)
        return out
    bands_cache = {}
    for p in todo:
        p.hdu = image.hdu
        try:
            p.stamps = _prepare_target(p.target, image, spec, options.detect, options.seed)
        except Exception as exc:  # as above: one bad target must not stop the others
            p.error = user_message(exc)
            continue
        if property_specs:
            t = p.target
            p.property_inputs = property_inputs(
                image, [(s.x, s.y) for s in p.stamps], property_specs,
                [_seed(f"{t.key}#{k}", options.seed) for k in range(len(p.stamps))],
                pixel_scale=options.pixel_scale, zero_point=options.zero_point,
                redshift=t.redshift, redshift_note=t.redshift_note, photometry=t.values,
                bands_cache=bands_cache)
    return out


def _units(targets: Iterable[Target], done_keys: set, counts: BatchProgress) -> Iterator[list]:
    """Consecutive targets of one file (at most UNIT_SIZE), skipping keys already done."""
    seen = set()
    unit: list[Target] = []
    for target in targets:
        if target.key in done_keys:
            counts.skipped += 1
            continue
        if target.key in seen:
            continue
        seen.add(target.key)
        if unit and (unit[0].path != target.path or len(unit) >= UNIT_SIZE):
            yield unit
            unit = []
        unit.append(target)
    if unit:
        yield unit


def _prepared_stream(units: Iterator[list], spec: StampSpec, options: BatchOptions,
                     property_specs: tuple = ()):
    """Prepared units in input order; ``workers`` > 1 reads them in parallel processes."""
    if options.workers <= 1:
        for unit in units:
            yield prepare_unit(unit, spec, options, property_specs)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    window = deque()
    with ProcessPoolExecutor(options.workers, mp_context=mp.get_context("spawn"),
                             initializer=_exit_with_parent) as pool:
        try:
            for unit in units:
                window.append(pool.submit(prepare_unit, unit, spec, options, property_specs))
                if len(window) >= 2 * options.workers:
                    yield window.popleft().result()
            while window:
                yield window.popleft().result()
        finally:
            for future in window:
                future.cancel()


def _exit_with_parent() -> None:
    """In a worker: exit as soon as the batch process dies (e.g. kill -9), leaving no orphans.

    On Linux the kernel itself kills the worker (``PR_SET_PDEATHSIG``), even when it is busy in
    C code holding the GIL; elsewhere a thread waits on the parent's sentinel.
    """
    import multiprocessing as mp
    import signal
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


def _origin(prep: _Prepared, k: int) -> RowOrigin:
    """What the catalogue says about stamp ``k`` of ``prep`` besides its measurement."""
    t = prep.target
    return RowOrigin(id=t.id if len(prep.stamps) <= 1 else f"{t.id}#{k}", source=prep.source,
                     input_key=t.key, hdu=prep.hdu, redshift=t.redshift, error=prep.error,
                     x=t.x, y=t.y, ra=t.ra, dec=t.dec)


def _open_writer(out: Path, options: BatchOptions, prov: Provenance, parameters, n_saved,
                 property_parameters=()):
    """The writer of ``out`` (new, or resumed with --resume) and the input keys it holds."""
    if out.exists() and options.resume:
        return CatalogueWriter.resume(out, prov.attrs)
    if out.exists() and not options.overwrite:
        raise InputError(f"{out} already exists: add --resume to complete it, --overwrite to "
                         "replace it, or choose another --out")
    if out.is_dir():
        raise InputError(f"--out {out} is a folder; give a file name such as catalogue.h5")
    return CatalogueWriter.create(out, parameters, n_saved, prov.attrs, property_parameters,
                                  prov.units, prov.notes), set()


def run_batch(inputs: list, out, options: BatchOptions | None = None,
              progress: Callable[[BatchProgress], None] | None = None,
              cancel: Callable[[], bool] | None = None) -> BatchProgress:
    """Measure every object of ``inputs`` into the HDF5 catalogue ``out``.

    ``progress`` is called after each written chunk; ``cancel`` is polled between work units
    (a cancelled run keeps what it wrote and can be resumed). Raises ``BundleError`` (model),
    ``InputError`` (options, existing output) or ``OutputError`` (unwritable) before any work;
    problems with individual inputs become error rows instead.
    """
    t0 = time.monotonic()
    options = options or BatchOptions()
    morphology, properties = load_models(options.model)
    n_samples = int(options.n_samples or (morphology.default_samples if morphology
                                          else DEFAULT_PROPERTY_SAMPLES))
    if n_samples < 1:
        raise InputError("--samples must be at least 1")
    if options.workers < 1:
        raise InputError("--workers must be at least 1")
    _configure_threads(options.workers)
    parameters = morphology.names if morphology else []
    property_parameters = [n for m in properties for n in m.names]
    n_saved = n_samples if options.save_samples else None
    prov = provenance(morphology, properties, n_samples, n_saved, options.command_line,
                      options.seed)
    writer, done_keys = _open_writer(Path(out), options, prov, parameters, n_saved,
                                     property_parameters)
    builder = RowBuilder(writer.dtype, parameters, n_saved, property_parameters)
    counts = BatchProgress(notes=[f"note: {prov.warning}"] if prov.warning else [])
    if morphology:
        spec = StampSpec.of(morphology)
    else:  # the reference stamp gives position, calibration and flags of each row
        spec = StampSpec(properties[0].stamp_size, properties[0].pixel_scale,
                         NOMINAL_SKY_SIGMA_NJY)
    property_specs = tuple(PropertySpec.of(m) for m in properties)
    pending: list[_Prepared] = []
    batch_index = 0

    def flush():
        nonlocal pending, batch_index
        items = _measure(pending, morphology, properties, n_samples,
                         options.seed + batch_index)
        batch_index += 1
        rows, samples, property_samples = builder.build(
            [(_origin(p, k), m) for p, k, m in items])
        writer.append(rows, samples, property_samples)
        ok = rows["status"] == b"ok"
        counts.done += int(np.sum(ok))
        counts.failed += len(rows) - int(np.sum(ok))
        if "property_error" in rows.dtype.names:
            counts.partial += int(np.sum(ok & (rows["property_error"] != b"")))
        counts.inputs += len(pending)
        counts.elapsed = time.monotonic() - t0
        pending = []
        if progress:
            progress(counts)

    extra_columns = [c for m in properties for c in m.photometry_columns]
    targets = expand_inputs(inputs, options.redshift_column, extra_columns)
    units_of_work = _units(targets, done_keys, counts)
    for prepared in _prepared_stream(units_of_work, spec, options, property_specs):
        pending.extend(prepared)
        n_stamps = sum(len(p.stamps) for p in pending)
        if n_stamps >= options.batch_size or len(pending) >= MAX_PENDING_INPUTS:
            flush()
        if cancel and cancel():
            counts.cancelled = True
            break
    if pending:
        flush()
    counts.elapsed = time.monotonic() - t0
    if not counts.cancelled:
        writer.finish({"done": counts.done, "failed": counts.failed, "skipped": counts.skipped,
                       "partial": counts.partial, "seconds": round(counts.elapsed, 3)})
    return counts


def _measure(pending: list[_Prepared], morphology, properties, n_samples: int, seed: int):
    """``(prepared, k, measurement or None)`` for every row of ``pending``, in order."""
    stamps = [s for p in pending for s in p.stamps]
    try:
        measured = (measure_stamps(stamps, morphology, n_samples, seed) if morphology
                    else bare_measurements(stamps))
    except Exception as exc:  # a stamp the network rejects must not lose the whole batch
        message = user_message(exc)
        for p in pending:
            if p.stamps:
                p.error, p.stamps = message, []
        measured = []
    if measured and properties:
        inputs = [row for p in pending if p.stamps for row in p.property_inputs]
        for j, model in enumerate(properties):
            results = measure_properties([row[j] for row in inputs], model, n_samples, seed)
            for m, row, result in zip(measured, inputs, results, strict=True):
                m.properties[model.bundle.name] = result
                m.flags |= row[j].flags  # edge, coarse pixels... of the property stamp too
    measured = iter(measured)
    items = []
    for p in pending:
        if not p.stamps:
            items.append((p, 0, None))
        for k, _ in enumerate(p.stamps):
            items.append((p, k, next(measured)))
    return items


def _configure_threads(workers: int) -> None:
    """Leave the reading processes their cores: torch gets the rest (at least one)."""
    import torch

    cores = os.cpu_count() or 1
    torch.set_num_threads(max(1, cores - (workers if workers > 1 else 0)))
