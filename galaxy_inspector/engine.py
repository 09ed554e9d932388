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
qualitative label (``labels``) and the quality ``flags``. A stamp the engine will not answer for
(no galaxy in it, or a display image the morphology model was not made for) gives a
``Measurement`` whose ``error`` says why, with no posterior.

Physical-property bundles (card ``task = "properties"``, ``physical_properties.model.
PropertyModel``) run beside the morphology model on the same position::

    morphology, properties = load_models(["morphology-hsc-g", "bundles/metallicity"])
    m = analyse_position(image, x, y, morphology, property_models=properties, redshift=0.08)
    m.properties["metallicity-model"].summary["oh12_mean"]     # a PropertyMeasurement

Each property model reads its own stamp (``physical_properties.stamps``: its bands from the
image's file, its grid); when a row cannot be predicted (no redshift for a model that needs one,
missing bands, uncalibrated fluxes) its ``PropertyMeasurement`` (``physical_properties.measure``)
holds NaNs and the reason in ``error``, and the morphology is unaffected.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from galaxy_inspector.domain import StampPlan, plan_stamp, psf_seen_by_model
from galaxy_inspector.errors import BundleError, InputError
from galaxy_inspector.flags import Flag
from galaxy_inspector.io.image import SkyImage
from galaxy_inspector.io.raster import is_raster_path
from galaxy_inspector.labels import qualitative_label, thresholds_from_card
from galaxy_inspector.physical_properties.measure import (
    DEFAULT_PROPERTY_SAMPLES,
    measure_properties,
)
from galaxy_inspector.physical_properties.stamps import PropertySpec, property_inputs
from galaxy_inspector.posterior import summarize
from galaxy_inspector.preprocessing import NOMINAL_SKY_SIGMA_NJY, Stamp, _outskirts, make_stamp

__all__ = ["DEFAULT_MODEL", "DEFAULT_DISPLAY_MODEL", "default_model_for", "Measurement",
           "StampSpec", "load_model", "load_models", "stamp_for", "measure_stamps", "bare_measurements", "analyse_position", "analyse_sky_position",
           "LOW_SNR", "NO_GALAXY_SNR", "DISPLAY_REFUSAL"]

DEFAULT_MODEL = "morphology-hsc-g"
#: The morphology model for display images (JPEG/PNG) when none is chosen: trained on
#: simulated SkyServer-style colour JPEGs, B/T and R_e only (``training/display.py``).
DEFAULT_DISPLAY_MODEL = "morphology-display-sdss"
#: Relative slack of a training-range check, so that a value brought to a range's end by
#: scaling (the sky noise) is not outside it by its last bits.
RANGE_ROUNDING = 1e-6
LOW_SNR = 10.0
#: Below this S/N within 2 R_e the stamp holds no galaxy the model can see: a 3-sigma aperture
#: flux is the usual detection limit, and below it the posterior describes the noise.
NO_GALAXY_SNR = 3.0
#: Why a morphology model not trained on display images refuses them: on SkyServer-style colour
#: JPEGs the shipped model's 95 % intervals held the true B/T about a third of the time.
DISPLAY_REFUSAL = ("this morphology model is not calibrated on display (JPEG/PNG) images; use "
                   f"--model {DEFAULT_DISPLAY_MODEL} (B/T and R_e) or a FITS cutout of the same "
                   "galaxy")


