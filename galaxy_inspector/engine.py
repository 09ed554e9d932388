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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from galaxy_inspector.errors import InputError
from galaxy_inspector.flags import Flag
from galaxy_inspector.io.image import SkyImage
from galaxy_inspector.labels import qualitative_label, thresholds_from_card
from galaxy_inspector.posterior import summarize
from galaxy_inspector.preprocessing import NOMINAL_SKY_SIGMA_NJY, Stamp, make_stamp

__all__ = ["DEFAULT_MODEL", "Measurement", "StampSpec", "load_model", "mode_transforms",
           "stamp_for",
           "measure_stamps", "analyse_position", "analyse_sky_position", "LOW_SNR"]

DEFAULT_MODEL = "morphology-hsc-g"
LOW_SNR = 10.0
_TINY = 1e-30
_BT_CLIP = 1e-4


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


def load_model(name_or_path=None, device: str | None = None):
    """A ``MorphologyModel`` from a bundle folder or shipped name (default ``DEFAULT_MODEL``).

    Raises ``BundleError`` with a one-line message if the bundle is missing or corrupt.
    """
    from galaxy_inspector.models.morphology import MorphologyModel

    return MorphologyModel(name_or_path or DEFAULT_MODEL, device=device)


def mode_transforms(names) -> dict:
    """Where each parameter's KDE mode is found: log10 for radii and fluxes, logit for B/T."""
    log10 = (lambda s: np.log10(np.maximum(s, _TINY)), lambda t: 10.0 ** t)
    logit = (lambda s: np.log(np.clip(s, _BT_CLIP, 1 - _BT_CLIP)
                              / (1 - np.clip(s, _BT_CLIP, 1 - _BT_CLIP))),
             lambda t: 1.0 / (1.0 + np.exp(-t)))
    chosen = {"bt": logit, "re_arcsec": log10, "flux_njy": log10}
    return {n: chosen[n] for n in names if n in chosen}


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
    """Posteriors of many stamps in batched forward passes, with summaries, labels and flags."""
    if not stamps:
        return []
    data = np.stack([s.data for s in stamps])
    pred = model.predict(data, n_samples=n_samples, seed=seed, return_crops=return_crops)
    names = list(pred.names)
    summary = summarize(pred.samples, names, mode_transforms(names))
    card = model.bundle.card
    thresholds = thresholds_from_card(card)
    ranges = _training_ranges(card)
    flags = np.array([s.flags for s in stamps], dtype=np.int64)
    sky_sigma = np.array([s.sky_sigma for s in stamps])
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


def analyse_position(image: SkyImage, x: float, y: float, model, n_samples: int | None = None,
                     seed: int = 0, return_crops: bool = True) -> Measurement:
    """Measure the galaxy at 0-based pixel (x, y) of ``image`` (the GUI's click).

    Raises ``InputError`` (one-line message) when no usable stamp can be made there.
    """
    return measure_stamps([stamp_for(image, x, y, model, seed)], model, n_samples, seed,
                          return_crops)[0]


def analyse_sky_position(image: SkyImage, ra: float, dec: float, model,
                         n_samples: int | None = None, seed: int = 0,
                         return_crops: bool = True) -> Measurement:
    """Measure the galaxy at (RA, Dec) in degrees; ``InputError`` if the image has no WCS."""
    if image.wcs is None:
        raise InputError("the image has no celestial WCS, so RA/Dec cannot be placed on it; "
                         "give x/y pixel positions instead")
    x, y = image.sky_to_pixel(ra, dec)
    return analyse_position(image, x, y, model, n_samples, seed, return_crops)
