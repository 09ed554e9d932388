"""What ``adapt`` measures on a user's images: pixel scale, calibration, sky noise and its
correlation, PSF, and the blank-sky patches galaxies are injected into.

Every image is read with the app's reader (``galaxy_inspector.io.read_image``), so its pixels
are the nJy the engine measures. Per image:

* **Sources** are masked first: the sky-subtracted image smoothed by a 1-pixel Gaussian,
  segmented by photutils 2 sigma up (in the smoothed image's own noise, so correlated noise
  does not make false sources) in groups of ``detect_min_pixels``, dilated by
  ``SOURCE_DILATION_PX``.
* **Sky noise** is the sigma-clipped standard deviation of the other usable pixels, in nJy per
  source pixel; its **correlation** the correlation coefficients of those pixels with their
  neighbours at lags (1, 0), (0, 1), (1, 1) and (1, -1), and the ratio of the noise of 2x2
  block sums to twice the per-pixel noise (1 for white noise; resampled, drizzled or coadded
  images are above it).
* **PSF**: ``--psf-fwhm`` as given, the FWHM of a ``--psf`` image, else measured on the
  image's stars (``io.psf.psf_fwhm_from_stars``), else its header's; an image with none of
  these gets the median of the others.
* **Blank patches**: a grid of positions one stamp footprint apart, whole inside the image,
  with no source and no unusable pixel within ``CENTRE_RADIUS_ARCSEC`` of the centre (where
  the engine would take a source for the galaxy). Each is cut by ``engine.stamp_for``, the
  engine's own stamp (resampled onto the model's grid, a sharp PSF convolved into its range,
  other sources replaced by sky), so what a galaxy is injected into is what the model reads.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from galaxy_inspector.domain import plan_stamp
from galaxy_inspector.engine import StampSpec, stamp_for
from galaxy_inspector.errors import GalaxyInspectorError, InputError, user_message
from galaxy_inspector.flags import Flag
from galaxy_inspector.io import expand_inputs, psf_fwhm_from_stars, read_image
from galaxy_inspector.preprocessing import CENTRE_RADIUS_ARCSEC, detect_min_pixels

__all__ = ["ImageSurvey", "Patches", "image_paths", "read_survey_image", "measure_image",
           "survey_summary", "merge", "MIN_PATCHES", "SOURCE_DILATION_PX", "DETECT_SIGMA",
           "CENTRE_RADIUS_ARCSEC"]

#: Fewest blank-sky patches an adaptation needs: its test and calibration sets get 15 % each.
MIN_PATCHES = 20
#: Sources are segmented this many sigmas of the smoothed image above the sky.
DETECT_SIGMA = 2.0
#: Source segments are grown by this many pixels, so their faint wings are not sky.
SOURCE_DILATION_PX = 3
#: Lags (dx, dy) of the noise correlation coefficients recorded.
LAGS = ((1, 0), (0, 1), (1, 1), (1, -1))


@dataclass
class ImageSurvey:
    """One image's measured properties (units in the names); ``psf_source`` says where its
    PSF came from, ``problem`` what went wrong measuring it ("" when nothing did)."""

    path: str
    pixel_scale_arcsec: float
    calibration: str
    sky_njy: float
    sky_sigma_njy: float
    noise_correlation: dict
    binned_noise_ratio: float
    psf_fwhm_arcsec: float
    psf_source: str
    blank_positions: int = 0
    patches: int = 0
    problem: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Patches:
    """Blank-sky stamps on the model's grid (nJy per model pixel) and where each came from."""

    data: np.ndarray  # (P, n, n) float32
    image: np.ndarray  # index into the survey's images
    x: np.ndarray
    y: np.ndarray
    psf_fwhm: np.ndarray  # the image's PSF, arcsec
    psf_kernel_fwhm: np.ndarray  # the engine's PSF-matching Gaussian, arcsec (0: none)
    sky_sigma: np.ndarray  # the stamp's sky noise, nJy per model pixel

    def __len__(self) -> int:
        return len(self.data)


def image_paths(folder) -> list[str]:
    """The images of ``folder`` (searched as ``--batch`` searches one), or ``InputError``."""
    paths = []
    for target in expand_inputs([folder]):
        if target.error:
            raise InputError(target.error)
        paths.append(target.path)
    return paths


