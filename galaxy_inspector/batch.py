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
killed run with every input exactly once; with ``--retry-errors`` it measures the inputs of
error rows again, and their new rows replace the old ones (``drop_superseded_rows``).

With ``--cluster`` (``BatchOptions.cluster``; ``galaxy_inspector.cluster``) the units go, about
``TASK_INPUTS`` inputs a task, to the workers of a Dask cluster, which read, cut and measure
them (``_cluster_task``); the rows come back as tasks complete and go through the same writer
and counting (``write`` in ``run_batch``) as a local run's chunks (``_answers``). The
posterior draws are seeded per galaxy (``seeding``), so rows do not depend on either (to about
1e-6 relative: the network's float32 outputs change in their last bits with the batch shape).

One input cannot fail another: each stamp is checked before it is batched (``_check_stamp``),
a model batch that fails is measured again stamp by stamp (``errors.isolate_failures``), and a
worker process that dies is replaced (``parallel.ordered_map``).

Positions: a table's ``ra``/``dec`` or ``x``/``y``; with ``--detect`` every source found; else
(an image given directly, a table row without a position) the image is a cutout of its galaxy,
measured at the centroid of the source nearest the image centre
(``preprocessing.central_galaxy``): with none within ``CENTRE_RADIUS_ARCSEC`` the row is an
error that suggests ``--detect``, never a measurement of empty sky.

Models: ``BatchOptions.model`` is one bundle or a list (``--model`` repeated): at most one
morphology model plus any number of physical-property models (``engine.load_models``); property
models alone give a property-only run. Each property model gets its own stamp per object (its
bands from the same file: planes of a FITS cube by band name, or a JPEG's R, G, B channels) and
the redshift/photometry of the input table's row. A property model that cannot predict a row
(no redshift, missing band, uncalibrated fluxes) leaves that row's columns NaN with the reason
in ``property_error``; the morphology is still measured, and the row counts as ``partial``
(``BatchProgress.partial``; the CLI exits 2). In a property-only run a row no model could
predict is an error row. Likewise a morphology model gives no posterior for a display image
it was not made for, or a stamp without a galaxy (``engine.measure_stamps``): the row is an
error, or ``partial`` with the reason in ``error`` when a property model predicted it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import math
import operator
import time
import zlib
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
from galaxy_inspector.catalogue.lock import WriterLock
from galaxy_inspector.catalogue.schema import catalogue_parameters
from galaxy_inspector.catalogue.writer import ResumeKeys
from galaxy_inspector.engine import (
    StampSpec,
    bare_measurements,
    default_model_for,
    load_models,
    measure_stamps,
    stamp_for,
)
from galaxy_inspector.errors import InputError, isolate_failures, user_message
from galaxy_inspector.flags import Flag
from galaxy_inspector.io import PSF_FROM_STARS, Target, expand_inputs, read_image
from galaxy_inspector.io.psf import FWHM_LIMITS_ARCSEC, check_psf_image
from galaxy_inspector.parallel import ordered_map, usable_cores
from galaxy_inspector.physical_properties.measure import (
    DEFAULT_PROPERTY_SAMPLES,
    measure_properties,
)
from galaxy_inspector.physical_properties.stamps import PropertySpec, property_inputs
from galaxy_inspector.preprocessing import (
    NOMINAL_SKY_SIGMA_NJY,
    Stamp,
    central_galaxy,
    detect_galaxies,
)

__all__ = ["BatchOptions", "BatchProgress", "run_batch", "prepare_unit"]

UNIT_SIZE = 64  # targets of the same file read together
# A chunk is written after batch_size stamps or this many inputs (error rows need no model).
# Chunks depend only on the inputs, not on timing, so results do not depend on --workers.
MAX_PENDING_INPUTS = 256
#: Largest pixel value (nJy, either sign) a stamp may hold: a source of AB magnitude -13.6,
#: brighter than the full Moon, in one pixel. Beyond it the calibration (or the sky noise an
#: uncalibrated image is scaled by) is wrong, and well beyond it float32 overflows to infinity.
MAX_PIXEL_NJY = 1e18
#: AB zero points of real pixel units lie well inside this range: 8.9 (Jy), 22.5 (SDSS
#: nanomaggies), 23.9 (uJy), 31.4 (nJy), about 25-35 for counts of ground and space telescopes.
#: At 60 one unit would be 1e-11 nJy; at 0 or below, brighter than Vega.
ZERO_POINT_RANGE = (0.0, 60.0)
#: Per-input seeds are (crc32(key) + --seed) mod 2**32, so larger seeds would repeat smaller ones.
SEED_LIMIT = 2 ** 32


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
    detect_min_area: float | None = None  # arcsec²; None: a few PSF beams (detect_min_pixels)
    seed: int = 0
    batch_size: int = 32
    command_line: str = ""
    redshift_column: str | None = None
    retry_errors: bool = False  # with resume: measure the inputs of error rows again
    cluster: str | None = None  # a Dask cluster's address (``galaxy_inspector.cluster``)
    cluster_jobs: int = 1  # jobs a dask-jobqueue cluster (slurm, pbs...) is scaled to
    psf_fwhm: float | None = None  # arcsec, every image's PSF (--psf-fwhm)
    psf: str | None = None  # a PSF image's path, or "stars" (--psf); see io.read_image
    sky_subtracted: bool = False  # every image's sky is 0 (--sky-subtracted)


@dataclass
class BatchProgress:
    """Counts so far: rows written (``done`` ok + ``failed`` errors), inputs answered in this
    run (``inputs``; with --detect one input gives several rows), inputs ``skipped`` by resume,
    ``partial``: ok rows where a model could not predict (see ``property_error``, and
    ``error`` for a morphology model that refused the image).
    ``notes`` are things the user should know about the run (e.g. demo models);
    ``dashboard`` the Dask dashboard's address in a cluster run (reported once before any row).
    """

    done: int = 0
    partial: int = 0
    notes: list = field(default_factory=list)
    inputs: int = 0
    failed: int = 0
    skipped: int = 0
    elapsed: float = 0.0
    cancelled: bool = False
    dashboard: str = ""

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


@dataclass
class _Answers:
    """Rows of some inputs, ready for the writer: ``(RowOrigin, Measurement or None)`` pairs,
    and how many inputs they answer (with --detect one input gives several rows)."""

    pairs: list
    inputs: int


def _seed(key: str, seed: int) -> int:
    return (zlib.crc32(key.encode("utf-8", "surrogateescape")) + seed) % SEED_LIMIT


def _prepare_target(target: Target, image, spec: StampSpec,
                    options: BatchOptions) -> list[Stamp]:
    if target.ra is not None:
        if image.wcs is None:
            raise InputError("the image has no celestial WCS, so the table's RA/Dec cannot be "
                             "placed on it; give x/y columns instead")
        positions = [image.sky_to_pixel(target.ra, target.dec) + (0,)]
    elif target.x is not None:
        positions = [(target.x, target.y, 0)]
    elif options.detect:
        positions = detect_galaxies(image, min_area_arcsec2=options.detect_min_area)
        if not positions:
            raise InputError("no galaxy detected in the image (a smaller --detect-min-area "
                             "finds smaller sources)")
    else:  # a cutout of its galaxy: measure the source at its centre, at its own centroid
        positions = [central_galaxy(image, pixel_scale=spec.pixel_scale)]
    stamps = []
    for k, (x, y, flag) in enumerate(positions):
        stamp = stamp_for(image, x, y, spec, seed=_seed(f"{target.key}#{k}", options.seed))
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
                           pixel_scale=options.pixel_scale, zero_point=options.zero_point,
                           psf_fwhm=options.psf_fwhm, psf=options.psf,
                           sky_subtracted=options.sky_subtracted)
    except Exception as exc:  # every input is answered, whatever a hostile file raises
        for p in todo:
            p.error = user_message(exc)
        return out
    bands_cache = {}
    for p in todo:
        p.hdu = image.hdu
        try:
            stamps = _prepare_target(p.target, image, spec, options)
            for stamp in stamps:
                _check_stamp(stamp)
            p.stamps = stamps
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


def _check_stamp(stamp: Stamp) -> None:
    """Refuse a stamp no model can read, before it is batched with others (a non-finite
    input makes the network's whole batch fail)."""
    peak = float(np.max(np.abs(stamp.data)))
    if not math.isfinite(peak):
        raise InputError("the stamp's pixels overflow to infinity once calibrated; the image's "
                         "calibration or sky noise is wrong (give --zero-point, or a "
                         "calibrated image)")
    if peak > MAX_PIXEL_NJY:
        raise InputError(f"the stamp holds a pixel of {peak:.3g} nJy, brighter than the full "
                         f"Moon; the image's calibration or sky noise ({stamp.sky_sigma:.3g} "
                         "nJy) is wrong")


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
    """Prepared units in input order; ``workers`` > 1 reads them in parallel processes
    (``parallel.ordered_map``: a unit whose reading process dies twice gets error rows). A lone
    unit (one file) is read here: starting a process that imports the readers takes about a
    second, several times the reading, and a one-galaxy batch should answer in under 3 s."""
    read = functools.partial(prepare_unit, spec=spec, options=options,
                             property_specs=property_specs)
    units = iter(units)
    first = list(itertools.islice(units, 2))
    units = itertools.chain(first, units)
    if options.workers <= 1 or len(first) < 2:
        yield from map(read, units)
        return
    yield from ordered_map(read, units, options.workers, died=_reader_died)


def _reader_died(unit: list[Target], reason: str) -> list[_Prepared]:
    return [_Prepared(t, source=t.path, error=f"the worker reading this file {reason}")
            for t in unit]


def _answers(prepared_units: Iterable[list[_Prepared]], morphology, properties, n_samples: int,
             options: BatchOptions) -> Iterator[_Answers]:
    """The rows of prepared units, measured in chunks of ``batch_size`` stamps (or
    ``MAX_PENDING_INPUTS`` inputs: error rows need no model)."""
    pending: list[_Prepared] = []
    for prepared in prepared_units:
        pending.extend(prepared)
        n_stamps = sum(len(p.stamps) for p in pending)
        if n_stamps >= options.batch_size or len(pending) >= MAX_PENDING_INPUTS:
            yield _measure(pending, morphology, properties, n_samples, options.seed)
            pending = []
    if pending:
        yield _measure(pending, morphology, properties, n_samples, options.seed)


#: Inputs per cluster task. The client and scheduler spend about 4.3 ms on a task (measured on
#: 2 busy cores: 1000 empty tasks through ``cluster.stream`` on ``local:2``), 0.13 ms an input
#: at 32 inputs a task, against 10-60 ms to read, cut and measure a galaxy: under 1.5 %.
TASK_INPUTS = 32


def _tasks(units: Iterator[list[Target]]) -> Iterator[list[list[Target]]]:
    """Consecutive units grouped into tasks of about ``TASK_INPUTS`` inputs."""
    task, size = [], 0
    for unit in units:
        task.append(unit)
        size += len(unit)
        if size >= TASK_INPUTS:
            yield task
            task, size = [], 0
    if task:
        yield task


def _cluster_answers(client, units: Iterator[list[Target]], spec: StampSpec,
                     options: BatchOptions, property_specs: tuple, models: tuple,
                     n_samples: int) -> Iterator[_Answers]:
    """The rows of ``units``, measured by tasks on ``client``'s cluster, as they complete; the
    inputs of a task that fails get error rows with the reason."""
    from galaxy_inspector.cluster import stream

    return stream(client, _cluster_task, _tasks(units), failed=_unmeasured, spec=spec,
                  options=options, property_specs=property_specs, models=models,
                  n_samples=n_samples)


def _cluster_task(units: list[list[Target]], spec: StampSpec, options: BatchOptions,
                  property_specs: tuple, models: tuple, n_samples: int) -> _Answers:
    """One cluster task, on a worker: read and cut ``units`` next to the data and measure them
    with the worker's models (``cluster.worker_models``: loaded once per worker process)."""
    from galaxy_inspector.cluster import worker_models

    morphology, properties = worker_models(models)
    prepared = (prepare_unit(unit, spec, options, property_specs) for unit in units)
    chunks = list(_answers(prepared, morphology, properties, n_samples, options))
    # The rows need no pixels: 64 kB a galaxy less to send back.
    pairs = [(origin, m and dataclasses.replace(m, stamp=dataclasses.replace(
        m.stamp, data=np.empty((0, 0), np.float32)))) for c in chunks for origin, m in c.pairs]
    return _Answers(pairs, sum(c.inputs for c in chunks))


def _unmeasured(units: list[list[Target]], reason: str) -> _Answers:
    """Error rows of a cluster task's inputs that gave no result."""
    prepared = [_Prepared(t, source=t.path, error=f"its Dask task {reason}")
                for unit in units for t in unit]
    return _Answers([(_origin(p, 0), None) for p in prepared], len(prepared))


def _origin(prep: _Prepared, k: int) -> RowOrigin:
    """What the catalogue says about stamp ``k`` of ``prep`` besides its measurement."""
    t = prep.target
    return RowOrigin(id=t.id if len(prep.stamps) <= 1 else f"{t.id}#{k}", source=prep.source,
                     input_key=t.key, hdu=prep.hdu, redshift=t.redshift, error=prep.error,
                     x=t.x, y=t.y, ra=t.ra, dec=t.dec)


def _open_writer(out: Path, inputs: list, options: BatchOptions, prov: Provenance,
                 n_samples: int, parameters, n_saved, property_parameters=()):
    """The writer of ``out`` (new, or resumed with --resume), holding the catalogue's
    one-writer lock, and the input keys it holds."""
    if out.is_dir():
        raise InputError(f"--out {out} is a folder; give a file name such as catalogue.h5")
    if out.exists() and not out.is_file():
        raise InputError(f"--out {out} is not a regular file; give a file name such as "
                         "catalogue.h5")
    if any(_same_file(out, Path(item).expanduser()) for item in inputs):
        raise InputError(f"--out {out} is one of the inputs; choose another --out")
    attrs = {**prov.attrs, "settings": _row_settings(options, n_samples)}
    lock = WriterLock.acquire(out)  # before looking at the file: another run may be writing it
    try:
        if out.exists() and options.resume:
            return CatalogueWriter.resume(out, attrs, lock=lock)
        if out.exists() and not options.overwrite:
            raise InputError(f"{out} already exists: add --resume to complete it, --overwrite "
                             "to replace it, or choose another --out")
        return CatalogueWriter.create(out, parameters, n_saved, attrs, property_parameters,
                                      prov.units, prov.notes, lock=lock), ResumeKeys()
    except BaseException:
        lock.release()
        raise


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def _row_settings(options: BatchOptions, n_samples: int) -> dict:
    """The options that change rows, by their command-line names: a resume must repeat them
    (the models and the saved samples are checked on their own)."""
    return {"--detect": options.detect,  # the area changes nothing without --detect
            "--detect-min-area": options.detect_min_area if options.detect else None,
            "--pixel-scale": options.pixel_scale,
            "--zero-point": options.zero_point, "--seed": options.seed, "--hdu": options.hdu,
            "--plane": options.plane, "--samples": n_samples,
            "--save-samples": options.save_samples,
            "--redshift-column": options.redshift_column,
            "--psf-fwhm": options.psf_fwhm, "--psf": options.psf,
            # "not given" when off, as in catalogues written before the option existed
            "--sky-subtracted": options.sky_subtracted or None}


def run_batch(inputs: list, out, options: BatchOptions | None = None,
              progress: Callable[[BatchProgress], None] | None = None,
              cancel: Callable[[], bool] | None = None) -> BatchProgress:
    """Measure every object of ``inputs`` into the HDF5 catalogue ``out``.

    ``progress`` is called after each written chunk; ``cancel`` is polled between work units
    (a cancelled run keeps what it wrote and can be resumed). Raises ``BundleError`` (model),
    ``InputError`` (options, an INPUT that does not exist, existing output) or ``OutputError``
    (unwritable) before any work; problems with individual inputs, including paths inside a
    table that do not exist, become error rows instead.
    """
    t0 = time.monotonic()
    missing = [str(item) for item in inputs if not Path(item).expanduser().exists()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputError(f"no such file or folder: {missing[0]}{more}; nothing was written")
    options = options or BatchOptions()
    _check_options(options)
    if options.psf not in (None, PSF_FROM_STARS):  # the same file from any worker's folder
        options = dataclasses.replace(options, psf=str(Path(options.psf).expanduser().absolute()))
    options, worker_notes = _bounded_workers(options) if not options.cluster else (options, [])
    morphology, properties = load_models(options.model or [default_model_for(inputs)])
    n_samples = int(options.n_samples if options.n_samples is not None
                    else morphology.default_samples if morphology else DEFAULT_PROPERTY_SAMPLES)
    _configure_threads(options.workers)
    parameters = catalogue_parameters(morphology.names) if morphology else []
    property_parameters = [n for m in properties for n in m.names]
    n_saved = n_samples if options.save_samples else None
    prov = provenance(morphology, properties, n_samples, n_saved, options.command_line,
                      options.seed)
    # The cluster before the writer: one that cannot be started or reached writes nothing.
    with _cluster_client(options) as client:
        writer, done_keys = _open_writer(Path(out), inputs, options, prov, n_samples,
                                         parameters, n_saved, property_parameters)
        if options.retry_errors:  # their new rows supersede the old error rows (see below)
            done_keys = done_keys.without_errors()
        with writer:  # holds the one-writer lock until the run ends, however it ends
            builder = RowBuilder(writer.dtype, parameters, n_saved, property_parameters)
            counts = BatchProgress(notes=([f"note: {prov.warning}"] if prov.warning else [])
                                   + writer.notes + worker_notes)
            if morphology:
                spec = StampSpec.of(morphology)
            else:  # the reference stamp gives position, calibration and flags of each row
                spec = StampSpec(properties[0].stamp_size, properties[0].pixel_scale,
                                 NOMINAL_SKY_SIGMA_NJY)
            property_specs = tuple(PropertySpec.of(m) for m in properties)
            uncalibrated = 0  # ok rows of images without a flux calibration

            def write(answers: _Answers) -> None:
                nonlocal uncalibrated
                rows, samples, property_samples = builder.build(answers.pairs)
                writer.append(rows, samples, property_samples)
                ok = rows["status"] == b"ok"
                uncalibrated += int(np.sum(ok & (rows["flags"] & Flag.FLUX_UNCALIBRATED != 0)))
                counts.done += int(np.sum(ok))
                counts.failed += len(rows) - int(np.sum(ok))
                incomplete = rows["error"] != b""  # ok rows: the morphology gave no posterior
                if "property_error" in rows.dtype.names:
                    incomplete |= rows["property_error"] != b""
                counts.partial += int(np.sum(ok & incomplete))
                counts.inputs += answers.inputs
                counts.elapsed = time.monotonic() - t0
                if progress:
                    progress(counts)

            extra_columns = [c for m in properties for c in m.photometry_columns]
            targets = expand_inputs(inputs, options.redshift_column, extra_columns)
            units_of_work = _units(targets, done_keys, counts)
            if client is None:
                answers = _answers(_prepared_stream(units_of_work, spec, options, property_specs),
                                   morphology, properties, n_samples, options)
            else:
                from galaxy_inspector.cluster import dashboard_link, model_key

                counts.dashboard = dashboard_link(client)
                if progress:
                    progress(counts)
                answers = _cluster_answers(client, units_of_work, spec, options, property_specs,
                                           model_key(morphology, properties), n_samples)
            with contextlib.closing(answers):  # a cancelled cluster run cancels its tasks
                for chunk in answers:
                    write(chunk)
                    if cancel and cancel():
                        counts.cancelled = True
                        break
            if uncalibrated and morphology:  # one line for the run, however many rows
                counts.notes.append(_uncalibrated_note(uncalibrated, spec.nominal_sky_sigma))
            counts.elapsed = time.monotonic() - t0
            if counts.cancelled:  # what it wrote goes into the file; --resume finishes the rest
                writer.checkpoint()
            else:
                if options.resume:  # rows measured again, now or by a killed --retry-errors run
                    writer.drop_superseded_rows()
                writer.finish({"done": counts.done, "failed": counts.failed,
                               "skipped": counts.skipped, "partial": counts.partial,
                               "seconds": round(counts.elapsed, 3)})
    return counts


def _uncalibrated_note(rows: int, nominal_sky_sigma: float) -> str:
    """What a run should say once about its rows from images without a flux calibration."""
    which = "1 row comes" if rows == 1 else f"{rows} rows come"
    return (f"note: {which} from images without a flux calibration (flag FLUX_UNCALIBRATED): "
            f"their stamps were scaled to a nominal sky noise of {nominal_sky_sigma:.3g} nJy/px, "
            "so flux_njy is not physical and B/T and R_e rest on that scaling; give "
            "--zero-point or calibrated images")


def _cluster_client(options: BatchOptions):
    """The client of ``--cluster`` (``cluster.open_client``), or None without one."""
    if not options.cluster:
        return contextlib.nullcontext()
    from galaxy_inspector.cluster import open_client

    return open_client(options.cluster, options.cluster_jobs)


def _check_options(options: BatchOptions) -> None:
    """Refuse option values that would run but give wrong rows (or fail later)."""
    if options.n_samples is not None and options.n_samples < 1:
        raise InputError(f"--samples {options.n_samples} must be at least 1")
    if options.workers < 1:
        raise InputError("--workers must be at least 1")
    if options.cluster is not None:
        from galaxy_inspector.cluster import check_address

        check_address(options.cluster)
        if options.cluster_jobs < 1:
            raise InputError("--cluster-jobs must be at least 1")
    if options.retry_errors and not options.resume:
        raise InputError("--retry-errors needs --resume (it measures a catalogue's error rows "
                         "again)")
    low, high = ZERO_POINT_RANGE
    if options.zero_point is not None and not low < options.zero_point < high:  # NaN too
        raise InputError(f"--zero-point {options.zero_point:g} is not an AB zero point: give "
                         f"one between {low:g} and {high:g} (8.9 for Jy pixels, 22.5 for SDSS "
                         "nanomaggies, 31.4 for nJy, about 25-35 for counts)")
    if options.detect_min_area is not None and not 0 < options.detect_min_area < math.inf:
        raise InputError(f"--detect-min-area {options.detect_min_area:g} must be a positive "
                         "area in arcsec²")
    if options.pixel_scale is not None and not 0 < options.pixel_scale < math.inf:
        raise InputError(f"--pixel-scale {options.pixel_scale:g} must be a positive number of "
                         "arcsec per pixel")
    _check_psf_options(options)
    try:
        seed = operator.index(options.seed)
    except TypeError:
        raise InputError(f"--seed {options.seed!r} must be a whole number") from None
    if not 0 <= seed < SEED_LIMIT:
        raise InputError(f"--seed {seed} is out of range: give a whole number from 0 to "
                         f"{SEED_LIMIT - 1}")


def _check_psf_options(options: BatchOptions) -> None:
    """Refuse a PSF FWHM no PSF has, both PSF options at once, and a PSF image that cannot be
    read or measured (before anything is written)."""
    low, high = FWHM_LIMITS_ARCSEC
    if options.psf_fwhm is not None and not low <= options.psf_fwhm <= high:  # NaN too
        raise InputError(f"--psf-fwhm {options.psf_fwhm:g} is not a PSF's FWHM: give one "
                         f"between {low:g} and {high:g} arcsec")
    if options.psf is None:
        return
    if options.psf_fwhm is not None:
        raise InputError("give --psf-fwhm or --psf, not both")
    if options.psf != PSF_FROM_STARS:
        check_psf_image(Path(options.psf).expanduser())


def _measure(pending: list[_Prepared], morphology, properties, n_samples: int,
             seed: int) -> _Answers:
    """The rows of ``pending``, in order. Each galaxy's draws are seeded by ``seed`` and its
    stamp (``seeding.galaxy_seed``), so its row does not depend on the others measured with it."""
    stamps = [s for p in pending for s in p.stamps]
    if morphology:  # a stamp the network rejects fails alone, not its whole batch
        measured = isolate_failures(
            lambda batch: measure_stamps(batch, morphology, n_samples, seed), stamps,
            lambda stamp, message: bare_measurements([stamp], error=message)[0])
    else:
        measured = bare_measurements(stamps)
    if measured and properties:
        inputs = [row for p in pending if p.stamps for row in p.property_inputs]
        for j, model in enumerate(properties):
            results = measure_properties([row[j] for row in inputs], model, n_samples, seed)
            for m, row, result in zip(measured, inputs, results, strict=True):
                m.properties[model.bundle.name] = result
                m.flags |= row[j].flags  # edge, coarse pixels... of the property stamp too
    measured = iter(measured)
    pairs = []
    for p in pending:
        if not p.stamps:
            pairs.append((_origin(p, 0), None))
        for k, _ in enumerate(p.stamps):
            pairs.append((_origin(p, k), next(measured)))
    return _Answers(pairs, len(pending))


#: Memory one reading process takes: 180 MB measured (``ru_maxrss``) for the imports and a
#: cutout, plus room for a large field's windowed reads and one stamp's cut.
WORKER_MEMORY_BYTES = 500 * 10 ** 6


def _bounded_workers(options: BatchOptions) -> tuple[BatchOptions, list]:
    """``options`` with ``workers`` at most what the machine holds (its usable cores, and its
    available memory at ``WORKER_MEMORY_BYTES`` each), and a note when that lowered it: more
    processes than cores only add memory (64 workers on 2 cores took 6.4 GB), not speed."""
    from galaxy_inspector.io.memory import available_memory, format_bytes

    cores = usable_cores()
    available = available_memory()
    limit = max(1, min(cores, available // WORKER_MEMORY_BYTES))
    if options.workers <= limit:
        return options, []
    note = (f"note: --workers {options.workers} lowered to {limit}: this machine has {cores} "
            f"core(s) and {format_bytes(available)} of memory available (about "
            f"{format_bytes(WORKER_MEMORY_BYTES)} per worker)")
    return dataclasses.replace(options, workers=limit), [note]


def _configure_threads(workers: int) -> None:
    """Leave the reading processes their cores: torch gets the rest (at least one)."""
    import torch

    torch.set_num_threads(max(1, usable_cores() - (workers if workers > 1 else 0)))
