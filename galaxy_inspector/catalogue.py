"""The HDF5 catalogue (DESIGN.md, "Catalogue"): one row per input object, crash-safe, resumable.

Layout
    ``/galaxies``: a chunked, resizable compound dataset (one row per object) that
    ``astropy.table.Table.read(path, path="galaxies")`` reads, with units and descriptions in
    ``/galaxies.__table_column_meta__`` (astropy's own metadata convention). Strings are
    fixed-width UTF-8 bytes (astropy returns them as bytes; ``read_catalogue`` decodes them).
    ``/posterior_samples``: float32 ``(rows, samples, parameters)``, chunked and compressed,
    row-aligned with ``/galaxies`` (written with ``--save-samples``; error rows hold NaN). It
    holds the morphology parameters only (none in a property-only run).
    Property models add ``NAME_mode ... NAME_hi997`` columns per target NAME, a ``redshift``
    column (the input's, NaN when none) and ``property_error`` (per model, why its columns are
    NaN in this row; empty when all were predicted); with ``--save-samples`` each target's
    draws go to ``/property_samples/NAME``, float32 ``(rows, samples)``, row-aligned likewise.
    Root attributes: app version, ``model_name``/``model_sha256`` (the morphology model, or the
    first property model of a property-only run), ``models`` (JSON list: name, SHA-256, path,
    task, outputs, demo flags of every model), ``property_models`` and ``property_parameters``
    (JSON), ``demo_models`` and ``demo_warning`` (bundles trained on synthetic labels), command
    line, creation time, ``flag_<NAME>`` descriptions of the ``flags`` bits, and ``complete``.

Crash safety
    ``CatalogueWriter.append`` opens the file, appends one chunk of rows, and closes it, so
    between chunks (nearly all of the time) the file on disk is closed and consistent. Samples
    are written before the rows they belong to; a kill inside an append can at worst leave rows
    with an empty ``status`` at the end, which ``CatalogueWriter.resume`` cuts off.
"""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path

import h5py
import numpy as np

from galaxy_inspector import __version__
from galaxy_inspector.errors import InputError, OutputError
from galaxy_inspector.flags import FLAG_DESCRIPTIONS
from galaxy_inspector.posterior import LEVEL_SUFFIXES

__all__ = ["CatalogueWriter", "catalogue_dtype", "read_catalogue", "export_catalogue",
           "STATS", "EXPORT_FORMATS"]

GALAXIES = "galaxies"
SAMPLES = "posterior_samples"
PROPERTY_SAMPLES = "property_samples"
META = GALAXIES + ".__table_column_meta__"
CHUNK_ROWS = 256
LOCK_PATIENCE = 30.0  # seconds a writer waits for a reader to close the file

STATS = ("mode", "median", "mean") + tuple(f"{side}{s}" for s in LEVEL_SUFFIXES
                                           for side in ("lo", "hi"))
STAT_DESCRIPTIONS = {"mode": "posterior mode (KDE)", "median": "posterior median",
                     "mean": "posterior mean", "lo68": "68.27 % HPD interval, lower end",
                     "hi68": "68.27 % HPD interval, upper end",
                     "lo95": "95.45 % HPD interval, lower end",
                     "hi95": "95.45 % HPD interval, upper end",
                     "lo997": "99.73 % HPD interval, lower end",
                     "hi997": "99.73 % HPD interval, upper end"}
PARAMETER_UNITS = {"bt": "", "re_arcsec": "arcsec", "flux_njy": "nJy"}

# (name, numpy type, unit, description); strings are fixed-width bytes.
_LEADING = [
    ("id", "S64", "", "object identifier (table id, or file name)"),
    ("source", "S400", "", "input image path"),
    ("hdu", "i2", "", "FITS HDU index of the image (-1: not FITS)"),
    ("x", "f8", "pix", "stamp centre, 0-based pixel column in the source image"),
    ("y", "f8", "pix", "stamp centre, 0-based pixel row in the source image"),
    ("ra", "f8", "deg", "stamp centre right ascension (NaN without WCS)"),
    ("dec", "f8", "deg", "stamp centre declination (NaN without WCS)"),
    ("status", "S8", "", "ok or error"),
    ("error", "S240", "", "why the object could not be measured (empty when ok)"),
    ("stn_scale", "f4", "", "spatial-transformer zoom: the CNN read stn_scale x stamp size"),
    ("label", "S64", "", "qualitative label (GaMPEN 6.4) or empty"),
    ("flags", "i4", "", "quality bitmask, see the file attributes flag_*"),
]
_TRAILING = [
    ("snr", "f4", "", "signal-to-noise ratio within 2 R_e"),
    ("masked_fraction", "f4", "", "fraction of stamp pixels masked/non-finite and filled"),
    ("pixel_scale", "f4", "arcsec", "source image pixel scale (arcsec per pixel)"),
    ("crop_x0", "f4", "pix", "region the CNN read: lower x, source pixels"),
    ("crop_y0", "f4", "pix", "region the CNN read: lower y, source pixels"),
    ("crop_x1", "f4", "pix", "region the CNN read: upper x, source pixels"),
    ("crop_y1", "f4", "pix", "region the CNN read: upper y, source pixels"),
    ("calibration", "S160", "", "how pixel values were converted to nJy"),
    ("input_key", "S440", "", "stable key of the input object (used by --resume)"),
]


