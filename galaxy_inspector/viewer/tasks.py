"""The engine calls the GUI runs in background workers (no Qt, no science: only engine calls).

Each function here is what one worker runs; keeping them plain makes them testable without a
window and keeps ``workers.py`` the only place that knows about threads.
"""

from __future__ import annotations

import dataclasses
import importlib
import threading
from dataclasses import dataclass
from pathlib import Path

from galaxy_inspector.batch import run_batch
from galaxy_inspector.catalogue import failed_rows, redshift_of, stored_measurement
from galaxy_inspector.engine import (
    DEFAULT_DISPLAY_MODEL,
    DEFAULT_MODEL,
    analyse_position,
    load_model,
    load_models,
    stamp_for,
)
from galaxy_inspector.errors import ImageReadError, user_message
from galaxy_inspector.flags import Flag
from galaxy_inspector.io import expand_inputs, is_raster_path, read_image, read_raster_rgb
from galaxy_inspector.io.inputs import file_problem
from galaxy_inspector.physical_properties.measure import PropertyMeasurement
from galaxy_inspector.viewer.state import ImageSettings

__all__ = ["preload_engine_modules", "read_planes", "read_files", "ModelCache", "GalaxyAnalysis",
           "MAX_PLANES", "batch_task", "catalogue_galaxy_task", "failed_property",
           "morphology_model_for"]

MAX_PLANES = 16  # more planes than this is a spectral cube, not a set of band images
#: Extension modules the engine imports lazily. Importing one holds the GIL for up to a second,
#: which would freeze the GUI if it happened first in a worker thread during a click or batch.
ENGINE_MODULES = ("torch", "galaxy_inspector.models.morphology", "scipy.ndimage", "reproject",
                  "photutils.aperture", "photutils.segmentation", "astropy.table", "PIL.Image",
                  "safetensors.numpy", "galaxy_inspector.physical_properties.model", "lightgbm")


def preload_engine_modules() -> None:
    """Import the engine's heavy dependencies now (at start-up, before the window is shown)."""
    for name in ENGINE_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:  # the engine reports a missing dependency when it needs it
            continue


def read_planes(path: str, settings: ImageSettings | None = None) -> list:
    """Every image plane of a file: one for an image, one per band for a FITS cube, the R, G, B
    channels of a JPEG/PNG (shown in colour as they are); read with the ``settings`` a user
    gave for it (pixel scale, zero point, PSF, sky: ``read_image``'s options, as
    ``--batch``'s)."""
    settings = settings or ImageSettings()
    options = settings.read_options()
    if is_raster_path(path):
        problem = file_problem(Path(path))  # read_image's check: no FIFO, device or folder
        if problem:
            raise ImageReadError(problem)
        if settings.sky_subtracted:
            read_image(path, sky_subtracted=True)  # refused with read_image's reason
        channels = read_raster_rgb(path, pixel_scale=settings.pixel_scale)
        if not settings.gives_psf:
            return channels
        grey = read_image(path, **options)  # the PSF as --batch finds it for this image
        return [channel.with_psf(grey.psf_fwhm, grey.psf_source) for channel in channels]
    planes = [read_image(path, plane=0, **options)]
    for k in range(1, MAX_PLANES):
        try:
            image = read_image(path, plane=k, pixel_scale=settings.pixel_scale,
                               zero_point=settings.zero_point,
                               sky_subtracted=settings.sky_subtracted)
        except ValueError:  # InputError: the cube has no plane k
            break
        if image.plane != k:  # a 2-D image ignores ``plane``
            break
        # Each band's own PSF, looked for (its stars measured) once the plane is known to exist.
        planes.append(read_image(path, plane=k, **options) if settings.gives_psf else image)
    return planes


def read_files(paths):
    """Each file's planes in turn, as ``(path, planes, None)`` or ``(path, None, exception)``:
    files opened together appear in the order given, and one bad file stops none of the
    others."""
    for path in paths:
        try:
            yield path, read_planes(path), None
        except Exception as exc:  # the GUI says why this one failed, in one line
            yield path, None, exc


@dataclass(frozen=True)
class GalaxyAnalysis:
    """An engine ``Measurement`` with what the panel needs to show it: where it came from (file
    HDU and plane) and which parameters the model predicts in log10 (drawn on log axes)."""

    measurement: object
    source: str
    model_name: str
    log_parameters: tuple
    redshift: float | None = None
    hdu: int = -1
    model_sha256: str = ""
    plane: int = 0

    @property
    def properties(self) -> dict:
        """Bundle name -> ``PropertyMeasurement`` of each active property model."""
        return self.measurement.properties

    @property
    def crop_box(self) -> tuple:
        """Region the CNN read, ``(x0, y0, x1, y1)`` in 0-based source pixels."""
        return self.measurement.crop_box

    @property
    def stamp_box(self) -> tuple:
        """Footprint of the whole stamp, ``(x0, y0, x1, y1)`` in 0-based source pixels."""
        return self.measurement.stamp.box


def failed_property(name: str, reason: str) -> PropertyMeasurement:
    """The entry of a property model that could not even be loaded (shown like any reason)."""
    return PropertyMeasurement(model=name, names=[], units=[], summary={},
                               error=f"cannot be used: {reason}")


