"""From an image and a position to the stamp a model reads, and finding galaxies in a field.

``make_stamp`` cuts a generous ``Cutout2D`` around the galaxy (padded with NaN where it runs off
the image), fills masked, non-finite and off-image pixels with the local background plus noise
(so they cannot poison the network; the fraction is reported), then resamples onto the model's
grid with ``reproject``:

* source pixels coarser than the model's (e.g. SDSS 0.396″ -> HSC 0.168″): bicubic
  ``reproject_interp`` of the surface brightness, times the pixel-area ratio, which keeps the
  total flux and adds almost no blur;
* finer source pixels (e.g. HST): ``reproject_adaptive(conserve_flux=True)``, an anti-aliased
  average that keeps the total flux.

Pixel values are fluxes per pixel throughout (not surface brightness). After resampling the
stamp must be fully covered and the flux in a large aperture must agree with the source's;
otherwise the stamp is refused with a message. Images with a celestial WCS come out north up.
"""

from __future__ import annotations

import functools
import math
import weakref
from dataclasses import dataclass

import numpy as np
from astropy.nddata import Cutout2D
from astropy.stats import median_absolute_deviation
from astropy.wcs import WCS

from galaxy_inspector.errors import InputError
from galaxy_inspector.flags import Flag
from galaxy_inspector.io.image import SkyImage
from galaxy_inspector.io.memory import format_bytes, whole_read_limit
from galaxy_inspector.segmentation import (
    _could_split,
    _deblend,
    _large_groups,
    _segment_pixels,
    _Segments,
    _sigma_clipped,
)

__all__ = ["Stamp", "make_stamp", "check_position", "image_sky", "detect_galaxies",
           "detect_min_pixels",
           "central_galaxy",
           "CENTRE_RADIUS_ARCSEC", "NOMINAL_SKY_SIGMA_NJY"]

MIN_IMAGE_SIDE = 8  # pixels
MIN_DATA_FRACTION = 0.05  # of the stamp footprint that must hold real pixels
MASKED_FLAG_FRACTION = 0.01
SAME_SCALE_TOLERANCE = 1e-3  # relative; below it no resampling is done
PAD = 6  # source pixels beyond the footprint for the resampling kernels
#: Largest cut (pixels per side) one stamp may read from its image: in float64 a 4096² cut is
#: 134 MB, copied a few times while a stamp is made. An image whose pixels are far finer than
#: the model's (HST's 0.03″ against 0.168″ needs 1,030 px; a CDELT of 3e-7 deg, 28,000) is
#: refused instead of taking gigabytes.
MAX_CUT_SIDE = 4096
FLUX_CHECK_RADIUS = 0.4  # aperture radius for the flux check, in stamp sides
#: A stamp pixel less than this fraction of which came from the image is a filled pixel, and
#: any filled pixel sets EDGE: half, the rule by which a pixel is on or off any grid (its
#: centre), so a sub-pixel sliver along the border does not count while a noise-filled
#: corner or strip does.
EDGE_COVERAGE = 0.5
#: Pixels by which two overhangs of a same-scale stamp count as equal (``_onto_image``): far
#: above a position's rounding (1e-13 px), far below any sliver that matters.
ONTO_IMAGE_ROUNDING = 1e-9
#: Fewest image pixels the background and noise of a stamp's fill are measured on.
MIN_SKY_PIXELS = 200
#: Pixels by which neighbours are grown when masked out of the fill's background.
SKY_MASK_DILATION = 3
#: Pixels beyond a same-scale stamp's footprint searched for the neighbours it replaces.
NEIGHBOUR_MARGIN = 8
FLUX_CHECK_TOLERANCE = 0.03  # relative, plus 5 sigma of the noise in the aperture
#: A Gaussian's FWHM in units of its sigma.
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
#: Sky noise per pixel (nJy) an uncalibrated image is scaled to: HSC-Wide g at 0.168″/px.
NOMINAL_SKY_SIGMA_NJY = 2.0
#: The median of a half-normal distribution, in units of its sigma.
HALF_NORMAL_MEDIAN = 0.6745
#: How many times the noise of its pixels the spread of an image's sigma-clipped pixels may be
#: for them to be sky (correlated noise, as in drizzled images, makes it up to about 1.5).
NO_SKY_SPREAD = 3.0
#: Radius, in window sides, of the circle about a galaxy left out of its background.
BACKGROUND_HOLE = 0.45
#: Side (source pixels) of the blocks of sky whose sums measure the noise's power on the
#: scales a stamp keeps when it sums or smooths many source pixels (``_low_frequency_noise``),
#: and the fewest such blocks that measure it.
NOISE_BLOCK, MIN_NOISE_BLOCKS = 4, 50
#: A calibrated image's sky level farther from zero than this many pixel noises is a pedestal
#: to subtract: a sky-subtracted image's is a hundredth of one, but the faint wings of a
#: galaxy filling a small cutout raise a clipped median by up to about one even with its
#: sources masked; real pedestals (WFPC2, ground-based frames) are tens to thousands.
PEDESTAL_NOISES = 3.0
#: Beyond this skew ((mean - median) / spread) of the sky's pixels the mode estimate is not
#: trusted and the median is the sky (SExtractor's rule).
SKY_MODE_SKEW_LIMIT = 0.3
#: Images larger than this (pixels a side) have their sky measured on a central window.
SKY_WINDOW_SIDE = 4096
#: Longest side of the subsampled view of an image its sky level is measured on.
SKY_PREVIEW_SIDE = 1024
#: Gaussian sigma per median absolute deviation, rounded as stamps have always been made with.
#: ``mad_std``'s 1.482602 would move the sky noise by 1.5e-6 relative, and with it the scaled
#: pixels of uncalibrated images and so their per-galaxy seeded posterior draws.
MAD_TO_SIGMA = 1.4826
#: Bytes per searched pixel ``detect_galaxies`` holds at its peak (float64 copies, smoothed
#: image, segmentation maps, deblending): 44 measured on a 2000x2000 field, rounded up.
DETECT_BYTES_PER_PIXEL = 48


