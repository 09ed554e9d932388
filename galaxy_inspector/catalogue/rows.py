"""How a catalogue row is built: engine measurements in, ``/galaxies`` rows and sample blocks
out, and the provenance a catalogue records about its models.

``RowBuilder`` is the one place a ``Measurement`` becomes a row: ``--batch`` writes its rows,
and the GUI's "export this galaxy" uses ``single_row``, which goes through it too. Per-model
property errors are written here as JSON (``{model name: reason}``) and parsed back in
``catalogue.reader``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from galaxy_inspector.catalogue.schema import (
    catalogue_dtype,
    fit_text,
    key_digest,
    plain_values,
)
from galaxy_inspector.models.bundle import is_demo, model_info

__all__ = ["RowOrigin", "RowBlock", "RowBuilder", "single_row", "empty_rows", "set_text",
           "Provenance", "provenance", "DEMO_WARNING"]

# No quotes or slashes: the text is exported as a FITS keyword value too.
DEMO_WARNING = ("{names} trained on simulated data with synthetic labels (card demo or "
                "synthetic_training_data is true), so {their} columns demonstrate the method "
                "and are not measurements of real galaxies")


@dataclass(frozen=True)
class RowOrigin:
    """What a row says about its object besides the measurement: where it came from.

    ``error`` (why it could not be measured) and the input position ``x``, ``y`` (0-based
    pixels) or ``ra``, ``dec`` (deg) fill the row of an object without a measurement; a
    measured row takes its position from the stamp. ``redshift`` is the input's, or None.
    """

    id: str
    source: str
    input_key: str = ""
    hdu: int = -1
    redshift: float | None = None
    error: str = ""
    x: float | None = None
    y: float | None = None
    ra: float | None = None
    dec: float | None = None


class RowBlock(NamedTuple):
    """A chunk ready for ``CatalogueWriter.append``: rows and their row-aligned samples
    (morphology ``(n, S, P)`` or None, properties ``{NAME: (n, S)}``)."""

    rows: np.ndarray
    samples: np.ndarray | None
    property_samples: dict


def empty_rows(dtype: np.dtype, n: int) -> np.ndarray:
    """``n`` rows with NaN numbers, empty strings, -1 HDU and no flags, to fill in."""
    rows = np.zeros(n, dtype=dtype)
    for name in dtype.names:
        if dtype[name].kind == "f":
            rows[name] = np.nan
    rows["hdu"] = -1
    return rows


def set_text(rows: np.ndarray, i: int, name: str, value) -> None:
    """Store a string into a fixed-width column, cut to fit without breaking UTF-8."""
    rows[name][i] = fit_text(value, rows.dtype[name].itemsize)


def property_error_text(errors: dict, width: int) -> str:
    """``{model name: reason}`` as the JSON of ``property_error`` ("" when empty), the longest
    reasons shortened (ending in "…") until it fits ``width`` bytes, so it always parses."""
    errors = dict(errors)
    while True:
        text = json.dumps(errors, ensure_ascii=False) if errors else ""
        excess = len(text.encode("utf-8")) - width
        longest = max(errors, key=lambda name: len(errors[name]), default=None)
        if excess <= 0 or longest is None or not errors[longest]:
            return text if excess <= 0 else ""
        reason = errors[longest]
        # Each character cut frees at least one byte; the ellipsis costs three.
        errors[longest] = reason[:len(reason) - excess - 3] + "…" if len(reason) > excess + 3 \
            else ""


class RowBuilder:
    """Turns ``(RowOrigin, Measurement or None)`` pairs into a ``RowBlock`` of ``dtype`` rows.

    ``parameters`` are the morphology parameters (empty in a property-only run, where a row no
    property model predicted is an error row), ``property_parameters`` the property targets
    with sample datasets; ``n_samples`` None means no sample blocks. A measurement with an
    ``error`` (no morphology posterior) is an error row too, unless a property model predicted
    it: then the row is ok and ``error`` says why its morphology columns are NaN.
    """

    def __init__(self, dtype: np.dtype, parameters, n_samples: int | None,
                 property_parameters=()):
        self.dtype = dtype
        self.parameters = list(parameters)
        self.n_samples = n_samples
        self.property_parameters = list(property_parameters)

    def build(self, items) -> RowBlock:
        """The rows (and sample blocks) of ``items``, in order."""
        n = len(items)
        rows = empty_rows(self.dtype, n)
        samples = (np.full((n, self.n_samples, len(self.parameters)), np.nan, "f4")
                   if self.n_samples and self.parameters else None)
        property_samples = ({name: np.full((n, self.n_samples), np.nan, "f4")
                             for name in self.property_parameters} if self.n_samples else {})
        for i, (origin, m) in enumerate(items):
            self._fill_origin(rows, i, origin)
            if m is None:
                continue
            if samples is not None and not m.error:  # by name: the model may lack a column
                samples[i][:, [self.parameters.index(n) for n in m.names]] = \
                    m.samples[:self.n_samples]
            for p in m.properties.values():
                if p.error:
                    continue
                for j, name in enumerate(p.names):
                    if name in property_samples:
                        property_samples[name][i] = p.samples[:self.n_samples, j]
            self._fill_measurement(rows, i, m)
        return RowBlock(rows, samples, property_samples)

    @staticmethod
    def _fill_origin(rows: np.ndarray, i: int, origin: RowOrigin) -> None:
        set_text(rows, i, "id", origin.id)
        set_text(rows, i, "source", origin.source)
        set_text(rows, i, "input_key", origin.input_key)
        if "input_key_sha256" in rows.dtype.names:  # absent from files of older versions
            set_text(rows, i, "input_key_sha256", key_digest(origin.input_key))
        rows["hdu"][i] = origin.hdu
        if "redshift" in rows.dtype.names and origin.redshift is not None:
            rows["redshift"][i] = origin.redshift
        # A measured row overwrites these with the stamp's position and its status.
        set_text(rows, i, "status", "error")
        set_text(rows, i, "error", origin.error)
        for name in ("x", "y", "ra", "dec"):
            value = getattr(origin, name)
            rows[name][i] = np.nan if value is None else value

    def _fill_measurement(self, rows: np.ndarray, i: int, m) -> None:
        s = m.stamp
        errors = {name: p.error for name, p in m.properties.items() if p.error}
        predicted = [p for p in m.properties.values() if not p.error]
        if (m.error or not self.parameters) and not predicted:  # no model measured anything
            set_text(rows, i, "error", m.error or "; ".join(f"{name}: {reason}"
                                                            for name, reason in errors.items()))
        else:  # ok; the morphology's reason, if it gave none, says why its columns are NaN
            set_text(rows, i, "status", "ok")
            set_text(rows, i, "error", m.error)
        if errors and "property_error" in rows.dtype.names:  # none: no model has columns
            set_text(rows, i, "property_error",
                     property_error_text(errors, rows.dtype["property_error"].itemsize))
        set_text(rows, i, "label", m.label)
        set_text(rows, i, "calibration", s.calibration)
        # A catalogue of an older version being resumed lacks the columns added since.
        if "psf_source" in rows.dtype.names:
            set_text(rows, i, "psf_source", s.psf_source)
        for name, value in (("x", s.x), ("y", s.y), ("ra", s.ra), ("dec", s.dec),
                            ("stn_scale", m.stn_scale), ("flags", m.flags),
                            ("snr", m.snr), ("masked_fraction", s.masked_fraction),
                            ("pixel_scale", s.source_scale), ("binning", s.binning),
                            ("psf_fwhm_arcsec", s.psf_fwhm), ("psf_told_arcsec", m.psf_told)):
            if name in rows.dtype.names:
                rows[name][i] = np.nan if value is None else value
        for name, value in zip(("crop_x0", "crop_y0", "crop_x1", "crop_y1"), m.crop_box,
                               strict=True):
            rows[name][i] = value
        for summary in [m.summary] + [p.summary for p in m.properties.values()]:
            for name, value in summary.items():
                if name in rows.dtype.names:
                    rows[name][i] = value


def single_row(origin: RowOrigin, measurement) -> dict:
    """One measurement's catalogue row as ``{column: value}``: the columns and values a batch
    row of the same measurement has (what the GUI exports for one galaxy)."""
    targets = [n for p in measurement.properties.values() for n in p.names]
    dtype = catalogue_dtype(measurement.names, targets)
    block = RowBuilder(dtype, measurement.names, None, targets).build([(origin, measurement)])
    return plain_values(block.rows[0])


class Provenance(NamedTuple):
    """What a catalogue records about its models: root ``attrs``, per property target its
    ``units`` and a column ``notes`` (model, demo), and the demo ``warning`` ("" if none)."""

    attrs: dict
    units: dict
    notes: dict
    warning: str


def provenance(morphology, properties, n_samples: int, n_saved: int | None,
               command_line: str = "", seed: int = 0) -> Provenance:
    """The provenance of a run with ``morphology`` (a loaded model or None) and the loaded
    property models ``properties``, drawing ``n_samples`` per galaxy and saving ``n_saved``
    (None: no samples saved)."""
    models = ([morphology] if morphology else []) + list(properties)
    first = models[0]
    demos = [m.bundle.name for m in models if is_demo(m)]
    warning = ""
    if demos:
        warning = DEMO_WARNING.format(
            names=(f"model {demos[0]} was" if len(demos) == 1
                   else f"models {', '.join(demos)} were"),
            their="its" if len(demos) == 1 else "their")
    attrs = {"model_name": first.bundle.name, "model_sha256": first.bundle.sha256,
             "models": [model_info(m) for m in models],
             "model_names": ", ".join(m.bundle.name for m in models),
             "property_models": [m.bundle.name for m in properties],
             "property_parameters": [n for m in properties for n in m.names],
             "demo_models": ", ".join(demos), "demo_warning": warning,
             "command_line": command_line,
             "parameters": morphology.names if morphology else [],
             "n_samples": n_samples, "n_samples_saved": n_saved or 0, "seed": seed,
             "model_pixel_scale": first.pixel_scale, "model_stamp_size": first.stamp_size,
             "model_reads_psf": bool(getattr(morphology, "takes_psf", False))}
    units, notes = {}, {}
    for m in properties:
        demo = "; DEMO: synthetic training labels" if is_demo(m) else ""
        for out in m.outputs:
            units[out.name] = out.unit
            notes[out.name] = f"model {m.bundle.name}{demo}"
    return Provenance(attrs, units, notes, warning)
