"""The measuring engine that the GUI and ``--batch`` both call (no Qt here).

Typical use::

    from galaxy_inspector.engine import load_model, analyse_position, measure_stamps, stamp_for
    from galaxy_inspector.io import read_image

    model = load_model()                        # shipped default, a bundle folder, or a name
    image = read_image("galaxy.fits")           # SkyImage in nJy per pixel
    m = analyse_position(image, x, y, model)    # one galaxy (a click): a Measurement
    m.summary["bt_mode"], m.label, m.flags, m.crop_box, m.samples

    stamps = [stamp_for(image, x, y, model) for x, y in positions]
    measurements = measure_stamps(stamps, model)   # many galaxies, batched forward passes

A ``Measurement`` holds the posterior samples in physical units, their summary (KDE mode in
log/logit space, median, mean, HPD intervals: ``posterior.summarize``), the spatial
transformer's zoom and the box it read in source pixels, the signal-to-noise ratio, the
qualitative label (``labels``) and the quality ``flags``.

Physical-property bundles (card ``task = "properties"``, ``models.properties.PropertyModel``)
run beside the morphology model on the same position::

    morphology, properties = load_models(["morphology-hsc-g", "bundles/metallicity"])
    m = analyse_position(image, x, y, morphology, property_models=properties, redshift=0.08)
    m.properties["metallicity-model"].summary["oh12_mean"]     # a PropertyMeasurement

Each property model reads its own stamp (``property_stamp``: its bands from the image's file,
its grid); when a row cannot be predicted (no redshift for a model that needs one, missing
bands, uncalibrated fluxes) its ``PropertyMeasurement`` holds NaNs and the reason in ``error``,
and the morphology is unaffected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from galaxy_inspector.errors import BundleError, InputError, user_message
from galaxy_inspector.flags import Flag
from galaxy_inspector.io.image import SkyImage
from galaxy_inspector.labels import qualitative_label, thresholds_from_card
from galaxy_inspector.posterior import LEVEL_SUFFIXES, summarize
from galaxy_inspector.preprocessing import (
    NOMINAL_SKY_SIGMA_NJY,
    Stamp,
    make_display_stamp,
    make_stamp,
)

__all__ = ["DEFAULT_MODEL", "DEFAULT_PROPERTY_SAMPLES", "Measurement", "PropertyMeasurement",
           "PropertyInput", "StampSpec", "PropertySpec", "load_model", "load_models",
           "stamp_for", "property_bands", "property_stamp",
           "measure_stamps", "measure_properties", "bare_measurements", "analyse_position",
           "analyse_sky_position", "model_info", "is_demo", "LOW_SNR"]

DEFAULT_MODEL = "morphology-hsc-g"
#: Predictive samples per galaxy of a property model when neither --samples nor a morphology
#: model's calibrated number says otherwise.
DEFAULT_PROPERTY_SAMPLES = 500
LOW_SNR = 10.0


@dataclass
class Measurement:
    """One galaxy's posterior and everything a user needs to judge it.

    Attributes
    ----------
    stamp : Stamp
        The stamp the model read (position, scales, calibration, masked fraction).
    names, units : list of str
        Parameter names and units, in the order of the last axis of ``samples``.
    samples : ndarray (S, P), float32
        Posterior samples in physical units.
    summary : dict
        ``P_mode``, ``P_median``, ``P_mean``, ``P_lo68``... ``P_hi997`` per parameter (floats).
    stn_scale : float
        Spatial-transformer zoom: the CNN read ``stn_scale * stamp_size`` model pixels.
    crop_box : tuple
        ``(x0, y0, x1, y1)``, the region the CNN read in 0-based source-image pixels.
    snr : float
        Flux within 2 R_e (posterior median, at least 2 pixels) over the sky noise in it.
    label : str
        Qualitative label (GaMPEN §6.4) from the posterior modes, or "".
    flags : int
        ``galaxy_inspector.flags.Flag`` bits.
    crop : ndarray or None
        The arsinh-scaled crop the CNN read (for display), when asked for.
    properties : dict
        Bundle name -> ``PropertyMeasurement`` of each active property model (empty without).
    """

    stamp: Stamp
    names: list
    units: list
    samples: np.ndarray
    summary: dict
    stn_scale: float
    crop_box: tuple
    snr: float
    label: str
    flags: int
    crop: np.ndarray | None = None
    properties: dict = field(default_factory=dict)


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


@dataclass
class PropertyInput:
    """What a property model needs for one galaxy: its stamp (C, n, n) on the model's grid (or
    ``error`` saying why there is none), the redshift (or ``redshift_note`` saying why none),
    catalogue photometry (column -> value) and the stamp's flags."""

    stamp: np.ndarray | None
    error: str = ""
    redshift: float | None = None
    redshift_note: str = ""
    photometry: dict = field(default_factory=dict)
    flags: int = 0


