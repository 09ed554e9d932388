"""Pixel scalings and image statistics for the physical-property models.

Two scalings, named in a property bundle's card (``input.preprocessing.kind``):

* ``arsinh`` (Wu & Boada-style residual CNN on calibrated gri flux stamps):
  ``arsinh(F / softening)`` with one fixed softening (nJy/pixel) for every band and galaxy, so
  colours and apparent brightness stay in the pixels, as in the fixed-stretch SDSS JPEGs the paper
  used.
* ``adaptive_log`` (Dobbels et al. 2019, §2): each stamp is rescaled linearly to [0, 1], its noise
  level ``n`` (sigma-clipped mean + 2 standard deviations) is measured, and the scaling value ``a``
  of ``F' = log(a F + 1) / log(a + 1)`` is fitted so the noise maps to 0.2. High-S/N stamps get a
  large ``a`` (faint outskirts boosted), noisy stamps a small one (noise not mistaken for
  structure). Multi-band stamps share one rescaling and one ``a`` so their colour order survives.
* ``display`` (JPEG/PNG colour cutouts, 0-255): divided by 255, nothing else.

Array conventions: stamps are ``(N, C, H, W)`` (galaxies, bands, rows, columns), float, galaxy at
the centre; inputs are never modified.
"""

from __future__ import annotations

import numpy as np
from astropy.stats import sigma_clipped_stats

__all__ = ["NOISE_TARGET", "adaptive_log_scale", "arsinh_scale", "scale_stamps",
           "luminosity_statistics", "LUMINOSITY_STATISTICS", "rebin_stamps",
           "kpc_per_arcsec", "luminosity_distance_mpc"]

#: Output (log-scaled) noise level of Dobbels' adaptive scaling.
NOISE_TARGET = 0.2
_LOG_A_RANGE = (-6.0, 16.0)  # natural-log bounds of the fitted scaling value
#: Sigma-clipping rounds of the noise level. Bundles were trained with 29 (the loop this
#: replaced measured its 30th pass before clipping again); a stamp whose clipping has not
#: settled by then moves by up to ~6 % with one more round, so the number is part of the
#: scaling a bundle was trained with.
_CLIP_ROUNDS = 29


def _log_scaled(f, a):
    """``log(a f + 1) / log(a + 1)``, accurate for tiny ``a`` (where it tends to ``f``)."""
    return np.log1p(a * f) / np.log1p(a)


def _fit_scaling_value(noise_level: np.ndarray, target: float) -> np.ndarray:
    """Scaling value ``a`` with ``log(a n + 1) / log(a + 1) = target`` for each noise level n.

    The left side rises monotonically from ``n`` (a -> 0) to 1 (a -> inf), so there is one root
    when ``n < target``; noisier stamps (``n >= target``) get the smallest ``a`` (nearly linear).
    Bisection in ``log a``, vectorised over stamps.
    """
    n = np.clip(np.asarray(noise_level, dtype=np.float64), 1e-12, 1.0)
    lo = np.full(n.shape, _LOG_A_RANGE[0])
    hi = np.full(n.shape, _LOG_A_RANGE[1])
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        too_high = _log_scaled(n, np.exp(mid)) > target
        hi = np.where(too_high, mid, hi)
        lo = np.where(too_high, lo, mid)
    return np.exp(0.5 * (lo + hi))


def adaptive_log_scale(stamps, target: float = NOISE_TARGET):
    """Dobbels et al. (2019) adaptive log scaling of stamps ``(N, C, H, W)``.

    Returns ``(scaled, scaling_value)``: ``scaled`` in [0, 1] (float32, same shape) and the fitted
    ``a`` per stamp, shape ``(N,)``. The sigma-clipped noise level of the rescaled stamp maps to
    ``target`` (0.2 in the paper) unless the stamp is so noisy that even a linear scaling puts it
    above that.
    """
    x = np.asarray(stamps, dtype=np.float64)
    if x.ndim != 4:
        raise ValueError(f"stamps must have shape (N, C, H, W), got {x.shape}")
    flat = x.reshape(len(x), -1)
    lo = flat.min(axis=1)
    span = flat.max(axis=1) - lo
    span = np.where(span > 0, span, 1.0)
    unit = (flat - lo[:, None]) / span[:, None]
    mean, _, std = sigma_clipped_stats(unit, sigma=3.0, maxiters=_CLIP_ROUNDS, cenfunc="mean",
                                       stdfunc="std", axis=1)
    noise = mean + 2.0 * std
    a = _fit_scaling_value(noise, target)
    scaled = _log_scaled(unit, a[:, None])
    return scaled.reshape(x.shape).astype(np.float32), a


def arsinh_scale(stamps, softening: float) -> np.ndarray:
    """``arsinh(F / softening)`` (float32); ``softening`` in the stamps' flux units per pixel."""
    return np.arcsinh(np.asarray(stamps, dtype=np.float32) / np.float32(softening))