@dataclass(frozen=True)
class Stamp:
    """A galaxy's stamp on a model's grid and how it was made.

    Attributes
    ----------
    data : ndarray (n, n), float32
        nJy per model pixel, all finite, the galaxy at ``((n - 1) / 2, (n - 1) / 2)``.
    x, y : float
        Stamp centre in 0-based source-image pixels.
    ra, dec : float
        Stamp centre in degrees (NaN without a WCS).
    source_scale, model_scale : float
        Arcsec per pixel of the source image and of the stamp.
    flags : int
        ``Flag`` bits from the image and the cut (EDGE, MASKED, COARSE_PIXELS...).
    masked_fraction : float
        Fraction of the stamp's in-image pixels that were masked or not finite, and filled.
    sky_sigma : float
        Robust standard deviation of the stamp's outskirts, nJy per model pixel.
    calibration : str
        How the fluxes were calibrated (from the image, plus any scaling applied here).
    binning : float
        Model pixels per stamp pixel: 1, or k > 1 when a galaxy too large for the model was
        cut at ``k`` times the model's pixel scale (``model_scale`` is then that wider scale).
    psf_fwhm : float
        FWHM (arcsec) of the image's PSF, NaN when unknown.
    psf_source : str
        Where ``psf_fwhm`` came from ("" when unknown).
    """

    data: np.ndarray
    x: float
    y: float
    ra: float
    dec: float
    source_scale: float
    model_scale: float
    flags: int
    masked_fraction: float
    sky_sigma: float
    calibration: str
    binning: float = 1.0
    psf_fwhm: float = math.nan
    psf_source: str = ""

    @property
    def box(self) -> tuple[float, float, float, float]:
        """``(x0, y0, x1, y1)``: the whole stamp's footprint in source pixels."""
        return self.source_box(self.data.shape[0])

    def source_box(self, side: float) -> tuple[float, float, float, float]:
        """``(x0, y0, x1, y1)`` in source pixels of a centred square of ``side`` model pixels.

        For a north-up resampled stamp of a rotated image this is the box's size and centre,
        not its orientation.
        """
        half = 0.5 * side * self.model_scale / self.source_scale
        return (self.x - half, self.y - half, self.x + half, self.y + half)