def _stat_names(names) -> list[str]:
    stats = ["mode", "median", "mean"] + [f"{side}{s}" for s in LEVEL_SUFFIXES
                                          for side in ("lo", "hi")]
    return [f"{n}_{stat}" for n in names for stat in stats]


def model_info(model) -> dict:
    """Provenance of a loaded model for catalogue attributes: name, SHA-256, path, task,
    outputs, and whether it is a demo trained on synthetic data."""
    card = model.bundle.card
    return {"name": model.bundle.name, "sha256": model.bundle.sha256,
            "path": str(model.bundle.path), "task": card.get("task"),
            "method": card.get("method", ""), "outputs": list(model.names),
            "demo": bool(card.get("demo", False)),
            "synthetic_training_data": bool(card.get("synthetic_training_data", False))}


def is_demo(model) -> bool:
    """Whether a bundle says it is a demonstration or was trained on synthetic labels."""
    info = model_info(model)
    return info["demo"] or info["synthetic_training_data"]


def load_models(names=None, device: str | None = None):
    """``(morphology model or None, [property models])`` from bundle folders or names.

    Each bundle's card says its task. No names means the default morphology model; property
    bundles alone give a property-only run. Refuses (``BundleError``) two morphology models
    models that predict a quantity of the same name (their columns would collide), and two
    property models of the same name (their results are keyed by it).
    """
    from galaxy_inspector.models.bundle import load_bundle
    from galaxy_inspector.models.morphology import MorphologyModel
    from galaxy_inspector.physical_properties.model import PropertyModel

    names = [names] if isinstance(names, str) else list(names or [])
    morphology, properties = None, []
    for name in names or [DEFAULT_MODEL]:
        bundle = load_bundle(name)
        task = bundle.card.get("task")
        if task == "morphology":
            if morphology is not None:
                raise BundleError(f"two morphology models given ({morphology.bundle.name}, "
                                  f"{bundle.name}); a catalogue holds one")
            morphology = MorphologyModel(bundle, device=device)
        elif task == "properties":
            properties.append(PropertyModel(bundle, device=device))
        else:
            raise BundleError(f"bundle {bundle.name!r} has task {task!r}; this version runs "
                              "'morphology' and 'properties' bundles")
    names = [m.bundle.name for m in properties]
    for name in names:
        if names.count(name) > 1:
            raise BundleError(f"two property models are both named {name!r}; give each a "
                              "distinct 'name' in its card.json")
    seen = {n: morphology.bundle.name for n in morphology.names} if morphology else {}
    for model in properties:
        for n in model.names:
            if n in seen:
                raise BundleError(f"models {seen[n]} and {model.bundle.name} both predict "
                                  f"{n!r}; give only one of them")
            seen[n] = model.bundle.name
    return morphology, properties


def load_model(name_or_path=None, device: str | None = None):
    """A ``MorphologyModel`` from a bundle folder or shipped name (default ``DEFAULT_MODEL``).

    Raises ``BundleError`` with a one-line message if the bundle is missing or corrupt.
    """
    from galaxy_inspector.models.morphology import MorphologyModel

    return MorphologyModel(name_or_path or DEFAULT_MODEL, device=device)


@dataclass(frozen=True)
class StampSpec:
    """The stamp a model reads: side (pixels), pixel scale (arcsec/px), and the sky noise
    (nJy/px) uncalibrated images are scaled to. Small and picklable (sent to batch workers)."""

    stamp_size: int
    pixel_scale: float
    nominal_sky_sigma: float

    @classmethod
    def of(cls, model) -> StampSpec:
        return cls(model.stamp_size, model.pixel_scale, _nominal_sky_sigma(model.bundle.card))