def morphology_model_for(image, name_or_path: str | None) -> str:
    """The morphology model the GUI measures ``image`` with: the chosen one, except that a
    display image (JPEG/PNG) is measured with the display model while the chosen one is the
    default flux model, which would refuse it (``--batch`` does the same for JPEG inputs)."""
    chosen = name_or_path or DEFAULT_MODEL
    if image is not None and image.is_display_image and chosen == DEFAULT_MODEL:
        return DEFAULT_DISPLAY_MODEL
    return chosen


class ModelCache:
    """Keeps the active models loaded between clicks (loading costs far more than predicting).

    The morphology model and each property bundle are cached by name or folder, so switching a
    property model on or off does not reload the others. Calls are serialised by a lock: the GUI
    runs one analysis at a time, but a model switch may arrive while one runs.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._key = None
        self._model = None
        self._properties: dict = {}

    def get(self, name_or_path: str | None):
        key = name_or_path or DEFAULT_MODEL
        with self._lock:
            if self._model is None or key != self._key:
                self._model = load_model(key)
                self._key = key
            return self._model

    def get_property(self, name_or_path: str):
        """The loaded property model of a bundle (``BundleError`` when it cannot be loaded)."""
        with self._lock:
            if name_or_path not in self._properties:
                _, (model,) = load_models([name_or_path])
                self._properties[name_or_path] = model
            return self._properties[name_or_path]

    def property_models(self, names, morphology=None) -> tuple[list, dict]:
        """``(loaded models, {name: PropertyMeasurement with the reason})`` for ``names``: a
        bundle that cannot be loaded, or that predicts a quantity another active model
        already predicts (their columns would collide), is left out with its reason."""
        models, failed = [], {}
        taken = {n: morphology.bundle.name for n in morphology.names} if morphology else {}
        for name in names:
            try:
                model = self.get_property(name)
            except Exception as exc:  # one bad bundle must not stop the others
                failed[str(name)] = failed_property(str(name), user_message(exc))
                continue
            clash = [n for n in model.names if n in taken]
            if model.bundle.name in {m.bundle.name for m in models}:
                failed[f"{name}"] = failed_property(
                    str(name), f"another active model is also named {model.bundle.name!r}")
            elif clash:
                failed[model.bundle.name] = failed_property(
                    model.bundle.name, f"{taken[clash[0]]} already predicts {clash[0]!r}; "
                                       "switch one of them off")
            else:
                models.append(model)
                taken.update({n: model.bundle.name for n in model.names})
        return models, failed

    def analyse(self, image, x: float, y: float, name_or_path: str | None,
                n_samples: int | None = None, property_models=(),
                redshift: float | None = None):
        """The engine's measurement of the galaxy at 0-based pixel (x, y) of ``image``, with
        the predictions of the property bundles ``property_models`` (names or folders).

        A display image's channel is replaced by the grey plane ``--batch`` measures
        (``read_image``: the channels' mean), whichever channel is shown, with the pixel scale
        and PSF the channel was read with."""
        if image.is_display_image:
            given = None if image.flags & Flag.PIXEL_SCALE_GUESSED else image.pixel_scale
            image = read_image(image.source, pixel_scale=given).with_psf(image.psf_fwhm,
                                                                          image.psf_source)
        model = self.get(morphology_model_for(image, name_or_path))
        properties, failed = self.property_models(property_models, model)
        with self._lock:
            measurement = analyse_position(image, x, y, model, n_samples=n_samples,
                                           return_crops=True, property_models=properties,
                                           redshift=redshift)
        measurement.properties.update(failed)
        logs = tuple(o.name for o in model.outputs if o.transform == "log10")
        return GalaxyAnalysis(measurement, image.source, model.bundle.name, logs, redshift,
                              image.hdu, model.bundle.sha256, image.plane)


def batch_task(inputs: list, out: str, options, report, should_stop):
    """``run_batch`` for the batch dialog: first reports the number of inputs (an int, for the
    ETA), then a copy of the engine's ``BatchProgress`` after every written chunk.

    Returns the final ``BatchProgress`` and the ``"id: reason"`` of every failed row, read here
    so that the GUI thread never parses the file.
    """
    report(sum(1 for _ in expand_inputs(inputs)))
    result = run_batch(inputs, out, options, progress=lambda p: report(dataclasses.replace(p)),
                       cancel=should_stop)
    return result, [f"{ident}: {error}" for ident, error in failed_rows(out)]


def catalogue_galaxy_task(models: ModelCache, catalogue: str, index: int, row: dict,
                          model_name: str | None):
    """Planes of a catalogue row's image and its analysis: the stored posterior when the file
    has samples (the stamp is re-cut only to show where it lies), else a fresh measurement;
    the row's stored property predictions either way."""
    planes = read_planes(row["source"])
    image = planes[0]
    stored = stored_measurement(catalogue, index)
    redshift = redshift_of(row)
    if not len(stored.samples):
        analysis = models.analyse(image, row["x"], row["y"], model_name)
        analysis.measurement.properties.update(stored.properties)
        return planes, dataclasses.replace(analysis, redshift=redshift)
    model = models.get(model_name)
    measurement = dataclasses.replace(stored, stamp=stamp_for(image, row["x"], row["y"], model))
    logs = tuple(o.name for o in model.outputs if o.transform == "log10")
    return planes, GalaxyAnalysis(measurement, image.source, model.bundle.name, logs, redshift,
                                  image.hdu, model.bundle.sha256)