_PROPERTY_COLUMNS = [
    ("redshift", "f8", "", "redshift of the object from the input table (NaN: none given)"),
    ("property_error", "S400", "", "per property model, why its columns are NaN in this row "
                                   "(empty when every property was predicted)"),
]


def _columns(parameters, property_parameters=(), units=None, notes=None) -> list[tuple]:
    """(name, type, unit, description) of every column; ``units``/``notes`` (per parameter)
    give property units and a note appended to their descriptions (e.g. the model)."""
    units, notes = units or {}, notes or {}
    cols = list(_LEADING)
    for p in [*parameters, *property_parameters]:
        unit = units.get(p, PARAMETER_UNITS.get(p, ""))
        note = f" ({notes[p]})" if notes.get(p) else ""
        cols += [(f"{p}_{s}", "f8", unit, f"{p}: {STAT_DESCRIPTIONS[s]}{note}") for s in STATS]
    if property_parameters:
        cols += _PROPERTY_COLUMNS
    return cols + _TRAILING


def catalogue_dtype(parameters, property_parameters=()) -> np.dtype:
    """The row type of ``/galaxies`` for the given morphology and property parameter names."""
    return np.dtype([(name, kind) for name, kind, _, _ in _columns(parameters,
                                                                    property_parameters)])


def _fit_bytes(value, width: int) -> bytes:
    """UTF-8 bytes of ``value`` cut to ``width`` without splitting a character."""
    raw = str(value).encode("utf-8")[:width]
    return raw.decode("utf-8", errors="ignore").encode("utf-8")


def _meta_lines(columns) -> np.ndarray:
    """astropy's YAML column header, so Table.read gives units and descriptions."""
    from astropy.table import Column, Table, meta

    table = Table([Column(np.zeros(0, kind), name=name, unit=unit or None,
                          description=description)
                   for name, kind, unit, description in columns])
    return np.array([line.encode("utf-8") for line in meta.get_yaml_from_table(table)])