@dataclass(frozen=True)
class PropertySpec:
    """The stamp a property model reads (from its card): bands and their kind (``flux`` in nJy
    or ``display`` 0-255 colour channels), side and pixel scale, and ``raw_values`` when it was
    trained on uncalibrated file values. Small and picklable (sent to batch workers)."""

    name: str
    bands: tuple
    kind: str
    stamp_size: int
    pixel_scale: float
    raw_values: bool = False

    @classmethod
    def of(cls, model) -> PropertySpec:
        card = model.bundle.card
        data = (card.get("training") or {}).get("data") or {}
        return cls(model.bundle.name, tuple(model.bands), str(card["input"].get("kind", "flux")),
                   model.stamp_size, model.pixel_scale,
                   raw_values=data.get("flux_calibrated", True) is False)


def property_bands(image: SkyImage, spec: PropertySpec, pixel_scale: float | None = None,
                   zero_point: float | None = None) -> list[SkyImage]:
    """The band images ``spec`` reads, from the file ``image`` was read from (the planes of a
    cube by band name, or a JPEG's colour channels); an array image serves a one-band model.
    ``pixel_scale``/``zero_point`` are the user's values for files without them."""
    from galaxy_inspector.physical_properties.bands import read_bands

    if not image.source:
        if spec.kind == "flux" and len(spec.bands) == 1:
            return [image]
        raise InputError(f"model {spec.name} reads bands {', '.join(spec.bands)} "
                         f"({spec.kind}); an image without a file cannot provide them")
    hdu = image.hdu if image.hdu >= 0 else None
    return read_bands(image.source, spec.bands, spec.kind, hdu=hdu, pixel_scale=pixel_scale,
                      zero_point=zero_point)


def property_stamp(bands: list[SkyImage], x: float, y: float, spec: PropertySpec,
                   seed: int = 0) -> tuple[np.ndarray, int]:
    """``(stamp (C, n, n) float32, flags)`` for a property model at 0-based pixel (x, y).

    Flux bands are cut and resampled like morphology stamps but never normalised: a model
    trained on calibrated fluxes refuses an uncalibrated band (``InputError``, give
    --zero-point); display channels keep their 0-255 values (``make_display_stamp``).
    """
    if spec.kind == "display":
        return make_display_stamp(bands, x, y, spec.stamp_size, spec.pixel_scale)
    if not spec.raw_values:
        for band, image in zip(spec.bands, bands, strict=True):
            if not image.calibrated:
                raise InputError(f"model {spec.name} reads calibrated fluxes (nJy) but band "
                                 f"{band} of {image.source or 'the image'} has no flux "
                                 f"calibration ({image.calibration}); give --zero-point")
    stamps = [make_stamp(image, x, y, spec.stamp_size, spec.pixel_scale, seed=seed,
                         normalise_uncalibrated=False) for image in bands]
    flags = 0
    for stamp in stamps:
        flags |= stamp.flags
    return np.stack([s.data for s in stamps]), int(flags)


def stamp_for(image: SkyImage, x: float, y: float, model, seed: int = 0) -> Stamp:
    """The stamp ``model`` (or a ``StampSpec``) needs around 0-based pixel (x, y) of ``image``."""
    spec = model if isinstance(model, StampSpec) else StampSpec.of(model)
    return make_stamp(image, x, y, spec.stamp_size, spec.pixel_scale, seed=seed,
                      nominal_sky_sigma=spec.nominal_sky_sigma)


def _nominal_sky_sigma(card) -> float:
    """Sky noise an uncalibrated stamp is scaled to: the card's, or mid training range."""
    if "sky_sigma_njy" in card["input"]:
        return float(card["input"]["sky_sigma_njy"])
    lo_hi = _training_ranges(card).get("sky_sigma_njy")
    return math.sqrt(lo_hi[0] * lo_hi[1]) if lo_hi and min(lo_hi) > 0 else NOMINAL_SKY_SIGMA_NJY


