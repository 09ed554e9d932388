"""The engine calls the GUI runs in background workers (no Qt, no science: only engine calls).

Each function here is what one worker runs; keeping them plain makes them testable without a
window and keeps ``workers.py`` the only place that knows about threads.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from galaxy_inspector.engine import DEFAULT_MODEL, analyse_position, load_model
from galaxy_inspector.io import read_image

__all__ = ["read_planes", "ModelCache", "GalaxyAnalysis", "MAX_PLANES"]

MAX_PLANES = 16  # more planes than this is a spectral cube, not a set of band images


def read_planes(path: str) -> list:
    """Every image plane of a file: one for an image, one per band for a FITS cube."""
    first = read_image(path, plane=0)
    planes = [first]
    if not str(path).lower().endswith((".jpg", ".jpeg", ".png")):
        for k in range(1, MAX_PLANES):
            try:
                image = read_image(path, plane=k)
            except ValueError:  # InputError: the cube has no plane k
                break
            if image.plane != k:  # a 2-D image ignores ``plane``
                break
            planes.append(image)
    return planes


@dataclass(frozen=True)
class GalaxyAnalysis:
    """An engine ``Measurement`` with what the panel needs to show it: where it came from and
    which parameters the model predicts in log10 (drawn on log axes)."""

    measurement: object
    source: str
    model_name: str
    log_parameters: tuple

    @property
    def crop_box(self) -> tuple:
        """Region the CNN read, ``(x0, y0, x1, y1)`` in 0-based source pixels."""
        return self.measurement.crop_box

    @property
    def stamp_box(self) -> tuple:
        """Footprint of the whole stamp, ``(x0, y0, x1, y1)`` in 0-based source pixels."""
        return self.measurement.stamp.box


class ModelCache:
    """Keeps the active model loaded between clicks (loading costs far more than predicting).

    Calls are serialised by a lock: the GUI runs one analysis at a time, but a model switch may
    arrive while one runs.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._key = None
        self._model = None

    def get(self, name_or_path: str | None):
        key = name_or_path or DEFAULT_MODEL
        with self._lock:
            if self._model is None or key != self._key:
                self._model = load_model(key)
                self._key = key
            return self._model

    def analyse(self, image, x: float, y: float, name_or_path: str | None,
                n_samples: int | None = None):
        """The engine's measurement of the galaxy at 0-based pixel (x, y) of ``image``."""
        model = self.get(name_or_path)
        with self._lock:
            measurement = analyse_position(image, x, y, model, n_samples=n_samples,
                                           return_crops=True)
        logs = tuple(o.name for o in model.outputs if o.transform == "log10")
        return GalaxyAnalysis(measurement, image.source, model.bundle.name, logs)
