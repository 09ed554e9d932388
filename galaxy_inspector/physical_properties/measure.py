"""One property model's measurements of many galaxies, each with its reason when there is none.

``measure_properties`` takes the ``PropertyInput`` of each galaxy (``stamps.property_inputs``),
predicts those it can in one call to ``PropertyModel.predict`` and gives every galaxy a
``PropertyMeasurement``: its catalogue summary and samples, or NaNs and why (no stamp, no
redshift for a model that needs one, missing photometry, a refused batch). The morphology
engine and the batch run call it beside the morphology model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from galaxy_inspector.errors import isolate_failures
from galaxy_inspector.models.bundle import is_demo
from galaxy_inspector.physical_properties.stamps import PropertyInput
from galaxy_inspector.posterior import summary_keys

__all__ = ["DEFAULT_PROPERTY_SAMPLES", "PropertyMeasurement", "measure_properties"]

#: Predictive samples per galaxy of a property model when neither --samples nor a morphology
#: model's calibrated number says otherwise.
DEFAULT_PROPERTY_SAMPLES = 500


@dataclass
class PropertyMeasurement:
    """One galaxy's predictions by one property model, or why there are none.

    ``summary`` holds ``NAME_mode, _median, _mean, _lo68 ... _hi997`` floats per target (all NaN
    when ``error`` is set); ``samples`` ``(S, P)`` float32 draws in physical units, or None.
    ``demo`` marks a bundle trained on synthetic labels (its numbers are not real measurements).
    """

    model: str
    names: list
    units: list
    summary: dict
    samples: np.ndarray | None = None
    error: str = ""
    demo: bool = False


def _property_problem(row: PropertyInput, model) -> str:
    """Why ``model`` cannot predict ``row`` ("" when it can)."""
    if row.stamp is None:
        return row.error or "no stamp"
    if not np.isfinite(row.stamp).all():  # refused before batching: it would fail the batch
        return "its stamp is not finite once calibrated (a wrong calibration or sky noise?)"
    if model.needs_redshift and not (row.redshift is not None and math.isfinite(row.redshift)):
        return f"needs a redshift: {row.redshift_note or 'none given for this object'}"
    missing = [c for c in model.photometry_columns
               if not math.isfinite(row.photometry.get(c.lower(), math.nan))]
    if missing:
        return f"needs catalogue photometry column(s) {', '.join(missing)}: missing or empty"
    return ""


def measure_properties(rows: list[PropertyInput], model, n_samples: int | None = None,
                       seed: int = 0) -> list[PropertyMeasurement]:
    """Predictions of one property model for many galaxies in one call.

    Rows it cannot predict (see ``PropertyInput``; no redshift for a model that needs one,
    missing photometry) get NaN summaries and the reason, the others are predicted together.
    """
    names, units = list(model.names), [o.unit for o in model.outputs]
    demo = is_demo(model)
    # All NaN for a galaxy without a prediction, so every row has the same columns.
    nan_summary = dict.fromkeys((k for n in names for k in summary_keys(n)), math.nan)
    problems = [_property_problem(r, model) for r in rows]
    good = [i for i, p in enumerate(problems) if not p]

    def predict(indices):
        z = np.array([rows[i].redshift if rows[i].redshift is not None else math.nan
                      for i in indices])
        phot = {c: np.array([rows[i].photometry[c.lower()] for i in indices])
                for c in model.photometry_columns} or None
        pred = model.predict(np.stack([rows[i].stamp for i in indices]),
                             redshift=z if model.needs_redshift else None, photometry=phot,
                             n_samples=int(n_samples or DEFAULT_PROPERTY_SAMPLES), seed=seed)
        columns = pred.catalogue_columns()
        return [({n: float(v[k]) for n, v in columns.items()}, pred.samples[k])
                for k in range(len(indices))]

    # A batch the model refuses is predicted row by row: only the rows it refuses alone fail,
    # and a failure never loses the morphology.
    results = {}
    for i, result in zip(good, isolate_failures(predict, good, lambda i, message: message),
                         strict=True):
        if isinstance(result, str):
            problems[i] = f"prediction failed: {result}"
        else:
            results[i] = result
    out = []
    for i in range(len(rows)):
        summary, samples = results.get(i, (dict(nan_summary), None))
        out.append(PropertyMeasurement(model=model.bundle.name, names=names, units=units,
                                       summary=summary, samples=samples, error=problems[i],
                                       demo=demo))
    return out