def _training_ranges(card) -> dict:
    """``{name: (lo, hi)}`` from the card's ``training_ranges`` (pairs or {min, max})."""
    ranges = {}
    for name, value in (card.get("training_ranges") or {}).items():
        if isinstance(value, dict):
            value = (value.get("min"), value.get("max"))
        try:
            lo, hi = (float(v) for v in value)
        except (TypeError, ValueError):
            continue
        ranges[name] = (lo, hi)
    return ranges


def _snr(stamps: np.ndarray, re_pixels: np.ndarray, sky_sigma: np.ndarray) -> np.ndarray:
    n = stamps.shape[-1]
    centre = (n - 1) / 2.0
    yy, xx = np.indices((n, n))
    radius = np.hypot(yy - centre, xx - centre)
    r_ap = np.clip(2.0 * np.nan_to_num(re_pixels, nan=2.0), 2.0, 0.45 * n)
    inside = radius[None] <= r_ap[:, None, None]
    flux = (stamps * inside).sum(axis=(1, 2))
    noise = sky_sigma * np.sqrt(inside.sum(axis=(1, 2)))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(noise > 0, flux / noise, np.nan)


def measure_stamps(stamps: list[Stamp], model, n_samples: int | None = None, seed: int = 0,
                   return_crops: bool = False) -> list[Measurement]:
    """Posteriors of many stamps in batched forward passes, with summaries, labels and flags.

    A stamp noisier than any the model was trained on (say a shallow survey) is divided by
    ``k = sky sigma / the training maximum`` before the network and its flux samples are
    multiplied by ``k``: where sky noise dominates, an image and its noise scaled together
    hold the same shape information. Such rows stay flagged OUTSIDE_TRAINING.
    """
    if not stamps:
        return []
    data = np.stack([s.data for s in stamps])
    card = model.bundle.card
    ranges = _training_ranges(card)
    sky_sigma = np.array([s.sky_sigma for s in stamps])
    sky_max = ranges.get("sky_sigma_njy", (0.0, math.inf))[1]
    gain = np.maximum(np.nan_to_num(sky_sigma / sky_max, nan=1.0), 1.0)
    pred = model.predict(data / gain[:, None, None].astype(np.float32), n_samples=n_samples,
                         seed=seed, return_crops=return_crops)
    names = list(pred.names)
    if "flux_njy" in names:
        pred.samples[..., names.index("flux_njy")] *= gain[:, None].astype(np.float32)
    summary = summarize(pred.samples, names, model.mode_transforms())
    thresholds = thresholds_from_card(card)
    flags = np.array([s.flags for s in stamps], dtype=np.int64)
    for name, (lo, hi) in ranges.items():
        value = sky_sigma if name == "sky_sigma_njy" else summary.get(f"{name}_median")
        if value is not None:
            flags |= np.where((value < lo) | (value > hi), int(Flag.OUTSIDE_TRAINING), 0)
    re = summary.get("re_arcsec_median", np.full(len(stamps), np.nan))
    snr = _snr(data, re / model.pixel_scale, sky_sigma)
    flags |= np.where(~(snr >= LOW_SNR), int(Flag.LOW_SNR), 0)
    out = []
    for i, stamp in enumerate(stamps):
        row = {k: float(v[i]) for k, v in summary.items()}
        label = qualitative_label(row.get("bt_mode", math.nan), row.get("re_arcsec_mode", math.nan),
                                  thresholds)
        scale = float(pred.stn_scale[i])
        out.append(Measurement(
            stamp=stamp, names=names, units=list(pred.units), samples=pred.samples[i],
            summary=row, stn_scale=scale, crop_box=stamp.source_box(scale * model.stamp_size),
            snr=float(snr[i]), label=label, flags=int(flags[i]),
            crop=pred.crops[i] if return_crops else None))
    return out


def bare_measurements(stamps: list[Stamp]) -> list[Measurement]:
    """Measurements without a morphology posterior (a property-only run): the stamps' position,
    calibration and flags, NaN for everything the morphology model would have given."""
    return [Measurement(stamp=s, names=[], units=[], samples=np.empty((0, 0), np.float32),
                        summary={}, stn_scale=math.nan, crop_box=s.box, snr=math.nan, label="",
                        flags=int(s.flags)) for s in stamps]


