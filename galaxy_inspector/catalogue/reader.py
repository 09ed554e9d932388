"""Reading a catalogue back: the table, the failed rows, and any row as the engine's
``Measurement`` with its stored posterior samples and property predictions.

What the GUI's catalogue browser calls, and what a script calls::

    from galaxy_inspector.catalogue import read_catalogue, stored_measurement

    table = read_catalogue("cat.h5")           # astropy Table, text as str
    table.meta.get("PENDING")                  # rows a running or killed batch has not folded
    m = stored_measurement("cat.h5", 0)        # engine Measurement of row 0
    m.samples, m.summary["bt_median"], m.properties["metallicity-model"].error
"""

from __future__ import annotations

import json
import math
import os
import re
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from galaxy_inspector.catalogue.journal import journal_path, pending_records
from galaxy_inspector.catalogue.lock import lock_holder
from galaxy_inspector.catalogue.schema import (
    GALAXIES,
    META,
    PROPERTY_SAMPLES,
    SAMPLES,
    plain_values,
    table_meta,
)
from galaxy_inspector.engine import Measurement
from galaxy_inspector.errors import InputError, first_line
from galaxy_inspector.physical_properties.measure import PropertyMeasurement
from galaxy_inspector.posterior import summary_keys
from galaxy_inspector.preprocessing import Stamp

__all__ = ["read_catalogue", "failed_rows", "property_errors", "redshift_of",
           "stored_measurement", "pending_rows", "resolve_source"]


def read_catalogue(path):
    """The catalogue's ``/galaxies`` table.

    Parameters
    ----------
    path : str or Path
        The HDF5 catalogue.

    Returns
    -------
    astropy.table.Table
        One row per object, text columns as str, units and descriptions on the columns, and
        the provenance (model names and SHA-256, demo warning, command line, creation time) in
        ``meta`` under the keys of ``schema.META_KEYS``, with the flag meanings as
        ``flag_<NAME>`` (``schema.table_meta``): what every export carries. ``source`` is
        an absolute path (``resolve_source``, for catalogues written with relative ones).
        The rows are
        those of the file's last checkpoint (``catalogue.writer``): while a batch runs, or
        after one was killed, rows committed to its journal but not yet folded in are not
        among them, and ``meta["PENDING"]`` says how many and what to do (wait, or
        ``--resume``).

    Raises
    ------
    InputError
        The file cannot be read as a catalogue.
    """
    from astropy.table import Table

    with _open(path) as f:
        meta = table_meta(f.attrs)
    try:
        table = Table.read(path, path=GALAXIES, format="hdf5", character_as_bytes=False)
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"cannot read catalogue {path}: {first_line(exc)}") from None
    table.meta.update(meta)
    if "source" in table.colnames:
        column = table["source"]
        resolved = [resolve_source(path, s) for s in column]
        if resolved != list(column):  # a new column: longer text would be cut in the old one
            table.replace_column("source", type(column)(resolved, name="source",
                                                        description=column.description))
    n_pending = pending_rows(path)
    if n_pending:
        holder = lock_holder(path)
        table.meta["PENDING"] = (
            f"{n_pending} more rows are in {journal_path(path).name}, not yet in this file: "
            + (f"a batch is writing it ({holder})" if holder
               else "finish the interrupted run with --resume"))
    return table


def resolve_source(catalogue, source: str) -> str:
    """The absolute path of a row's ``source``. Catalogues store absolute paths; older ones
    stored the paths as typed, relative to the folder the batch ran in: those are looked
    for beside the catalogue first (where a catalogue and its images usually travel
    together), then in the working folder; when neither has the file, the path beside the
    catalogue is given (the one a reader's error message should name)."""
    if not source or os.path.isabs(source):
        return source
    beside = os.path.join(os.path.dirname(os.path.abspath(catalogue)), source)
    if os.path.exists(beside) or not os.path.exists(source):
        return os.path.normpath(beside)
    return os.path.abspath(source)


def pending_rows(path) -> int:
    """How many rows the journal of the catalogue ``path`` holds beyond its last checkpoint
    (a running batch's, or a killed one's that ``--resume`` folds in); 0 for a finished one."""
    try:
        with h5py.File(path, "r") as f:
            catalogue_id = str(f.attrs.get("catalogue_id", ""))
            n_rows = len(f[GALAXIES]) if GALAXIES in f else 0
        with open(journal_path(path), "rb") as journal:
            return sum(r.n_rows for r in pending_records(journal, catalogue_id, n_rows))
    except OSError:
        return 0


def failed_rows(path) -> list[tuple[str, str]]:
    """``(id, error)`` of every row with ``status = error``, in file order.

    Parameters
    ----------
    path : str or Path
        The HDF5 catalogue, of a finished or an interrupted run.

    Returns
    -------
    list of (str, str)
        The row's ``id`` and the one-line reason it could not be measured.
    """
    with _open(path) as f:
        rows = f[GALAXIES][:]
    failed = rows[rows["status"] == b"error"]
    return [(row["id"].decode("utf-8"), row["error"].decode("utf-8")) for row in failed]


def property_errors(text: str, model_names=()) -> dict:
    """A row's ``property_error`` as ``{model name: reason}`` (empty when every model predicted).

    Parameters
    ----------
    text : str
        The column's value: a JSON object, or the ``"model: reason; other: reason"`` text of
        catalogues written before it was JSON.
    model_names : iterable of str, optional
        The catalogue's property models: with them, an old-style reason containing "; " is
        split only where the next model's name starts.

    Returns
    -------
    dict
        Model name -> reason, for the models that did not predict this row.
    """
    text = (text or "").strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            return dict(json.loads(text))
        except ValueError:
            pass  # an old-style reason that happens to start with a brace
    names = "|".join(re.escape(name) for name in model_names) or r"[^\s:;]+"
    errors = {}
    for part in re.split(f"; (?=(?:{names}): )", text):
        name, _, reason = part.partition(": ")
        errors[name] = reason
    return errors