def read_survey_image(path, pixel_scale=None, zero_point=None, psf_fwhm=None, psf=None):
    """The image as the engine reads it, with its PSF (given, a PSF image, its stars, else its
    header's, else None); refuses what an adaptation cannot use, naming the option that helps."""
    image = read_image(path, pixel_scale=pixel_scale, zero_point=zero_point,
                       psf_fwhm=psf_fwhm, psf=psf)
    name = Path(path).name
    if image.is_display_image:
        raise InputError(f"{name} is a display image (JPEG/PNG): adapt needs flux images (FITS)")
    if not image.calibrated:
        raise InputError(f"{name} is not flux-calibrated ({image.calibration}): give "
                         "--zero-point")
    if not image.pixel_scale:
        raise InputError(f"{name} has no pixel scale: give --pixel-scale")
    if psf_fwhm is None and psf is None:
        try:
            found = psf_fwhm_from_stars(image)
            image = image.with_psf(found.fwhm, found.source)
        except InputError as exc:
            if image.psf_fwhm is None:
                return image, f"PSF not measured ({user_message(exc)})"
    return image, ""


def _sources(data, bad, sky, scale):
    """The pixels of sources (segmented, dilated) in a sky-subtracted image."""
    from astropy.stats import sigma_clipped_stats
    from photutils.segmentation import detect_sources
    from scipy.ndimage import binary_dilation, gaussian_filter

    smoothed = gaussian_filter(np.where(bad, 0.0, data - sky), 1.0)
    _, _, noise = sigma_clipped_stats(smoothed[~bad], sigma=3.0, maxiters=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        segments = detect_sources(smoothed, DETECT_SIGMA * noise,
                                  n_pixels=detect_min_pixels(scale), mask=bad)
    if segments is None:
        return np.zeros(data.shape, dtype=bool)
    return binary_dilation(segments.data > 0, iterations=SOURCE_DILATION_PX)


def _noise(data, blank, sky):
    """Per-pixel sky noise, its neighbour correlations and the 2x2-binned noise ratio."""
    from astropy.stats import sigma_clipped_stats

    _, _, sigma = sigma_clipped_stats(data[blank], sigma=3.0, maxiters=10)
    residual = np.where(blank, data - sky, 0.0)
    # Outliers (cosmic rays, faint undetected sources) would dominate the products.
    residual = np.where(np.abs(residual) > 5.0 * sigma, 0.0, residual)
    correlation = {}
    ny, nx = data.shape
    for dx, dy in LAGS:
        a = (slice(max(0, -dy), ny - max(0, dy)), slice(max(0, -dx), nx - max(0, dx)))
        b = (slice(max(0, dy), ny - max(0, -dy)), slice(max(0, dx), nx - max(0, -dx)))
        both = blank[a] & blank[b]
        correlation[f"{dx},{dy}"] = float(
            np.sum(residual[a] * residual[b] * both) / max(both.sum(), 1) / sigma ** 2)
    h, w = ny // 2 * 2, nx // 2 * 2
    blocks = residual[:h, :w].reshape(h // 2, 2, w // 2, 2)
    whole = blank[:h, :w].reshape(h // 2, 2, w // 2, 2).all(axis=(1, 3))
    sums = blocks.sum(axis=(1, 3))[whole]
    ratio = float(np.std(sums) / (2.0 * sigma)) if sums.size > 10 else math.nan
    return float(sigma), correlation, ratio


def _blank_positions(shape, occupied, footprint, radius):
    """Grid positions one footprint apart, the stamp whole inside the image, with no occupied
    pixel within ``radius`` (pixels) of them."""
    ny, nx = shape
    half = footprint / 2.0
    rows, cols = np.ogrid[-math.ceil(radius):math.ceil(radius) + 1,
                          -math.ceil(radius):math.ceil(radius) + 1]
    disk = rows ** 2 + cols ** 2 <= radius ** 2
    r = disk.shape[0] // 2
    positions = []
    for y in np.arange(half, ny - half, footprint):
        for x in np.arange(half, nx - half, footprint):
            xi, yi = int(round(x)), int(round(y))
            if xi - r < 0 or yi - r < 0 or xi + r >= nx or yi + r >= ny:
                continue
            if not (occupied[yi - r:yi + r + 1, xi - r:xi + r + 1] & disk).any():
                positions.append((float(x), float(y)))
    return positions


def measure_image(image, index: int, spec: StampSpec, seed: int) -> tuple[ImageSurvey, Patches]:
    """One image's survey properties and its blank-sky patches, cut as the engine cuts them."""
    from astropy.stats import sigma_clipped_stats

    data, bad = image.window(slice(None), slice(None)).usable()
    if bad.all():
        raise InputError("the image has no usable pixels")
    scale = float(image.pixel_scale)
    _, sky, _ = sigma_clipped_stats(data[~bad], sigma=3.0, maxiters=10)
    sources = _sources(data, bad, sky, scale)
    blank = ~bad & ~sources
    if blank.sum() < 1000:
        raise InputError("the image holds almost no blank sky (sources everywhere)")
    _, sky, _ = sigma_clipped_stats(data[blank], sigma=3.0, maxiters=10)
    sigma, correlation, ratio = _noise(data, blank, float(sky))
    footprint = spec.stamp_size * spec.pixel_scale / scale
    positions = _blank_positions(data.shape, sources | bad, footprint,
                                 CENTRE_RADIUS_ARCSEC / scale)
    survey = ImageSurvey(
        path=image.source, pixel_scale_arcsec=scale, calibration=image.calibration,
        sky_njy=float(sky), sky_sigma_njy=sigma, noise_correlation=correlation,
        binned_noise_ratio=ratio,
        psf_fwhm_arcsec=math.nan if image.psf_fwhm is None else float(image.psf_fwhm),
        psf_source=image.psf_source, blank_positions=len(positions))
    rows = []
    for k, (x, y) in enumerate(positions):
        try:
            plan = plan_stamp(image, x, y, spec.stamp_size, spec.pixel_scale, spec.psf_range,
                              spec.bin_large)
            stamp = stamp_for(image, x, y, spec, seed=seed + k, plan=plan)
        except GalaxyInspectorError:
            continue
        if stamp.flags & Flag.EDGE or plan.binning != 1.0:
            continue
        rows.append((stamp.data, x, y, plan.kernel_fwhm, stamp.sky_sigma))
    survey.patches = len(rows)
    size = spec.stamp_size
    patches = Patches(
        data=np.stack([r[0] for r in rows]) if rows else np.zeros((0, size, size), np.float32),
        image=np.full(len(rows), index), x=np.array([r[1] for r in rows]),
        y=np.array([r[2] for r in rows]),
        psf_fwhm=np.full(len(rows), survey.psf_fwhm_arcsec),
        psf_kernel_fwhm=np.array([r[3] for r in rows], dtype=float),
        sky_sigma=np.array([r[4] for r in rows], dtype=float))
    return survey, patches


def survey_summary(images: list[ImageSurvey], patches: Patches) -> dict:
    """The survey's properties for the card: medians and ranges over its images."""
    def spread(values):
        values = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
        if not values.size:
            return {"median": None, "min": None, "max": None}
        return {"median": float(np.median(values)), "min": float(values.min()),
                "max": float(values.max())}

    used = images
    return {
        "images_used": len(used),
        "pixel_scale_arcsec": spread([s.pixel_scale_arcsec for s in used]),
        "sky_sigma_njy_per_pixel": spread([s.sky_sigma_njy for s in used]),
        "noise_correlation": {lag: spread([s.noise_correlation[lag] for s in used])
                              for lag in (used[0].noise_correlation if used else {})},
        "binned_noise_ratio": spread([s.binned_noise_ratio for s in used]),
        "psf_fwhm_arcsec": spread([s.psf_fwhm_arcsec for s in used]),
        "psf_sources": sorted({s.psf_source for s in used}),
        "calibrations": sorted({s.calibration for s in used}),
        "blank_patches": len(patches),
        "stamp_sky_sigma_njy": spread(patches.sky_sigma),
        "psf_matching_kernel_fwhm_arcsec": spread(patches.psf_kernel_fwhm),
    }


def merge(patches: list[Patches]) -> Patches:
    """All images' patches as one."""
    return Patches(*(np.concatenate([getattr(p, name) for p in patches])
                     for name in ("data", "image", "x", "y", "psf_fwhm", "psf_kernel_fwhm",
                                  "sky_sigma")))