def _property_problem(row: PropertyInput, model) -> str:
    if row.stamp is None:
        return row.error or "no stamp"
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
    nan_summary = dict.fromkeys(_stat_names(names), math.nan)
    problems = [_property_problem(r, model) for r in rows]
    good = [i for i, p in enumerate(problems) if not p]
    results = {}
    if good:
        z = np.array([rows[i].redshift if rows[i].redshift is not None else math.nan
                      for i in good])
        phot = {c: np.array([rows[i].photometry[c.lower()] for i in good])
                for c in model.photometry_columns} or None
        try:
            pred = model.predict(np.stack([rows[i].stamp for i in good]),
                                 redshift=z if model.needs_redshift else None, photometry=phot,
                                 n_samples=int(n_samples or DEFAULT_PROPERTY_SAMPLES),
                                 seed=seed)
        except Exception as exc:  # a batch the model refuses must not lose the morphology
            for i in good:
                problems[i] = f"prediction failed: {user_message(exc)}"
        else:
            columns = pred.catalogue_columns()
            for k, i in enumerate(good):
                results[i] = ({n: float(v[k]) for n, v in columns.items()}, pred.samples[k])
    out = []
    for i in range(len(rows)):
        summary, samples = results.get(i, (dict(nan_summary), None))
        out.append(PropertyMeasurement(model=model.bundle.name, names=names, units=units,
                                       summary=summary, samples=samples, error=problems[i],
                                       demo=demo))
    return out


def analyse_position(image: SkyImage, x: float, y: float, model, n_samples: int | None = None,
                     seed: int = 0, return_crops: bool = True, property_models=(),
                     redshift: float | None = None, photometry: dict | None = None,
                     pixel_scale: float | None = None,
                     zero_point: float | None = None) -> Measurement:
    """Measure the galaxy at 0-based pixel (x, y) of ``image`` (the GUI's click).

    ``model`` is the morphology model (None for properties only); each of ``property_models``
    adds a ``PropertyMeasurement`` to ``Measurement.properties``, reading its bands from the
    image's file (``pixel_scale``/``zero_point`` as given for that file). ``redshift`` and
    ``photometry`` (column -> magnitude) feed models that need them; without, their entry says
    why it is empty. Raises ``InputError`` (one-line message) when no usable stamp can be made
    at (x, y); a property model that cannot read the image only gets an ``error``.
    """
    property_models = list(property_models)
    if model is None and not property_models:
        raise InputError("no model to run: give a morphology or a property model")
    if model is not None:
        (m,) = measure_stamps([stamp_for(image, x, y, model, seed)], model, n_samples, seed,
                              return_crops)
    else:
        first = PropertySpec.of(property_models[0])
        (m,) = bare_measurements([stamp_for(image, x, y, StampSpec(
            first.stamp_size, first.pixel_scale, NOMINAL_SKY_SIGMA_NJY), seed)])
    n_prop = n_samples or (model.default_samples if model is not None
                           else DEFAULT_PROPERTY_SAMPLES)
    phot = {str(k).lower(): float(v) for k, v in (photometry or {}).items()}
    for pmodel in property_models:
        spec = PropertySpec.of(pmodel)
        try:
            bands = property_bands(image, spec, pixel_scale, zero_point)
            stamp, flags = property_stamp(bands, x, y, spec, seed)
            row = PropertyInput(stamp, redshift=redshift, photometry=phot, flags=flags,
                                redshift_note="no redshift given")
        except Exception as exc:  # one model that cannot read the image must not stop the rest
            row = PropertyInput(None, error=user_message(exc))
        (m.properties[pmodel.bundle.name],) = measure_properties([row], pmodel, n_prop, seed)
    return m


def analyse_sky_position(image: SkyImage, ra: float, dec: float, model,
                         n_samples: int | None = None, seed: int = 0,
                         return_crops: bool = True, **property_options) -> Measurement:
    """Measure the galaxy at (RA, Dec) in degrees; ``InputError`` if the image has no WCS.
    ``property_options`` are those of ``analyse_position``."""
    if image.wcs is None:
        raise InputError("the image has no celestial WCS, so RA/Dec cannot be placed on it; "
                         "give x/y pixel positions instead")
    x, y = image.sky_to_pixel(ra, dec)
    return analyse_position(image, x, y, model, n_samples, seed, return_crops,
                            **property_options)