def _tan_wcs(ra, dec, scale, crpix_x, crpix_y) -> WCS:
    """North-up TAN WCS with 0-based reference pixel (crpix_x, crpix_y)."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.cdelt = [-scale / 3600.0, scale / 3600.0]
    w.wcs.crpix = [crpix_x + 1.0, crpix_y + 1.0]
    return w


def _aperture_flux(data, x, y, radius) -> float:
    from photutils.aperture import CircularAperture, aperture_photometry

    table = aperture_photometry(data, CircularAperture((x, y), r=radius), method="exact")
    return float(table["aperture_sum"][0])


def check_position(shape: tuple[int, int], x: float, y: float) -> None:
    """Refuse (``InputError``) an image too small to hold a galaxy, or a 0-based position
    (x, y) outside it: what every stamp needs before it is cut."""
    ny, nx = shape
    if min(nx, ny) < MIN_IMAGE_SIDE:
        raise InputError(f"the image is only {nx}x{ny} pixels, too small to hold a galaxy")
    if not (math.isfinite(x) and math.isfinite(y)
            and -0.5 <= x < nx - 0.5 and -0.5 <= y < ny - 0.5):
        raise InputError(f"position x={x:.1f}, y={y:.1f} lies outside the {nx}x{ny} image")


def make_stamp(image: SkyImage, x: float, y: float, stamp_size: int, pixel_scale: float,
               seed: int = 0, nominal_sky_sigma: float = NOMINAL_SKY_SIGMA_NJY,
               normalise_uncalibrated: bool = True, binning: float = 1.0,
               psf_kernel_fwhm: float = 0.0, mask_neighbours: bool = True) -> Stamp:
    """The stamp of ``stamp_size`` pixels at ``pixel_scale`` arcsec/px centred on (x, y).

    Parameters
    ----------
    image : SkyImage
        The source image (never modified).
    x, y : float
        Galaxy centre, 0-based source pixels.
    stamp_size : int
        Side of the model's stamp, pixels.
    pixel_scale : float
        The model's pixel scale, arcsec per pixel.
    seed : int
        Seed of the noise that fills masked pixels (the result is deterministic).
    nominal_sky_sigma : float
        Sky noise (nJy per model pixel) an uncalibrated image is scaled to.
    normalise_uncalibrated : bool
        Subtract the sky and scale an uncalibrated image to ``nominal_sky_sigma`` (morphology
        models); False keeps the file's values, for a model trained on those raw values.
    binning : float
        Recorded in the stamp: the factor by which ``pixel_scale`` exceeds the model's own
        (``domain.plan_stamp``).
    psf_kernel_fwhm : float
        FWHM (arcsec) of a Gaussian the image is convolved with before resampling (0: none),
        to bring a sharp PSF into a model's training range (``domain.plan_stamp``).
    mask_neighbours : bool
        Replace other sources in the cut by the fill's sky and noise, as GALFIT users mask
        them (``neighbours.other_sources``; flags NEIGHBOURS_MASKED, and BLENDED where one
        touches the galaxy); they do not count in ``masked_fraction``.

    Raises
    ------
    InputError
        The image is too small, the position lies outside it, too little of the stamp holds
        data, or resampling failed its coverage or flux check.
    """
    check_position(image.shape, x, y)
    flags = int(image.flags)
    source_scale = image.pixel_scale
    if source_scale is None:
        source_scale, flags = pixel_scale, flags | Flag.PIXEL_SCALE_GUESSED
    ratio = pixel_scale / source_scale  # source pixels per model pixel
    footprint = stamp_size * ratio
    # sqrt(2): a rotated WCS makes the stamp's corners reach further out.
    side = int(math.ceil(footprint * math.sqrt(2.0))) + 2 * PAD
    if side > MAX_CUT_SIDE:
        raise InputError(f"the image's pixel scale {source_scale:.2g}″ is {ratio:.0f}x finer "
                         f"than the model's {pixel_scale:g}″ (one stamp would need a "
                         f"{side}x{side}-pixel cut); rebin the image by {math.ceil(ratio):d} or "
                         "check its WCS pixel scale")
    cut = image.cutout(x, y, side)  # reads only this window of a large file
    data = cut.data.astype(np.float64)
    in_image = cut.in_image
    bad = ~np.isfinite(data)
    if cut.mask is not None:
        bad |= cut.mask
    variance = None
    if cut.variance is not None:
        variance = cut.variance.astype(np.float64)
        bad |= ~(variance > 0)
    sky_note = "; its sky given as 0" if image.sky_subtracted else ""
    sky_level, sky_noise = image_background(image)
    # The level the stamp's galaxy is measured against, which the fill must share (None: the
    # sky around the galaxy, measured below).
    fill_level = None
    if not image.is_display_image and math.isnan(sky_level):
        # No sky in the image, a big galaxy fills it: what lies on its wing is measured against
        # the smooth background around it, that galaxy's light, which is taken away.
        background = background_surface(data, ~bad)
        if background is not None:
            data, flags = data - background, flags | Flag.BLENDED
            sky_note = "; no sky in the image: the background around the galaxy subtracted"
            fill_level = 0.0
    elif image.calibrated:
        # A calibrated image is taken as sky-subtracted, unless its sky says otherwise (WFPC2
        # and ground-based frames often keep a pedestal).
        if sky_noise > 0 and abs(sky_level) > PEDESTAL_NOISES * sky_noise:
            data = data - sky_level
            sky_note = f"; its sky level {sky_level:.4g} subtracted"
        fill_level = 0.0
    elif not math.isnan(sky_level):  # the sky an uncalibrated stamp is measured against
        fill_level = sky_level
    xc, yc = cut.position
    rows, cols = np.ogrid[:cut.shape[0], :cut.shape[1]]
    half = footprint / 2.0
    in_footprint = (np.abs(cols - xc) <= half) & (np.abs(rows - yc) <= half)
    good = ~bad
    data_fraction = (in_footprint & good).sum() / max(1, in_footprint.sum())
    if data_fraction == 0:
        raise InputError("no usable pixels around the galaxy (all masked, NaN or off the image)")
    if data_fraction < MIN_DATA_FRACTION:
        raise InputError(f"only {data_fraction:.0%} of the stamp around x={x:.1f}, y={y:.1f} "
                         "holds usable pixels")
    inside = in_footprint & in_image
    masked_fraction = float((inside & bad).sum() / max(1, inside.sum()))
    if masked_fraction > MASKED_FLAG_FRACTION:
        flags |= Flag.MASKED

    same_scale = abs(ratio - 1.0) < SAME_SCALE_TOLERANCE
    if same_scale:  # the stamp is a window of the cut, and only its pixels may need filling
        # The cut is padded beyond the footprint, so a stamp always lies inside it.
        window = Cutout2D(bad, _onto_image(in_image, xc, yc, stamp_size), stamp_size,
                          mode="strict").slices_original
    if mask_neighbours:  # other sources are filled like masked pixels, but not counted so
        from galaxy_inspector.neighbours import other_sources

        reach = half + NEIGHBOUR_MARGIN if same_scale and not psf_kernel_fwhm else None
        neighbours, touching = other_sources(data, bad, xc, yc,
                                             detect_min_pixels(image.pixel_scale), reach)
        if (neighbours & in_footprint).any():
            flags |= Flag.NEIGHBOURS_MASKED
        if touching:
            flags |= Flag.BLENDED
        bad, good = bad | neighbours, good & ~neighbours
    noise = None
    filled = data
    # Else no background or noise is needed (a convolution reads the whole cut).
    if (bad[window] if same_scale and not psf_kernel_fwhm else bad).any():
        sky, clipped_std, around = _local_sky(data, good, np.hypot(cols - xc, rows - yc), half)
        sky = sky if fill_level is None else fill_level
        noise = math.sqrt(np.median(variance[around])) if variance is not None else clipped_std
        fill_noise = (_low_frequency_noise(data, good, noise)
                      if psf_kernel_fwhm or ratio >= NOISE_BLOCK / 2 else noise)
        rng = np.random.default_rng(seed)
        filled = np.where(bad, sky + rng.normal(0.0, fill_noise, data.shape), data)

    if psf_kernel_fwhm:
        from scipy.ndimage import gaussian_filter

        filled = gaussian_filter(filled, psf_kernel_fwhm / FWHM_PER_SIGMA / source_scale)
    ra, dec = image.pixel_to_sky(x, y)
    centre = (stamp_size - 1) / 2.0
    if same_scale:
        stamp, from_image = filled[window], in_image[window]
    else:
        stamp, coverage = _resample(filled, in_image, cut.wcs, xc, yc, ra, dec, source_scale,
                                    pixel_scale, stamp_size)
        if noise is None:  # the noise the flux check allows for
            noise = (math.sqrt(np.median(variance)) if variance is not None
                     else float(np.std(_sigma_clipped(data[np.isfinite(data)]))))
        _check_resampled(stamp, filled, xc, yc, centre, source_scale, pixel_scale, noise,
                         stamp_size)
        from_image = coverage >= EDGE_COVERAGE
    if not from_image.all():
        flags |= Flag.EDGE
    stamp = np.asarray(stamp, dtype=np.float64)

    outskirts = _outskirts(stamp_size)
    sky_sigma = stamp_sky_sigma(stamp)
    calibration = image.calibration + sky_note
    if not image.calibrated and normalise_uncalibrated:
        # The sky around the galaxy (per source pixel, times the pixel-area ratio), not the
        # stamp's outskirts, which a galaxy filling the stamp makes bright: subtracting that
        # took its wings, and its noise measured there scaled it down.
        # The whole image's sky where it has one (``image_sky``), else the cut's own.
        sky = image_sky(image)
        if math.isnan(sky):
            sky = _local_sky(data, good, np.hypot(cols - xc, rows - yc), half)[0]
        stamp = stamp - sky * (1.0 if same_scale else ratio ** 2)
        ring = stamp[outskirts]
        below = -ring[ring < 0]  # below the sky there is only noise, whatever the galaxy
        if below.size >= MIN_SKY_PIXELS:
            sky_sigma = float(np.median(below)) / HALF_NORMAL_MEDIAN or sky_sigma
        if sky_sigma > 0:
            stamp, sky_sigma = stamp * (nominal_sky_sigma / sky_sigma), nominal_sky_sigma
            calibration += f"; scaled to a sky noise of {nominal_sky_sigma:.3g} nJy/px"
            flags |= Flag.CALIBRATION_GUESSED  # the pixels' scale is assumed, not known
    if not image.calibrated:
        flags |= Flag.FLUX_UNCALIBRATED
    if source_scale > pixel_scale * 1.05:
        flags |= Flag.COARSE_PIXELS
    return Stamp(data=stamp.astype(np.float32), x=float(x), y=float(y), ra=ra, dec=dec,
                 source_scale=float(source_scale), model_scale=float(pixel_scale),
                 flags=int(flags), masked_fraction=masked_fraction, sky_sigma=float(sky_sigma),
                 calibration=calibration, binning=float(binning),
                 psf_fwhm=math.nan if image.psf_fwhm is None else float(image.psf_fwhm),
                 psf_source=image.psf_source)


_SKIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def image_sky(image: SkyImage) -> float:
    """The sky level of the whole image (``image_background``), NaN when it has none."""
    return image_background(image)[0]


def image_background(image: SkyImage) -> tuple[float, float]:
    """The sky level of the whole image (``sky_mode`` of its clipped preview), once per image:
    a window filled by a big galaxy has no sky of its own. NaN when the image has no sky: the
    spread of its clipped pixels is over ``NO_SKY_SPREAD`` times the noise of its pixels
    (from differences of neighbours, which a smooth galaxy does not change), so they are a
    galaxy's light, not sky; 0 for an image ``sky_subtracted``. Also the noise of its pixels
    (``pixel_noise``)."""
    if image not in _SKIES:
        data, good = _sky_view(image)
        sky = noise = math.nan
        if good.any():
            kept = _sigma_clipped(data[_without_sources(data, good)])
            noise = pixel_noise(data, good)
            if image.sky_subtracted:  # the user knows it
                sky = 0.0
            # Without noise (a model image, a flat display sky) nothing tells: take the median.
            elif not noise > 0:
                sky = float(np.median(kept))
            elif not np.std(kept) > NO_SKY_SPREAD * noise:
                sky = sky_mode(kept)
        _SKIES[image] = (sky, noise)
    return _SKIES[image]


def sky_mode(kept: np.ndarray) -> float:
    """The sky level of clipped, source-masked pixels ``kept``: SExtractor's mode estimate
    (Bertin & Arnouts 1996), 2.5 median - 1.5 mean, or the median where the two differ by
    0.3 of their spread or more: photutils' ``SExtractorBackground`` rule, written out to keep
    its 0.2 s import off an image's first click. Faint sources and a big
    galaxy's halo lift a median: on the NGC 5831 WFPC2 mosaic it lay 3 nJy (a quarter of the
    pixel noise) above the level the fitters recover injected galaxies against, and took 20 %
    of a 3″ de Vaucouleurs galaxy's flux; this estimate lies 1 nJy above it."""
    median, mean, spread = float(np.median(kept)), float(np.mean(kept)), float(np.std(kept))
    if spread > 0 and abs(mean - median) / spread < SKY_MODE_SKEW_LIMIT:
        return 2.5 * median - 1.5 * mean
    return median