def default_model_for(inputs) -> str:
    """The morphology model a run without ``--model`` uses: the display model when every
    INPUT is a JPEG/PNG file, else ``DEFAULT_MODEL`` (a catalogue holds one morphology model;
    a JPEG among FITS inputs, or in a folder or table, is refused with ``DISPLAY_REFUSAL``)."""
    inputs = list(inputs)
    return DEFAULT_DISPLAY_MODEL if inputs and all(map(is_raster_path, inputs)) else DEFAULT_MODEL


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
        Qualitative label (GaMPEN §6.4) from the posterior modes, or "" (always "" on rows
        flagged ``labels.UNLABELLED_FLAGS``).
    flags : int
        ``galaxy_inspector.flags.Flag`` bits.
    crop : ndarray or None
        The arsinh-scaled crop the CNN read (for display), when asked for.
    properties : dict
        Bundle name -> ``PropertyMeasurement`` of each active property model (empty without).
    error : str
        Why there is no morphology posterior ("" when there is one); the engine then gives
        empty ``names`` and ``summary`` and no ``samples``.
    psf_told : float or None
        For a seeing-conditioned model, the PSF FWHM (arcsec, in the model's frame) it was
        told, NaN when it was told "unknown"; None for a model that does not read it.
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
    error: str = ""
    psf_told: float | None = None


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
    """The stamp a model reads: side (pixels), pixel scale (arcsec/px), the sky noise (nJy/px)
    uncalibrated images are scaled to, and the PSF FWHMs (arcsec) it was trained on (None: no
    PSF matching). ``bin_large``: cut galaxies too large for the model at a wider scale
    (``domain``). ``display``: a display model's stamp, the file's levels as they are (no sky
    subtraction or scaling to a sky noise). Small and picklable (sent to batch workers)."""

    stamp_size: int
    pixel_scale: float
    nominal_sky_sigma: float
    psf_range: tuple[float, float] | None = None
    bin_large: bool = False
    display: bool = False

    @classmethod
    def of(cls, model) -> StampSpec:
        card = model.bundle.card
        return cls(model.stamp_size, model.pixel_scale, _nominal_sky_sigma(card),
                   _training_ranges(card).get("psf_fwhm_arcsec"),
                   bin_large="re_arcsec" in _training_ranges(card),
                   display=card["input"].get("kind") == "display")


def stamp_for(image: SkyImage, x: float, y: float, model, seed: int = 0,
              plan: StampPlan | None = None) -> Stamp:
    """The stamp ``model`` (or a ``StampSpec``) needs around 0-based pixel (x, y) of ``image``,
    brought into the model's domain (``plan``, by default ``domain.plan_stamp``'s: binned when
    the galaxy is too large, convolved when the PSF is too sharp)."""
    spec = model if isinstance(model, StampSpec) else StampSpec.of(model)
    if plan is None:
        plan = plan_stamp(image, x, y, spec.stamp_size, spec.pixel_scale, spec.psf_range,
                          spec.bin_large)
    stamp = make_stamp(image, x, y, spec.stamp_size, spec.pixel_scale * plan.binning,
                       seed=seed, nominal_sky_sigma=spec.nominal_sky_sigma,
                       normalise_uncalibrated=not spec.display, binning=plan.binning,
                       psf_kernel_fwhm=plan.kernel_fwhm)
    return dataclasses.replace(stamp, flags=stamp.flags | plan.flags) if plan.flags else stamp


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

    A stamp whose sky noise lies outside the training range (a shallow survey, or a deep one
    such as HST's) is divided by ``g = sky sigma / the nearest end of that range`` before the
    network, and its flux samples are multiplied by ``g``: an image and its noise scaled
    together hold the same shapes at the same signal-to-noise ratio, which is what the model
    measures them from. The training ranges are checked on what the model saw: the scaled
    flux and noise, and R_e divided by the stamp's binning.

    Two kinds of stamp get a ``Measurement`` with an ``error`` instead of a posterior: a stamp
    of a display image (flag NONLINEAR_IMAGE) unless the model's card says ``input.kind``
    "display" (``DISPLAY_REFUSAL``; the network does not run), and a stamp whose S/N within
    2 R_e is below ``NO_GALAXY_SNR`` ("no galaxy detected"). A display model measures B/T and
    R_e only (its card has no flux output), and its S/N is that of the levels above the
    stamp's sky level.
    """
    refused = [bool(s.flags & Flag.NONLINEAR_IMAGE)
               and model.bundle.card["input"].get("kind") != "display" for s in stamps]
    measured = iter(_posteriors([s for s, no in zip(stamps, refused, strict=True) if not no],
                                model, n_samples, seed, return_crops))
    return [bare_measurements([s], error=DISPLAY_REFUSAL)[0] if no else next(measured)
            for s, no in zip(stamps, refused, strict=True)]


def noise_gain(sky_sigma: np.ndarray, card) -> np.ndarray:
    """Per stamp, what its pixels are divided by before the network reads them (and its flux
    samples multiplied by after): its sky noise over the nearest end of the card's training
    range of sky noise, 1 inside it (``measure_stamps``; training's evaluation does the same,
    so a report says what the app does)."""
    sky_sigma = np.asarray(sky_sigma, dtype=np.float64)
    sky_lo, sky_hi = _training_ranges(card).get("sky_sigma_njy", (0.0, math.inf))
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = sky_sigma / np.clip(sky_sigma, sky_lo, sky_hi)
    return np.where(np.isfinite(gain) & (gain > 0), gain, 1.0)


def _posteriors(stamps: list[Stamp], model, n_samples, seed, return_crops) -> list[Measurement]:
    """``measure_stamps`` of stamps the model accepts."""
    if not stamps:
        return []
    data = np.stack([s.data for s in stamps])
    card = model.bundle.card
    ranges = _training_ranges(card)
    sky_sigma = np.array([s.sky_sigma for s in stamps])
    gain = noise_gain(sky_sigma, card)
    psf = None
    if getattr(model, "takes_psf", False):
        psf_range = ranges.get("psf_fwhm_arcsec", (0.0, math.inf))
        psf = [psf_seen_by_model(s.psf_fwhm, s.binning, s.flags, psf_range) for s in stamps]
    pred = model.predict(data / gain[:, None, None].astype(np.float32), n_samples=n_samples,
                         seed=seed, return_crops=return_crops, psf_fwhm=psf)
    names = list(pred.names)
    if "flux_njy" in names:
        pred.samples[..., names.index("flux_njy")] *= gain[:, None].astype(np.float32)
    binning = np.array([s.binning for s in stamps])
    if "re_arcsec" in names:  # the model saw the galaxy `binning` times smaller
        pred.samples[..., names.index("re_arcsec")] *= binning[:, None].astype(np.float32)
    summary = summarize(pred.samples, names, model.mode_transforms())
    thresholds = thresholds_from_card(card)
    flags = np.array([s.flags for s in stamps], dtype=np.int64)
    seen_as = {"re_arcsec": binning, "flux_njy": gain, "sky_sigma_njy": gain}
    for name, (lo, hi) in ranges.items():
        value = sky_sigma if name == "sky_sigma_njy" else summary.get(f"{name}_median")
        if value is not None:  # as the model saw it
            value = value / seen_as.get(name, 1.0)
            flags |= np.where((value < lo * (1 - RANGE_ROUNDING))
                              | (value > hi * (1 + RANGE_ROUNDING)), int(Flag.OUTSIDE_TRAINING), 0)
    re = summary.get("re_arcsec_median", np.full(len(stamps), np.nan))
    if card["input"].get("kind") == "display":  # its stamps keep the sky's level: take it off
        data = data - np.median(data[:, _outskirts(model.stamp_size)], axis=1)[:, None, None]
    snr = _snr(data, re / binning / model.pixel_scale, sky_sigma)
    flags |= np.where(~(snr >= LOW_SNR), int(Flag.LOW_SNR), 0)
    out = []
    # A display model was trained and its labels chosen on display images: their stretch
    # withholds no label from it.
    trusted = int(Flag.NONLINEAR_IMAGE) if card["input"].get("kind") == "display" else 0
    for i, stamp in enumerate(stamps):
        row = {k: float(v[i]) for k, v in summary.items()}
        label = qualitative_label(row.get("bt_mode", math.nan), row.get("re_arcsec_mode", math.nan),
                                  thresholds, int(flags[i]) & ~trusted)
        scale = float(pred.stn_scale[i])
        m = Measurement(
            stamp=stamp, names=names, units=list(pred.units), samples=pred.samples[i],
            summary=row, stn_scale=scale, crop_box=stamp.source_box(scale * model.stamp_size),
            snr=float(snr[i]), label=label, flags=int(flags[i]),
            crop=pred.crops[i] if return_crops else None,
            psf_told=None if psf is None else float(psf[i]))
        if not snr[i] >= NO_GALAXY_SNR:  # NaN too: a flat stamp without sky noise
            value = f"{snr[i]:.1f}" if math.isfinite(snr[i]) else "undefined (a flat stamp)"
            m = dataclasses.replace(m, names=[], units=[], samples=np.empty((0, 0), np.float32),
                                    summary={}, error=f"no galaxy detected: S/N {value} "
                                                      "within 2 R_e")
        out.append(m)
    return out


def bare_measurements(stamps: list[Stamp], error: str = "") -> list[Measurement]:
    """Measurements without a morphology posterior (a property-only run, or a stamp refused
    for ``error``): the stamps' position, calibration and flags, NaN for everything the
    morphology model would have given."""
    return [Measurement(stamp=s, names=[], units=[], samples=np.empty((0, 0), np.float32),
                        summary={}, stn_scale=math.nan, crop_box=s.box, snr=math.nan, label="",
                        flags=int(s.flags), error=error) for s in stamps]


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
    (inputs,) = property_inputs(image, [(x, y)], [PropertySpec.of(p) for p in property_models],
                                [seed], pixel_scale=pixel_scale, zero_point=zero_point,
                                redshift=redshift, redshift_note="no redshift given",
                                photometry=phot)
    for pmodel, row in zip(property_models, inputs, strict=True):
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