def redshift_of(row: dict) -> float | None:
    """The input redshift of a row (a ``{column: value}`` dict), None when it has none."""
    z = row.get("redshift")
    return float(z) if isinstance(z, (int, float)) and math.isfinite(z) else None


def stored_measurement(path, index: int) -> Measurement:
    """A measured row back as the engine's ``Measurement``.

    Parameters
    ----------
    path : str or Path
        The HDF5 catalogue.
    index : int
        0-based row of ``/galaxies``.

    Returns
    -------
    engine.Measurement
        The row's summary, label, flags, S/N, spatial-transformer zoom and crop box, its
        morphology posterior samples ``(S, P)`` (an empty ``(0, P)`` array when the file was
        written without ``--save-samples``; no parameters in a property-only catalogue) and
        its ``properties``: bundle name -> ``physical_properties.measure.PropertyMeasurement``
        per property model of the file, with its summary columns (in the column units), its
        draws from ``/property_samples`` (``samples`` ``(S, P)`` float32, None when not saved
        or not predicted) and its ``error`` from ``property_error``. The ``stamp`` holds the
        row's position, scales, calibration and masked fraction but no pixels (``data`` is
        empty); cut it again with ``engine.stamp_for`` to see where the model looked.

    Raises
    ------
    InputError
        The file is not a catalogue, the row does not exist, or it is an error row.
    """
    with _open(path) as f:
        row = _row(f, index)
        if row["status"] != "ok":
            raise InputError(f"row {index} of {path} was not measured: {row['error']}")
        names = json.loads(f.attrs.get("parameters", "[]"))
        units = _column_units(f)
        if SAMPLES in f:
            samples = np.asarray(f[SAMPLES][index], dtype=np.float32)
        else:
            samples = np.empty((0, len(names)), np.float32)
        properties = _properties(f, index, row, units)
        # Catalogues written before stamps were binned have no binning column.
        binning = float(row.get("binning", 1.0))
        stamp = Stamp(data=np.empty((0, 0), np.float32), x=row["x"], y=row["y"], ra=row["ra"],
                      dec=row["dec"], source_scale=row["pixel_scale"],
                      model_scale=float(f.attrs.get("model_pixel_scale", math.nan)) * binning,
                      flags=row["flags"], masked_fraction=row["masked_fraction"],
                      sky_sigma=math.nan, calibration=row["calibration"], binning=binning,
                      psf_fwhm=float(row.get("psf_fwhm_arcsec", math.nan)),
                      psf_source=row.get("psf_source", ""))
        reads_psf = bool(f.attrs.get("model_reads_psf", False))  # else told nothing
    return Measurement(
        stamp=stamp, names=names, units=[units.get(f"{n}_median", "") for n in names],
        samples=samples, summary=_summary(row, names), stn_scale=row["stn_scale"],
        crop_box=tuple(row[k] for k in ("crop_x0", "crop_y0", "crop_x1", "crop_y1")),
        snr=row["snr"], label=row["label"], flags=row["flags"], crop=None,
        properties=properties, error=row["error"],
        psf_told=float(row.get("psf_told_arcsec", math.nan)) if reads_psf else None)


@contextmanager
def _open(path):
    """The catalogue open for reading; ``InputError`` when it is not one."""
    if not Path(path).is_file():
        raise InputError(f"no catalogue at {path}: "
                         f"{'it is a folder' if Path(path).is_dir() else 'no such file'}")
    if not h5py.is_hdf5(path):
        raise InputError(f"{path} is not a catalogue: catalogues are the HDF5 files --batch "
                         "writes")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"cannot read catalogue {path}: {exc}") from None
    with f:
        if GALAXIES not in f:
            raise InputError(f"{path} is not a Galaxy Inspector catalogue (no /{GALAXIES})")
        yield f


def _row(f: h5py.File, index: int) -> dict:
    n_rows = len(f[GALAXIES])
    if not 0 <= index < n_rows:
        raise InputError(f"the catalogue has {n_rows} rows; there is no row {index}")
    return plain_values(f[GALAXIES][index])


def _column_units(f: h5py.File) -> dict:
    """Column name -> unit ("" for none), from the table's astropy metadata."""
    from astropy.table import meta

    header = meta.get_header_from_yaml(line.decode("utf-8") for line in f[META][:])
    return {c["name"]: c.get("unit", "") for c in header["datatype"]}


def _summary(row: dict, names) -> dict:
    return {c: float(row[c]) for n in names for c in summary_keys(n) if c in row}


def _properties(f: h5py.File, index: int, row: dict, units: dict) -> dict:
    try:
        models = [m for m in json.loads(f.attrs.get("models", "[]"))
                  if m.get("task") == "properties"]
    except (TypeError, ValueError):
        return {}
    errors = property_errors(row.get("property_error", ""), [m["name"] for m in models])
    out = {}
    for m in models:
        names = list(m.get("outputs", []))
        datasets = [f"{PROPERTY_SAMPLES}/{n}" for n in names]
        samples = None
        if names and all(d in f and index < f[d].shape[0] for d in datasets):
            samples = np.stack([np.asarray(f[d][index], np.float32) for d in datasets], axis=1)
            if not np.isfinite(samples).any():  # the row of a model that did not predict
                samples = None
        out[m["name"]] = PropertyMeasurement(
            model=m["name"], names=names, units=[units.get(f"{n}_median", "") for n in names],
            summary=_summary(row, names), samples=samples, error=errors.get(m["name"], ""),
            demo=bool(m.get("demo") or m.get("synthetic_training_data")))
    return out