def _sky_view(image: SkyImage) -> tuple[np.ndarray, np.ndarray]:
    """The pixels an image's sky is measured on, and which are usable: a preview subsampled to
    ``SKY_PREVIEW_SIDE``, or for an image of more than ``SKY_WINDOW_SIDE`` pixels a side (a
    survey mosaic, whose preview would read the whole file) its central window of that size."""
    ny, nx = image.shape
    if max(ny, nx) > SKY_WINDOW_SIDE:
        y0, x0 = max(0, (ny - SKY_WINDOW_SIDE) // 2), max(0, (nx - SKY_WINDOW_SIDE) // 2)
        window = image.window(slice(y0, y0 + SKY_WINDOW_SIDE), slice(x0, x0 + SKY_WINDOW_SIDE))
        data, mask = window.data, window.mask
    else:
        data, mask = image.preview(SKY_PREVIEW_SIDE), image.preview(SKY_PREVIEW_SIDE, "mask")
    data = np.asarray(data, dtype=np.float64)
    return data, np.isfinite(data) & (True if mask is None else ~mask)


def _without_sources(data: np.ndarray, good: np.ndarray) -> np.ndarray:
    """``good`` without the sources a sky estimate must not see: photutils' ``detect_sources``
    and ``make_source_mask`` written with scipy (no photutils import on the hot path), the
    8-connected groups of ``DETECT_MIN_PIXELS`` or more 2 sigma above a first clipped estimate,
    dilated by a disk of ``SKY_MASK_DILATION`` pixels, unless that leaves fewer than
    ``MIN_SKY_PIXELS``."""
    from scipy.ndimage import binary_dilation

    kept = _sigma_clipped(data[good])
    sky, std = float(np.median(kept)), float(np.std(kept))
    if not std > 0:
        return good
    groups, large = _large_groups(good & (data - sky > 2.0 * std), DETECT_MIN_PIXELS)
    if not large.any():
        return good
    r = SKY_MASK_DILATION
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    sky_only = good & ~binary_dilation(large[groups], structure=xx ** 2 + yy ** 2 <= r ** 2)
    return sky_only if sky_only.sum() >= MIN_SKY_PIXELS else good


def pixel_noise(data: np.ndarray, good: np.ndarray) -> float:
    """The noise of single pixels, from the robust spread of differences of horizontal
    neighbours (over sqrt 2): a smooth galaxy or background hardly changes them."""
    step = np.diff(data, axis=1)[good[:, 1:] & good[:, :-1]]
    if not step.size:
        return math.nan
    return MAD_TO_SIGMA * float(np.median(np.abs(step - np.median(step)))) / math.sqrt(2)


def background_surface(data: np.ndarray, good: np.ndarray) -> np.ndarray | None:
    """The background of a window centred on a galaxy where the image as a whole has none
    (``image_sky`` NaN: a big galaxy, or chips at other levels, fill it): the sigma-clipped
    median of the window's good pixels outside the circle of ``BACKGROUND_HOLE`` of its side
    about its centre (the galaxy's), or None when they spread over ``NO_SKY_SPREAD`` times
    their noise: the window holds only a galaxy's light. A flat level, not a fitted surface:
    on the NGC 5831 mosaic's field elliptical (R_e 3.2″, fitters within 7 %) a cubic surface
    took its wings (R_e 1.9″), the flat level did not (3.3″)."""
    ny, nx = data.shape
    yy, xx = np.indices(data.shape)
    ring = good & (np.hypot(xx - (nx - 1) / 2.0, yy - (ny - 1) / 2.0)
                   > BACKGROUND_HOLE * min(nx, ny))
    if ring.sum() < MIN_SKY_PIXELS:
        return None
    kept = _sigma_clipped(data[ring])
    if not np.std(kept) <= NO_SKY_SPREAD * pixel_noise(data, good):
        return None
    return np.full(data.shape, float(np.median(kept)))


def stamp_sky_sigma(stamp: np.ndarray) -> float:
    """The sky noise of a stamp: the robust standard deviation of its outskirts
    (``_outskirts``); 8-bit display images can have a sky so flat that its MAD is 0, and then
    the plain standard deviation."""
    ring = stamp[_outskirts(stamp.shape[0])]
    return MAD_TO_SIGMA * float(median_absolute_deviation(ring)) or float(np.std(ring))


def _local_sky(data: np.ndarray, good: np.ndarray, distance: np.ndarray,
               radius: float) -> tuple[float, float, np.ndarray]:
    """The background and noise around a galaxy: sigma-clipped median and spread of the
    cut's pixels that ``_sky_around`` picks, and those pixels."""
    around = _sky_around(data, good, distance, radius)
    kept = _sigma_clipped(data[around])
    return float(np.median(kept)), float(np.std(kept)), around


def _sky_around(data: np.ndarray, good: np.ndarray, distance: np.ndarray,
                radius: float) -> np.ndarray:
    """The pixels of a cut the fill's background and noise are measured on: the good ones
    further than ``radius`` (the stamp footprint's half side) from the galaxy, the annulus out
    to the cut's edge where the galaxy a stamp is made for has faded, instead of the whole cut,
    whose median a bright galaxy filling the stamp sets (and with it a bright frame of fill
    that changes with the cutout size); where fewer than ``MIN_SKY_PIXELS`` good pixels lie
    there, the ``MIN_SKY_PIXELS`` good pixels furthest from the galaxy. Neighbours in it are
    masked, as for any background estimate (photutils): the pixels of segments 2 sigma above
    a first estimate, dilated by ``SKY_MASK_DILATION`` pixels, unless that leaves too few."""
    around = good & (distance > radius)
    if around.sum() < MIN_SKY_PIXELS:
        far = np.sort(distance[good])[::-1]
        around = good & (distance >= far[min(MIN_SKY_PIXELS, far.size) - 1])
    return _without_sources(data, around)


def _low_frequency_noise(data: np.ndarray, good: np.ndarray, noise: float) -> float:
    """The white noise with the power the image's noise has on scales of several pixels.

    A stamp that sums or smooths many source pixels (a PSF-matching kernel, pixels several
    times larger) keeps only that power. Drizzled (HST) noise is correlated between pixels, so
    summing lowers it less than it lowers white noise of its pixels' spread (``noise``): a
    fill of that came out up to five times quieter than the image around it, set the stamp's
    sky noise, and scaled the galaxy to five times its signal-to-noise ratio. The factor is
    the spread of sums over ``NOISE_BLOCK`` x ``NOISE_BLOCK`` blocks of sky (sources left
    out) over what white noise would give; 1 where too few such blocks are found.
    """
    b = NOISE_BLOCK
    sky = _without_sources(data, good)
    ny, nx = (data.shape[0] // b) * b, (data.shape[1] // b) * b

    def blocks(a):
        return a[:ny, :nx].reshape(ny // b, b, nx // b, b).swapaxes(1, 2)

    whole = blocks(sky).all(axis=(2, 3))
    if whole.sum() < MIN_NOISE_BLOCKS:
        return noise
    pixels = blocks(data)[whole]  # (blocks, b, b)
    sums = _sigma_clipped(pixels.sum(axis=(1, 2)))
    spread = float(np.std(_sigma_clipped(pixels.ravel())))
    if not spread > 0:
        return noise
    return noise * float(np.std(sums)) / (b * spread)


def _resample(filled, in_image, cut_wcs, xc, yc, ra, dec, source_scale, pixel_scale,
              stamp_size) -> tuple[np.ndarray, np.ndarray]:
    """The cut ``filled`` on the model's grid, and the fraction of each stamp pixel that came
    from the image (``in_image`` resampled the same way, in the same call)."""
    from reproject import reproject_adaptive, reproject_interp

    centre = (stamp_size - 1) / 2.0
    if cut_wcs is None or not math.isfinite(ra):
        # A pixel grid without sky coordinates: an arbitrary tangent point, same orientation.
        ra, dec = 180.0, 0.0
        cut_wcs = _tan_wcs(ra, dec, source_scale, xc, yc)
    out_wcs = _tan_wcs(ra, dec, pixel_scale, centre, centre)
    shape = (stamp_size, stamp_size)
    ratio = pixel_scale / source_scale
    planes = (np.stack([filled, in_image.astype(np.float64)]), cut_wcs)
    if ratio < 1.0:  # surface brightness interpolated, times the pixel-area ratio
        stamp, coverage = reproject_interp(planes, out_wcs, shape_out=shape, order="bicubic",
                                           return_footprint=False)
        return stamp * ratio ** 2, coverage
    # Fluxes summed: a stamp pixel wholly on the image collects ratio**2 of the indicator.
    stamp, coverage = reproject_adaptive(planes, out_wcs, shape_out=shape, conserve_flux=True,
                                         return_footprint=False)
    return stamp, coverage / ratio ** 2


def _onto_image(in_image: np.ndarray, xc: float, yc: float, size: int) -> tuple[float, float]:
    """Where a same-scale stamp of ``size`` pixels is cut from a window whose ``in_image``
    marks the image's pixels: at (xc, yc), or, where the stamp would overhang the image by a
    sliver of less than a pixel on one side, moved by that sliver onto the image. Such a stamp
    is made of whole source pixels, so the sliver would otherwise become a whole row or column
    of noise; the galaxy stays within a pixel of the stamp centre (``Cutout2D`` rounds its
    placement by up to half a pixel in any case). A stamp as wide as the image overhangs one
    side by what it leaves free on the other: ``ONTO_IMAGE_ROUNDING`` keeps that tie from
    being decided by the last bits of the position."""
    moved = []
    for centre, on in ((xc, in_image.any(axis=0)), (yc, in_image.any(axis=1))):
        first, last = np.flatnonzero(on)[[0, -1]]
        low, high = first - 0.5, last + 0.5  # the image's edges
        over_high, over_low = centre + size / 2 - high, low - (centre - size / 2)
        if 0 < over_high < 1 and -over_low >= over_high - ONTO_IMAGE_ROUNDING:
            centre = high - size / 2
        elif 0 < over_low < 1 and -over_high >= over_low - ONTO_IMAGE_ROUNDING:
            centre = low + size / 2
        moved.append(float(centre))
    return moved[0], moved[1]


@functools.lru_cache(maxsize=8)
def _outskirts(stamp_size: int) -> np.ndarray:
    """Pixels of a stamp further than ``FLUX_CHECK_RADIUS`` stamp sides from its centre, where
    the sky noise is measured (read-only: it is shared)."""
    centre = (stamp_size - 1) / 2.0
    rows, cols = np.ogrid[:stamp_size, :stamp_size]
    outskirts = np.hypot(rows - centre, cols - centre) > FLUX_CHECK_RADIUS * stamp_size
    outskirts.flags.writeable = False
    return outskirts


def _check_resampled(stamp, filled, xc, yc, centre, source_scale, pixel_scale, noise,
                     stamp_size):
    """Refuse a resampled stamp that is not fully covered or lost/gained flux."""
    finite = np.isfinite(stamp)
    if not finite.all():
        raise InputError(f"resampling to {pixel_scale:g}″/px left {1 - finite.mean():.0%} of "
                         "the stamp empty")
    radius = FLUX_CHECK_RADIUS * stamp_size * pixel_scale  # arcsec
    before = _aperture_flux(filled, xc, yc, radius / source_scale)
    after = _aperture_flux(stamp, centre, centre, radius / pixel_scale)
    allowed = (FLUX_CHECK_TOLERANCE * abs(before)
               + 5.0 * noise * math.sqrt(math.pi) * radius / source_scale)
    if not abs(after - before) <= allowed:
        raise InputError(f"resampling from {source_scale:.4g} to {pixel_scale:g}″/px changed "
                         f"the flux in a {radius:.1f}″ aperture from {before:.4g} to "
                         f"{after:.4g}; the image may hold artefacts")


def _check_detectable(shape, region) -> None:
    """Refuse, before reading it, a region too large to search for sources in memory."""
    ny, nx = (len(range(*s.indices(n))) for s, n in zip(region, shape, strict=True))
    needed, limit = nx * ny * DETECT_BYTES_PER_PIXEL, whole_read_limit()
    if needed > limit:
        raise InputError(f"searching {nx}x{ny} pixels for sources would need "
                         f"{format_bytes(needed)} of memory, more than the "
                         f"{format_bytes(limit)} allowed; give a table of positions (x/y or "
                         "ra/dec columns) instead of --detect, or a smaller cutout")


#: Defaults of a source search (``detect_galaxies``, ``central_galaxy``): the threshold in units
#: of the smoothed image's noise, and the least area of a source (None: ``detect_min_pixels``'
#: few PSF beams, the same number of pixels at every scale).
DETECT_N_SIGMA = 3.0
DETECT_MIN_AREA_ARCSEC2 = None
#: The PSF FWHM, in pixels, a source search assumes: imagers sample their PSF with 2-4 pixels
#: per FWHM (HST ACS/WFC 0.1″ at 0.05″/px, HSC 0.6-0.7″ at 0.168″/px, SDSS 1.4″ at 0.396″/px),
#: so one PSF beam (1.13 FWHM²) covers about 10 pixels at any pixel scale.
NOMINAL_PSF_FWHM_PIXELS = 3.0
#: PSF beams a detected source must cover by default (20 pixels): a peak of the smoothed noise
#: rarely spans that (measured on 1000x1000 pixels of pure noise: no detection at 20 pixels,
#: one at 10), while a galaxy spans a beam or more above the threshold.
DETECT_MIN_BEAMS = 2.0
#: Fewest pixels a least area given in arcsec² comes to.
DETECT_MIN_PIXELS = 10


def detect_min_pixels(pixel_scale: float | None, min_area_arcsec2: float | None = None) -> int:
    """Fewest connected pixels a detected source covers: ``min_area_arcsec2`` in pixels of
    ``pixel_scale`` (at least ``DETECT_MIN_PIXELS``), else ``DETECT_MIN_BEAMS`` beams of a PSF
    of ``NOMINAL_PSF_FWHM_PIXELS``, the same number of pixels at every scale: a fixed area in
    arcsec² asks hundreds of pixels of an HST image (2 arcsec² is 800 at 0.05″/px) and finds
    none of its small galaxies."""
    if min_area_arcsec2 is None:
        beam = math.pi / (4.0 * math.log(2.0)) * NOMINAL_PSF_FWHM_PIXELS ** 2
        return int(round(DETECT_MIN_BEAMS * beam))
    return max(DETECT_MIN_PIXELS, int(round(min_area_arcsec2 / (pixel_scale or 0.2) ** 2)))


def _segment(image: SkyImage, region, n_sigma: float,
             min_area_arcsec2: float | None) -> _Segments:
    """Segment ``region`` of ``image`` (``_segment_pixels``), in groups of at least
    ``detect_min_pixels`` pixels."""
    _check_detectable(image.shape, region)
    data, bad = image.window(*region).usable()
    if bad.all():
        raise InputError("the image has no usable pixels (all masked or NaN)")
    y0, x0 = (s.indices(n)[0] for s, n in zip(region, image.shape, strict=True))
    return _segment_pixels(data, bad, n_sigma, detect_min_pixels(image.pixel_scale,
                                                                min_area_arcsec2), (x0, y0))


def _deblended_sources(segments: _Segments) -> list:
    """``(x, y, flags)`` of every source of the segments, blends split by photutils'
    ``deblend_sources`` (``Flag.BLENDED`` on their pieces), brightest first."""
    from photutils.segmentation import SegmentationImage, SourceCatalog

    parents = SegmentationImage(segments.labels)
    pieces = _deblend(segments)
    catalog = SourceCatalog(np.where(segments.bad, 0.0, segments.data - segments.sky), pieces,
                            convolved_data=segments.smoothed)
    # Each deblended piece lies inside one parent segment.
    parent_of = np.zeros(pieces.max_label + 1, dtype=np.int64)
    parent_of[pieces.data] = parents.data
    children = np.bincount(parent_of[pieces.labels])
    # photutils 3 renamed xcentroid to x_centroid.
    x_name, y_name = (("x_centroid", "y_centroid") if hasattr(catalog, "x_centroid")
                      else ("xcentroid", "ycentroid"))
    x0, y0 = segments.origin
    found = []
    for src in catalog:
        x, y = float(getattr(src, x_name)) + x0, float(getattr(src, y_name)) + y0
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        flag = int(Flag.BLENDED) if children[parent_of[src.label]] > 1 else 0
        found.append((float(src.segment_flux), x, y, flag))
    found.sort(key=lambda item: -item[0])
    return [(x, y, flag) for _, x, y, flag in found]


def _unsplit_sources(segments: _Segments) -> list:
    """``(x, y, 0)`` of every segment, none of which photutils would split: each at its
    centroid as ``SourceCatalog`` measures it, the centre of mass of the non-negative smoothed
    image over the segment."""
    labels = segments.labels.ravel()
    weights = np.maximum(segments.smoothed, 0.0)
    rows, cols = np.indices(segments.smoothed.shape)
    mass, x_moment, y_moment = (np.bincount(labels, w.ravel())[1:]
                                for w in (weights, weights * cols, weights * rows))
    x0, y0 = segments.origin
    return [(float(x) + x0, float(y) + y0, 0)
            for x, y in zip(x_moment / mass, y_moment / mass, strict=True)]


def detect_galaxies(image: SkyImage, n_sigma: float = DETECT_N_SIGMA,
                    min_area_arcsec2: float | None = DETECT_MIN_AREA_ARCSEC2,
                    region: tuple[slice, slice] = (slice(None), slice(None))):
    """Positions of sources in a field image: segmentation with deblending (photutils).

    The image is smoothed by a Gaussian of 1 pixel, thresholded at ``n_sigma`` times its noise
    with at least ``detect_min_pixels`` connected pixels (``min_area_arcsec2``, or a few PSF
    beams), and blends are split by
    ``deblend_sources``. ``region`` (row and column slices) limits the search, and the pixels
    read, to part of the image. Returns a list of ``(x, y, flags)`` (0-based pixels of the
    whole image; ``Flag.BLENDED`` for pieces of a split blend), brightest first.
    """
    segments = _segment(image, region, n_sigma, min_area_arcsec2)
    return [] if segments.labels is None else _deblended_sources(segments)


#: How far (arcsec) from the image centre the galaxy of an input without a position may lie.
#: Such an input is a cutout made around its galaxy: cutout services centre on a catalogue
#: position, and a galaxy's light centroid lies within about 1 arcsec of it (astrometry,
#: asymmetric light, centroids of deblended pieces); 3 arcsec allows for that, while a source
#: further out is a neighbour, not the cutout's target (HSC field galaxies at i < 24 are about
#: 8 arcsec apart on average).
CENTRE_RADIUS_ARCSEC = 3.0
#: How far beyond that radius the search box reaches, so that the whole segment of a galaxy
#: centred within the radius is found (its centroid unbiased) without reading a huge image.
CENTRE_SEARCH_MARGIN_ARCSEC = 10.0


def central_galaxy(image: SkyImage, pixel_scale: float | None = None,
                   radius_arcsec: float = CENTRE_RADIUS_ARCSEC) -> tuple[float, float, int]:
    """``(x, y, flags)`` of the source nearest the image centre (``detect_galaxies``): where an
    input without a position is measured, at that source's own centroid.

    The sources are ``detect_galaxies``' own; deblending, most of its cost, runs only when a
    segment is a blend photutils could split (``_could_split``), else each segment is one
    source at its centroid. ``pixel_scale`` (arcsec/px) stands in for an image without one.
    Raises ``InputError`` when no source lies within ``radius_arcsec`` of the centre, saying
    how many lie further out.
    """
    scale = image.pixel_scale or pixel_scale or 0.2
    ny, nx = image.shape
    cx, cy = (nx - 1) / 2.0, (ny - 1) / 2.0
    half = int(math.ceil((radius_arcsec + CENTRE_SEARCH_MARGIN_ARCSEC) / scale))
    region = (slice(max(0, int(cy) - half), int(cy) + half + 2),
              slice(max(0, int(cx) - half), int(cx) + half + 2))
    segments = _segment(image, region, DETECT_N_SIGMA, DETECT_MIN_AREA_ARCSEC2)
    found = []
    if segments.labels is not None:
        found = (_deblended_sources(segments) if _could_split(segments)
                 else _unsplit_sources(segments))
    distances = [math.hypot(x - cx, y - cy) * scale for x, y, _ in found]
    advice = "use --detect to measure every source in the image"
    if not found:
        raise InputError(f"no source detected within {radius_arcsec:.1f} arcsec of the image "
                         f"centre; {advice}")
    nearest = int(np.argmin(distances))
    if distances[nearest] > radius_arcsec:
        reach = radius_arcsec + CENTRE_SEARCH_MARGIN_ARCSEC
        sources = "1 source" if len(found) == 1 else f"{len(found)} sources"
        raise InputError(f"no source within {radius_arcsec:.1f} arcsec of the image centre (the "
                         f"nearest of {sources} within {reach:.0f} arcsec lies "
                         f"{distances[nearest]:.1f} arcsec away); {advice}")
    return found[nearest]