def scale_stamps(stamps, preprocessing: dict):
    """Apply the pixel scaling a property bundle's card names; returns ``(scaled, scaling_value)``.

    ``scaling_value`` is Dobbels' ``a`` per stamp for ``adaptive_log`` and NaN otherwise.
    """
    kind = preprocessing.get("kind")
    n = len(stamps)
    if kind == "adaptive_log":
        return adaptive_log_scale(stamps, float(preprocessing.get("noise_target", NOISE_TARGET)))
    if kind == "arsinh":
        return arsinh_scale(stamps, float(preprocessing["softening"])), np.full(n, np.nan)
    if kind == "display":
        return np.asarray(stamps, dtype=np.float32) / np.float32(255.0), np.full(n, np.nan)
    raise ValueError(f"unknown pixel preprocessing {kind!r} (known: adaptive_log, arsinh, "
                     "display)")


def rebin_stamps(stamps, factor: int) -> np.ndarray:
    """Mean over ``factor x factor`` pixel blocks (surface brightness kept; noise falls by
    ``factor``), the re-binning of Wu & Boada's resolution study. Sides must divide exactly."""
    x = np.asarray(stamps, dtype=np.float32)
    n, c, h, w = x.shape
    if h % factor or w % factor:
        raise ValueError(f"stamp side {h}x{w} is not a multiple of the rebin factor {factor}")
    return x.reshape(n, c, h // factor, factor, w // factor, factor).mean(axis=(3, 5))


def luminosity_distance_mpc(redshift) -> np.ndarray:
    """Luminosity distance (Mpc, Planck 2018 cosmology) of each redshift."""
    from astropy.cosmology import Planck18

    z = np.asarray(redshift, dtype=np.float64)
    return np.asarray(Planck18.luminosity_distance(np.clip(z, 1e-5, None)).value)


def kpc_per_arcsec(redshift) -> np.ndarray:
    """Proper transverse kpc per arcsec at each redshift (Planck 2018 cosmology)."""
    from astropy.cosmology import Planck18

    z = np.asarray(redshift, dtype=np.float64)
    return np.asarray(Planck18.kpc_proper_per_arcmin(np.clip(z, 1e-5, None)).value) / 60.0


#: Names of the columns ``luminosity_statistics`` returns per band, in order.
LUMINOSITY_STATISTICS = (
    "lum_sum", "lum_mean", "lum_max", "lum_min", "lum_std", "lum_centre", "lum_centre5",
    "image_size", "scaling_value",
    "scaled_sum", "scaled_mean", "scaled_std", "scaled_centre", "scaled_centre5",
    "redshift", "pixel_kpc",
)


def luminosity_statistics(raw, scaled, scaling_value, redshift, pixel_scale: float):
    """Dobbels et al. (2019) §3.2 hand-made features of each stamp, shape ``(N, F)``.

    From the raw flux stamp of one band ``raw`` (N, H, W), times ``4 pi D_L^2`` (D_L in Mpc): sum,
    mean, max, min, standard deviation, central pixel and the mean of the central 5x5 pixels; the
    image side and the scaling value; from the log-scaled stamp ``scaled`` (N, H, W): sum, mean,
    standard deviation, central pixel and central 5x5 mean; and the redshift and the pixel size in
    kpc, which let the trees tell a faint nearby galaxy from a bright distant one. Without
    redshifts (NaN) the luminosities are left as fluxes and the last two features are NaN.
    """
    raw = np.asarray(raw, dtype=np.float64)
    scaled = np.asarray(scaled, dtype=np.float64)
    n, h, w = raw.shape
    z = np.broadcast_to(np.asarray(redshift, dtype=np.float64), (n,))
    have_z = np.isfinite(z)
    area = np.ones(n)
    area[have_z] = 4.0 * np.pi * luminosity_distance_mpc(z[have_z]) ** 2
    pixel_kpc = np.full(n, np.nan)
    pixel_kpc[have_z] = kpc_per_arcsec(z[have_z]) * pixel_scale
    cy, cx = h // 2, w // 2
    y0, x0 = max(cy - 2, 0), max(cx - 2, 0)

    def stats(img):
        flat = img.reshape(n, -1)
        return [flat.sum(1), flat.mean(1), flat.std(1), img[:, cy, cx],
                img[:, y0:cy + 3, x0:cx + 3].reshape(n, -1).mean(1)]

    lum = raw * area[:, None, None]
    flat = lum.reshape(n, -1)
    s_sum, s_mean, s_std, s_centre, s_centre5 = stats(scaled)
    columns = [flat.sum(1), flat.mean(1), flat.max(1), flat.min(1), flat.std(1),
               lum[:, cy, cx], lum[:, y0:cy + 3, x0:cx + 3].reshape(n, -1).mean(1),
               np.full(n, float(h)), np.asarray(scaling_value, dtype=np.float64),
               s_sum, s_mean, s_std, s_centre, s_centre5, z.copy(), pixel_kpc]
    return np.stack(columns, axis=1)