class CatalogueWriter:
    """Appends rows (and posterior samples) to an HDF5 catalogue, one closed chunk at a time.

    Use ``CatalogueWriter.create`` for a new file and ``CatalogueWriter.resume`` to continue a
    killed run; ``append`` writes a chunk, ``finish`` marks the file complete.
    ``parameters`` are the morphology parameters (their samples go to ``/posterior_samples``),
    ``property_parameters`` the property models' targets (``/property_samples/NAME``).
    """

    def __init__(self, path, parameters, n_samples: int | None, property_parameters=(),
                 dtype=None):
        self.path = Path(path)
        self.parameters = list(parameters)
        self.property_parameters = list(property_parameters)
        self.n_samples = n_samples
        self.dtype = dtype if dtype is not None else catalogue_dtype(self.parameters,
                                                                     self.property_parameters)
        self.widths = {n: self.dtype[n].itemsize for n in self.dtype.names
                       if self.dtype[n].kind == "S"}

    @classmethod
    def create(cls, path, parameters, n_samples: int | None, attrs: dict,
               property_parameters=(), units=None, notes=None) -> CatalogueWriter:
        """A new, empty catalogue; ``n_samples`` None means no sample datasets.

        ``units`` and ``notes`` (per parameter) describe property columns (unit; e.g. which
        model, and whether it is a demo) in the table's metadata.
        """
        writer = cls(path, parameters, n_samples, property_parameters)
        try:
            with h5py.File(writer.path, "w") as f:
                f.create_dataset(GALAXIES, shape=(0,), maxshape=(None,), dtype=writer.dtype,
                                 chunks=(CHUNK_ROWS,), compression="gzip", compression_opts=4)
                f.create_dataset(META, data=_meta_lines(_columns(
                    writer.parameters, writer.property_parameters, units, notes)))
                for name in writer.property_parameters if n_samples else ():
                    data = f.create_dataset(
                        f"{PROPERTY_SAMPLES}/{name}", shape=(0, n_samples),
                        maxshape=(None, n_samples), dtype="f4",
                        chunks=(max(1, min(256, 65536 // n_samples)), n_samples),
                        compression="gzip", compression_opts=4, shuffle=True)
                    data.attrs["unit"] = (units or {}).get(name, "")
                    data.attrs["note"] = (notes or {}).get(name, "")
                if n_samples and writer.parameters:
                    n_par = len(writer.parameters)
                    f.create_dataset(SAMPLES, shape=(0, n_samples, n_par),
                                     maxshape=(None, n_samples, n_par), dtype="f4",
                                     chunks=(max(1, min(64, 65536 // n_samples)), n_samples,
                                             n_par), compression="gzip", compression_opts=4,
                                     shuffle=True)
                    f[SAMPLES].attrs["parameters"] = json.dumps(writer.parameters)
                    f[SAMPLES].attrs["units"] = json.dumps(
                        [PARAMETER_UNITS.get(p, "") for p in writer.parameters])
                f.attrs.update(_root_attrs(attrs))
        except OSError as exc:
            raise OutputError(f"cannot write catalogue {writer.path}: {exc}") from None
        return writer

    @classmethod
    def resume(cls, path, attrs: dict) -> tuple[CatalogueWriter, set]:
        """Reopen a catalogue to finish it: its writer and the input keys already done.

        Rows a kill left half-written are cut off. The model (SHA-256) and the samples setting
        must match ``attrs`` (a mixed catalogue would be wrong), else ``InputError``.
        """
        path = Path(path)
        try:
            with h5py.File(path, "a") as f:
                if GALAXIES not in f:
                    raise InputError(f"{path} is not a Galaxy Inspector catalogue; choose "
                                     "another --out")
                old_sha, new_sha = f.attrs.get("model_sha256"), attrs.get("model_sha256")
                old_models = _model_shas(f.attrs.get("models"))
                new_models = _model_shas(attrs.get("models"))
                if old_sha != new_sha or (old_models and new_models
                                          and old_models != new_models):
                    made = ", ".join(sorted(old_models.values())) or f.attrs.get("model_name")
                    raise InputError(f"{path} was made with model(s) {made} "
                                     f"({str(old_sha)[:12]}...); resume with the same models "
                                     "or choose a new --out")
                datasets = [f[SAMPLES]] if SAMPLES in f else []
                if PROPERTY_SAMPLES in f:
                    datasets += list(f[PROPERTY_SAMPLES].values())
                n_saved = attrs.get("n_samples_saved")
                if bool(datasets) != bool(n_saved) or any(d.shape[1] != n_saved
                                                          for d in datasets):
                    raise InputError(f"{path} was written with different --save-samples/"
                                     "--samples settings; resume with the same ones")
                parameters = json.loads(f.attrs["parameters"])
                property_parameters = json.loads(f.attrs.get("property_parameters", "[]"))
                rows = f[GALAXIES]
                dtype = rows.dtype
                unfinished = np.flatnonzero(rows["status"] == b"") if len(rows) else []
                n_valid = int(unfinished[0]) if len(unfinished) else len(rows)
                rows.resize((n_valid,))
                for data in datasets:
                    data.resize(n_valid, axis=0)
                keys = set(rows["input_key"]) if n_valid else set()
                f.attrs["complete"] = False
                f.attrs["resumed"] = _now()
        except InputError:
            raise
        except OSError as exc:
            raise OutputError(f"cannot reopen catalogue {path} to resume: {exc}") from None
        writer = cls(path, parameters, attrs.get("n_samples_saved") or None,
                     property_parameters, dtype=dtype)
        return writer, {k.decode("utf-8") for k in keys}

    def empty_rows(self, n: int) -> np.ndarray:
        """``n`` rows with NaN numbers, empty strings, -1 HDU and no flags, to fill in."""
        rows = np.zeros(n, dtype=self.dtype)
        for name in self.dtype.names:
            if self.dtype[name].kind == "f":
                rows[name] = np.nan
        rows["hdu"] = -1
        return rows

    def set_text(self, rows: np.ndarray, i: int, name: str, value) -> None:
        """Store a string into a fixed-width column, cut to fit without breaking UTF-8."""
        rows[name][i] = _fit_bytes(value, self.widths[name])

    def append(self, rows: np.ndarray, samples: np.ndarray | None = None,
               property_samples: dict | None = None) -> None:
        """Append a chunk of rows (and their samples: morphology ``(n, S, P)``, properties
        ``{NAME: (n, S)}``); the file is closed again afterwards."""
        if not len(rows):
            return
        with _open_for_writing(self.path) as f:
            table = f[GALAXIES]
            start = len(table)
            if self.n_samples and self.parameters:
                data = f[SAMPLES]
                data.resize(start + len(rows), axis=0)
                data[start:] = samples
            for name in self.property_parameters if self.n_samples else ():
                data = f[f"{PROPERTY_SAMPLES}/{name}"]
                data.resize(start + len(rows), axis=0)
                data[start:] = (property_samples or {}).get(
                    name, np.full((len(rows), self.n_samples), np.nan, "f4"))
            table.resize((start + len(rows),))
            table[start:] = rows

    def finish(self, summary: dict) -> None:
        """Mark the catalogue complete and record the run's summary."""
        try:
            with h5py.File(self.path, "a") as f:
                f.attrs["complete"] = True
                f.attrs["finished"] = _now()
                f.attrs["summary"] = json.dumps(summary)
        except OSError as exc:
            raise OutputError(f"cannot finish catalogue {self.path}: {exc}") from None


def _open_for_writing(path, patience: float = LOCK_PATIENCE) -> h5py.File:
    """Open for appending, waiting while a reader (the GUI, Table.read) holds the file."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return h5py.File(path, "a")
        except OSError as exc:
            busy = any(w in str(exc).lower() for w in ("lock", "already open"))
            if not busy or time.monotonic() > deadline:
                raise OutputError(f"cannot write to catalogue {path}: {exc}") from None
            time.sleep(0.1)


def _model_shas(models) -> dict:
    """``{sha256: name}`` of a ``models`` attribute (JSON text or list); empty if absent."""
    if models is None:
        return {}
    try:
        items = json.loads(models) if isinstance(models, (str, bytes)) else models
        return {m["sha256"]: m["name"] for m in items}
    except (TypeError, ValueError, KeyError):
        return {}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _root_attrs(attrs: dict) -> dict:
    out = {"app": "galaxy-inspector", "app_version": __version__, "created": _now(),
           "complete": False, "flags_doc": "flags is a bitmask; flag_<NAME> = '<bit value>: "
                                           "<meaning>'"}
    for flag, text in FLAG_DESCRIPTIONS.items():
        out[f"flag_{flag.name}"] = f"{int(flag)}: {text}"
    for key, value in attrs.items():
        out[key] = json.dumps(value) if isinstance(value, (list, dict)) else value
    return out


#: Root attributes carried into the table's meta, under FITS-friendly (<= 8 character) keys.
META_KEYS = {"app_version": "APPVERS", "model_name": "MODEL", "model_sha256": "MODELSHA",
             "model_names": "MODELS", "demo_models": "DEMOMODS", "demo_warning": "DEMOWARN",
             "created": "CREATED", "command_line": "CMDLINE"}


def read_catalogue(path):
    """``/galaxies`` as an astropy Table with text columns as str, provenance in ``meta``."""
    from astropy.table import Table

    try:
        table = Table.read(path, path=GALAXIES, character_as_bytes=False)
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"cannot read catalogue {path}: {exc}") from None
    with h5py.File(path, "r") as f:
        for attr, key in META_KEYS.items():
            if attr in f.attrs:
                table.meta[key] = str(f.attrs[attr])
    return table


EXPORT_FORMATS = {".fits": "fits", ".fit": "fits", ".csv": "ascii.csv", ".ecsv": "ascii.ecsv",
                  ".vot": "votable", ".xml": "votable", ".votable": "votable"}


def export_catalogue(path, out) -> int:
    """Write ``/galaxies`` to FITS, CSV, ECSV or VOTable (by ``out``'s suffix); returns rows."""
    fmt = EXPORT_FORMATS.get(Path(out).suffix.lower())
    if fmt is None:
        raise InputError(f"cannot export to {Path(out).name}: use one of "
                         f"{', '.join(EXPORT_FORMATS)}")
    table = read_catalogue(path)
    try:
        table.write(out, format=fmt, overwrite=True)
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc}") from None
    return len(table)
