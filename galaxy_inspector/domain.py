"""Bringing a galaxy into a model's domain before it is measured (no Qt, no training).

A model knows galaxies of the sizes and PSFs it was trained on (its card's
``training_ranges``). Two steps make other images look like those, without changing what is
measured:

* **Scale.** A galaxy too large for the stamp (an isophotal half-light radius, measured here
  without the model, above ``BINNING_START_ARCSEC``) is cut at ``k`` times the model's pixel
  scale: the same 128 pixels then span ``k`` times the sky, its flux is unchanged
  (flux-conserving resampling) and the model sees a galaxy ``k`` times smaller, whose R_e is
  multiplied by ``k`` again afterwards. Sérsic profiles are self-similar, so this is exact for
  the intrinsic light; the PSF in the model's frame shrinks by ``k`` too, which the next step
  handles.
* **PSF.** When the image's PSF, divided by ``k``, is sharper than the training range (HST's
  0.1″, or any binned image), the cut is convolved with the Gaussian that brings it to
  ``PSF_TARGET_FACTOR`` times the range's sharpest PSF. A PSF broader than the range is only
  flagged: widening nothing silently. An image without a known PSF is assumed to be inside the
  range when its pixels are about the model's, and ``NOMINAL_PSF_FWHM_PIXELS`` of its own
  pixels when they are finer or it is binned (flag ``PSF_GUESSED``).

``plan_stamp`` decides both for one position; ``preprocessing.make_stamp`` carries them out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from galaxy_inspector.errors import InputError
from galaxy_inspector.flags import Flag
from galaxy_inspector.io.image import SkyImage

__all__ = ["StampPlan", "plan_stamp", "psf_seen_by_model", "first_look", "FirstLook", "BINNING_START_ARCSEC",
           "BINNING_TARGET_ARCSEC", "PSF_TARGET_FACTOR", "TRUNCATION_LEVEL"]

#: Isophotal half-light radius (arcsec, PSF included) above which a galaxy is binned: half the
#: training range's largest R_e (6.1″ for the shipped model), where its light still fits the
#: 21.5″ stamp; below it nothing changes.
BINNING_START_ARCSEC = 3.0
#: Isophotal half-light radius a binned galaxy is brought to: the middle of the training sizes.
BINNING_TARGET_ARCSEC = 1.5
#: Binning factors are rounded up to a multiple of this, so that a catalogue holds few of them.
BINNING_STEP = 0.5
#: The PSF a too-sharp image is convolved to, in units of the training range's sharpest.
PSF_TARGET_FACTOR = 1.25
#: Source pixels no finer than this fraction of the model's pixel count as "about the model's"
#: for an image without a known PSF: its PSF is then assumed to lie inside the training range.
SAME_SAMPLING_FRACTION = 0.7
#: A galaxy whose sky-subtracted surface brightness where its isophote meets the image edge is
#: more than this fraction of its surface brightness at its half-light radius is cut off by the
#: image (for a de Vaucouleurs profile: the edge lies within about 4 R_e, over 20 % of the
#: light beyond it).
TRUNCATION_LEVEL = 0.05
#: The search window grows by this factor until the galaxy's isophote lies inside it.
WINDOW_GROWTH = 2.0
#: Fewest of a window's pixels, as a fraction, that must lie below the sky to measure its noise.
MIN_SKY_FRACTION = 0.05
#: Largest search window, in stamp footprints.
MAX_WINDOW_FOOTPRINTS = 16.0


@dataclass(frozen=True)
class FirstLook:
    """A model-free look at the source at a position: its isophotal half-light radius
    (arcsec, PSF included; NaN when no source covers the position) and whether the image's
    edge cuts off its light (``truncated``; with a NaN radius: no window it may read has a
    background, the galaxy fills the image)."""

    r50_arcsec: float
    truncated: bool


@dataclass(frozen=True)
class StampPlan:
    """How to cut one galaxy's stamp: ``binning`` k (model pixels per stamp pixel, >= 1), the
    FWHM (arcsec, on the sky) of the Gaussian to convolve the image with (0: none), and the
    flags that say so."""

    binning: float = 1.0
    kernel_fwhm: float = 0.0
    flags: int = 0


def first_look(image: SkyImage, x: float, y: float, footprint: float,
               scale: float) -> FirstLook:
    """The isophotal half-light radius of the source at 0-based pixel (x, y) of an image of
    ``scale`` arcsec per pixel: its segment
    (``preprocessing``'s segmentation: 3 sigma of the 1-pixel-smoothed sky-subtracted pixels,
    a few PSF beams at least) in a window of ``footprint`` source pixels, grown while the
    segment reaches the window's border, and the radius within which half of the segment's
    flux lies. Where that radius is large enough to bin or refuse the galaxy, the other
    sources the stamp will replace (``neighbours.other_sources``) are taken off the segment
    when that makes it smaller."""
    from scipy.ndimage import gaussian_filter

    from galaxy_inspector.preprocessing import (
        MAX_CUT_SIDE,
        _large_groups,
        background_surface,
        detect_min_pixels,
        image_sky,
    )

    ny, nx = image.shape
    side = max(16, int(math.ceil(footprint)))
    largest = min(MAX_CUT_SIDE, int(MAX_WINDOW_FOOTPRINTS * footprint),
                  2 * max(nx, ny) + 1)
    while True:
        cut = image.cutout(x, y, side)
        data = cut.data.astype(np.float64)
        bad = ~np.isfinite(data) | (cut.mask if cut.mask is not None else False)
        if bad.all():
            return FirstLook(math.nan, False)
        sky = image_sky(image)
        no_sky = math.isnan(sky)
        if no_sky:  # a big galaxy fills the image: the smooth background around this one
            sky = background_surface(data, ~bad)
            if sky is None:  # none: the galaxy at the position is the big one
                return FirstLook(math.nan, True)
        smoothed = gaussian_filter(np.where(bad, sky, data) - sky, 1.0)
        # Pixels below the sky are noise alone, whatever fills the window: their median
        # distance below it is 0.6745 sigma.
        below = -smoothed[~bad & (smoothed < 0)]
        if below.size < MIN_SKY_FRACTION * smoothed.size and side < largest:
            side = min(largest, int(side * WINDOW_GROWTH))  # a galaxy fills the window
            continue
        noise = float(np.median(below)) / 0.6745 if below.size else math.nan
        if not noise > 0:
            return FirstLook(math.nan, False)
        groups, large = _large_groups((smoothed > 3.0 * noise) & ~bad,
                                      detect_min_pixels(scale))
        xc, yc = cut.position
        target = groups[int(round(yc)), int(round(xc))]
        if not large[target]:
            return FirstLook(math.nan, False)
        segment = groups == target
        reaches_border = (segment & _window_border(segment.shape)).any()
        if reaches_border and no_sky:  # larger than its window, with no sky to grow into
            return FirstLook(math.nan, True)
        if not reaches_border or side >= largest:
            break  # the whole isophote is in view, or as much of it as may be read
        side = min(largest, int(side * WINDOW_GROWTH))
    light = data - sky
    r50 = _half_light_pixels(segment, light, xc, yc)
    if r50 * scale > BINNING_START_ARCSEC:
        # Large enough to be binned or refused: first take off what the stamp will replace.
        # At HST depth a small galaxy's isophote runs into a cluster galaxy's halo, and the
        # merged segment's half light lay 8.7″ out for a 0.7″ elliptical (refused).
        from galaxy_inspector.neighbours import other_sources

        others, _ = other_sources(data, bad, xc, yc, detect_min_pixels(scale))
        if (segment & others).any():
            alone = segment & ~others
            r50_alone = _half_light_pixels(alone, light, xc, yc)
            # Only where that shrinks it: a click on a big galaxy's wing makes its core a
            # "neighbour", and the wing alone spread half its light twice as far (9.3″, 4.7″).
            if r50_alone < r50:
                segment, r50 = alone, r50_alone
    if math.isnan(r50):
        return FirstLook(math.nan, False)
    return FirstLook(r50 * scale, _truncated(segment, cut.in_image, light, xc, yc, r50))


def _half_light_pixels(segment, light, xc, yc) -> float:
    """Radius (pixels) about (xc, yc) within which half of the segment's light lies (NaN:
    no light)."""
    rows, cols = np.nonzero(segment)
    distance = np.hypot(cols - xc, rows - yc)
    order = np.argsort(distance)
    cumulative = np.cumsum(light[rows, cols][order])
    if not cumulative.size or not cumulative[-1] > 0:
        return math.nan
    half = int(np.searchsorted(cumulative, 0.5 * cumulative[-1]))
    return float(distance[order][min(half, order.size - 1)])


def _window_border(shape) -> np.ndarray:
    border = np.zeros(shape, dtype=bool)
    border[0], border[-1], border[:, 0], border[:, -1] = True, True, True, True
    return border


def _truncated(segment, in_image, flux, xc, yc, r50) -> bool:
    """Whether the image's edge (or the largest window read) cuts the segment where it is
    still bright: the median surface brightness of its pixels there above
    ``TRUNCATION_LEVEL`` of its median around the half-light radius ``r50`` (pixels)."""
    from scipy.ndimage import binary_dilation

    edge = segment & (binary_dilation(~in_image) | _window_border(segment.shape))
    if not edge.any():
        return False
    rows, cols = np.indices(segment.shape)
    ring = segment & (np.abs(np.hypot(cols - xc, rows - yc) - r50) <= max(1.0, 0.1 * r50))
    at_r50 = float(np.median(flux[ring if ring.any() else segment]))
    return bool(at_r50 > 0 and np.median(flux[edge]) > TRUNCATION_LEVEL * at_r50)


def plan_stamp(image: SkyImage, x: float, y: float, stamp_size: int, pixel_scale: float,
               psf_range: tuple[float, float] | None = None,
               bin_large: bool = True) -> StampPlan:
    """How to cut the stamp of the galaxy at 0-based pixel (x, y) for a model of
    ``stamp_size`` pixels at ``pixel_scale`` arcsec/px trained on PSFs of FWHM within
    ``psf_range`` (arcsec; None: no PSF step).

    A display image (JPEG/PNG) is cut as it is. Raises ``InputError`` when the galaxy must be
    binned but the image's edge cuts off its
    light: its R_e and flux would be underestimated by any model.
    """
    from galaxy_inspector.preprocessing import (
        MAX_CUT_SIDE,
        NOMINAL_PSF_FWHM_PIXELS,
        PAD,
        check_position,
    )

    check_position(image.shape, x, y)
    if image.is_display_image:  # stretched levels, not fluxes: no isophote or PSF to measure
        return StampPlan()
    source_scale = image.pixel_scale or pixel_scale
    binning, flags = 1.0, 0
    if bin_large:
        look = first_look(image, x, y, stamp_size * pixel_scale / source_scale, source_scale)
        if look.truncated and math.isnan(look.r50_arcsec):
            raise InputError("the galaxy fills the image: there is no sky around it to measure "
                             "its light against; measure it on a larger image")
        if look.r50_arcsec > BINNING_START_ARCSEC:
            if look.truncated:
                raise InputError(
                    f"the galaxy is larger than the image: its light is cut off by the "
                    f"image's edge (half of what is seen lies within {look.r50_arcsec:.1f}″); "
                    "measure it on a larger image")
            wanted = math.ceil(look.r50_arcsec / BINNING_TARGET_ARCSEC / BINNING_STEP)
            # The cut a binned stamp reads (``make_stamp``) must stay within MAX_CUT_SIDE.
            most = (MAX_CUT_SIDE - 2 * PAD - 1) * source_scale / (
                stamp_size * pixel_scale * math.sqrt(2.0))
            binning = max(1.0, min(wanted * BINNING_STEP, math.floor(most / BINNING_STEP)
                                   * BINNING_STEP))
            flags |= Flag.RESCALED if binning > 1.0 else 0
    if psf_range is None:
        return StampPlan(binning, 0.0, int(flags))
    fwhm = image.psf_fwhm
    if fwhm is None:
        if binning == 1.0 and source_scale >= SAME_SAMPLING_FRACTION * pixel_scale:
            return StampPlan(binning, 0.0, int(flags))  # pixels like the model's: a survey
        fwhm = NOMINAL_PSF_FWHM_PIXELS * source_scale
        flags |= Flag.PSF_GUESSED
    lo, hi = psf_range
    in_frame = fwhm / binning  # the PSF the model sees
    kernel = 0.0
    if in_frame < lo:
        kernel = math.sqrt((PSF_TARGET_FACTOR * lo * binning) ** 2 - fwhm ** 2)
        flags |= Flag.PSF_MATCHED
    elif in_frame > hi:
        flags |= Flag.OUTSIDE_TRAINING
    if not flags & Flag.PSF_MATCHED:
        flags &= ~Flag.PSF_GUESSED  # the guess decided nothing
    return StampPlan(binning, kernel, int(flags))



def psf_seen_by_model(psf_fwhm: float, binning: float, flags: int,
                      psf_range: tuple[float, float]) -> float:
    """The FWHM (arcsec) of the PSF in a stamp as the model sees it, for a network that reads
    it (``MorphologyNet(psf_input=...)``); NaN when it is not known.

    ``psf_fwhm`` is the image's (NaN: unknown), ``binning`` and ``flags`` the stamp's. A
    PSF-matched stamp holds the matching target (``PSF_TARGET_FACTOR`` times the range's
    sharpest), unless the image's PSF was only guessed; otherwise the image's PSF shrinks by
    the binning. Values are clipped to ``psf_range``: beyond it the model has seen nothing, and
    the stamp is flagged OUTSIDE_TRAINING already.
    """
    lo, hi = psf_range
    if flags & Flag.PSF_GUESSED or not math.isfinite(psf_fwhm):
        return math.nan
    seen = PSF_TARGET_FACTOR * lo if flags & Flag.PSF_MATCHED else psf_fwhm / binning
    return float(min(max(seen, lo), hi))
