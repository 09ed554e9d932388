"""The crash-safe appender: one closed chunk of rows at a time, resumable after a kill."""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path

import h5py
import numpy as np

from galaxy_inspector import __version__
from galaxy_inspector.catalogue.schema import (
    GALAXIES,
    META,
    PARAMETER_UNITS,
    PROPERTY_SAMPLES,
    SAMPLES,
    catalogue_dtype,
    columns,
    flag_attributes,
    meta_lines,
)
from galaxy_inspector.errors import InputError, OutputError

__all__ = ["CatalogueWriter"]

CHUNK_ROWS = 256
LOCK_PATIENCE = 30.0  # seconds a writer waits for a reader to close the file


class CatalogueWriter:
    """Appends rows (and posterior samples) to an HDF5 catalogue, one closed chunk at a time.

    Use ``CatalogueWriter.create`` for a new file and ``CatalogueWriter.resume`` to continue a
    killed run; ``append`` writes a chunk, ``finish`` marks the file complete.
    ``parameters`` are the morphology parameters (their samples go to ``/posterior_samples``),
    ``property_parameters`` the property models' targets (``/property_samples/NAME``). Rows of
    ``dtype`` are built by ``catalogue.rows``.
    """

    def __init__(self, path, parameters, n_samples: int | None, property_parameters=(),
                 dtype=None):
        self.path = Path(path)
        self.parameters = list(parameters)
        self.property_parameters = list(property_parameters)
        self.n_samples = n_samples
        self.dtype = dtype if dtype is not None else catalogue_dtype(self.parameters,
                                                                     self.property_parameters)

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
                f.create_dataset(META, data=meta_lines(columns(
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
    """The file's root attributes: the app, the creation time, the flag meanings, then the
    run's own ``attrs`` (lists and dicts as JSON)."""
    out = {"app": "galaxy-inspector", "app_version": __version__, "created": _now(),
           "complete": False, **flag_attributes()}
    for key, value in attrs.items():
        out[key] = json.dumps(value) if isinstance(value, (list, dict)) else value
    return out
