"""Other sources in a galaxy's stamp, to be replaced by sky and noise before it is measured.

GALFIT users mask every source but their target before they fit it. A network reads every
pixel, so ``preprocessing.make_stamp`` replaces those pixels instead, by the local sky plus
noise, as it fills masked ones. The sources are the field search's (``segmentation``: the
1-pixel-smoothed, sky-subtracted cut above ``N_SIGMA`` times its noise, in groups of
``detect_min_pixels``):

* the target is the segment at the galaxy's position, or the nearest one within
  ``TARGET_RADIUS_PIXELS``; none of it is replaced, however far its outskirts reach;
* the target's segment is split at its prominent peaks (``_pieces``: a watershed, as
  photutils deblends): its pieces but the one at the position are neighbours that touch it
  (a star on top of the galaxy, a merging companion);
* a source is a neighbour only when its smoothed peak rises ``PROMINENCE_SIGMA`` noise sigmas
  above where it leaves the target (the saddle, for a piece) or the sky (the threshold, for
  a segment of its own): peaks of the noise, and noisy fragments of the target's own faint
  outskirts, are not;
* each neighbour is grown by ``GROWTH_FRACTION`` of its radius (at least
  ``GROWTH_MIN_PIXELS``), so that its wings below the threshold go with it.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from galaxy_inspector.segmentation import (
    EIGHT_CONNECTED,
    _segment_pixels,
)

__all__ = ["other_sources", "N_SIGMA", "TARGET_RADIUS_PIXELS", "PROMINENCE_SIGMA",
           "GROWTH_MIN_PIXELS", "GROWTH_FRACTION"]

#: Threshold of the segmentation, in noise sigmas of the smoothed cut: the field search's
#: (``preprocessing.DETECT_N_SIGMA``).
N_SIGMA = 3.0
#: How far (pixels) from the galaxy's position its segment may lie when none covers it: 1.5
#: FWHM of a PSF sampled by 3 pixels (``preprocessing.NOMINAL_PSF_FWHM_PIXELS``), the
#: scatter of a catalogue position or a deblended centroid about the light.
TARGET_RADIUS_PIXELS = 4.5
#: Noise sigmas (smoothed) a neighbour's peak must rise above its saddle or the threshold.
PROMINENCE_SIGMA = 5.0
#: A piece split off the target is a neighbour (a star or galaxy on it) only if it rises above
#: its saddle by this fraction of the target's own peak: a disk's star-forming clumps, part of
#: the galaxy's light (and of its truth), rise less (a knotty disk kept 0.90-0.96 of its flux
#: without this rule, all of it with).
TOUCHING_RISE = 0.25
#: A neighbour is grown by ``GROWTH_FRACTION`` of its equivalent radius, at least by
#: ``GROWTH_MIN_PIXELS``.
GROWTH_MIN_PIXELS = 2.0
GROWTH_FRACTION = 0.5


def other_sources(data: np.ndarray, bad: np.ndarray, xc: float, yc: float, n_pixels: int,
                  reach: float | None = None) -> tuple[np.ndarray, bool]:
    """``(replace, touching)`` for a cut ``data`` (float64; ``bad``: its unusable pixels, not
    all) around a galaxy at 0-based pixel (xc, yc): the usable pixels of other sources, grown,
    and whether one of them was split from the galaxy's own segment. ``reach`` (pixels) limits
    the search to the square of that half side about the galaxy (None: the whole cut)."""
    replace = np.zeros(data.shape, dtype=bool)
    box = (slice(None), slice(None))
    if reach is not None:
        box = tuple(slice(max(0, int(math.floor(c - reach))), int(math.ceil(c + reach)) + 1)
                    for c in (yc, xc))
        yc, xc = yc - box[0].start, xc - box[1].start
    segments = _segment_pixels(data[box], bad[box], N_SIGMA, n_pixels)
    if segments.labels is None or not segments.noise > 0:
        return replace, False
    sources, keep, touching = _neighbours(segments, xc, yc)
    if sources.any():
        replace[box] = _grown(sources) & ~keep & ~bad[box]
    return replace, touching


def _neighbours(segments, xc: float, yc: float) -> tuple[np.ndarray, np.ndarray, bool]:
    """``(sources, keep, touching)``: the neighbours as a label image (0 elsewhere), the
    pixels of the target never to be replaced, and whether a neighbour was split from it."""
    from scipy.ndimage import binary_dilation, find_objects, maximum

    labels, smoothed = segments.labels, segments.smoothed
    n = int(labels.max())
    target = _target(labels, xc, yc)
    threshold = N_SIGMA * segments.noise
    peaks = np.concatenate([[0.0], maximum(smoothed, labels, np.arange(1, n + 1))])
    prominent = peaks - threshold >= PROMINENCE_SIGMA * segments.noise  # at least
    prominent[[0, target]] = False
    noise = _local_noise(segments)
    boxes = find_objects(labels)
    for k in np.flatnonzero(prominent):
        box = boxes[k - 1]
        prominent[k] = _stands_out(labels[box] == k, box, threshold, smoothed, noise)
    sources = np.where(prominent[labels], labels, 0)
    keep = labels == target if target else np.zeros(labels.shape, dtype=bool)
    touching = False
    pieces = None
    if target:
        pieces = _pieces(smoothed, keep, threshold, PROMINENCE_SIGMA * segments.noise)
    if pieces is not None:
        own = _target(pieces, xc, yc)
        core = float(smoothed[pieces == own].max())
        for piece, box in enumerate(find_objects(pieces), start=1):
            if piece == own:
                continue
            box = tuple(slice(max(0, b.start - 1), b.stop + 1) for b in box)  # and its border
            this = pieces[box] == piece
            saddle = smoothed[box][this & binary_dilation(keep[box] & ~this,
                                                          structure=EIGHT_CONNECTED)]
            level = saddle.max() if saddle.size else threshold
            bright = smoothed[box][this].max() - level >= TOUCHING_RISE * (core - threshold)
            if bright and _stands_out(this, box, level, smoothed, noise, sharp=True):
                # Its whole watershed basin: its wings, and some of the target's outskirts
                # around it (a star 3″ out on a 2″ disk takes a tenth to a fifth of its light).
                sources[box][this] = n + piece
                touching = True
        keep &= sources == 0
    return sources, keep, touching


def _target(labels: np.ndarray, xc: float, yc: float) -> int:
    """The label of the segment at (xc, yc), else of the nearest within
    ``TARGET_RADIUS_PIXELS``, else 0."""
    row, col = int(round(yc)), int(round(xc))
    ny, nx = labels.shape
    if 0 <= row < ny and 0 <= col < nx and labels[row, col]:
        return int(labels[row, col])
    r = int(math.ceil(TARGET_RADIUS_PIXELS))
    rows = slice(max(0, row - r), min(ny, row + r + 1))
    cols = slice(max(0, col - r), min(nx, col + r + 1))
    near = labels[rows, cols]
    yy, xx = np.nonzero(near)
    if not yy.size:
        return 0
    distance = np.hypot(yy + rows.start - yc, xx + cols.start - xc)
    nearest = int(np.argmin(distance))
    return int(near[yy[nearest], xx[nearest]]) if distance[nearest] <= TARGET_RADIUS_PIXELS else 0


def _pieces(smoothed: np.ndarray, region: np.ndarray, threshold: float,
            height: float) -> np.ndarray | None:
    """``region`` (a segment above ``threshold``) split among its peaks that rise ``height``
    above where they meet a higher one (scikit-image's ``h_maxima``), by a watershed of the
    smoothed pixels from them, as photutils' ``deblend_sources`` splits at the peaks its
    multi-thresholding finds (in a tenth of its time, and without its rule that each piece
    hold ``n_pixels`` at every level, which keeps a bright star on a galaxy's core whole);
    None when it holds one such peak. Skipped, without importing scikit-image, unless two
    local maxima lie ``height`` above the threshold."""
    from scipy.ndimage import find_objects, label, maximum_filter

    box = find_objects(region.astype(np.int8))[0]
    inside = region[box]
    values = np.where(inside, smoothed[box], smoothed[box][inside].min())
    high = inside & (values >= threshold + height)
    if (high & (maximum_filter(values, size=3) == values)).sum() < 2:
        return None
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    markers, n = label(h_maxima(values, height), structure=EIGHT_CONNECTED)
    if n < 2:
        return None
    pieces = np.zeros(region.shape, dtype=np.int32)
    pieces[box] = watershed(-values, markers, mask=inside, connectivity=2)
    return pieces


def _local_noise(segments):
    """A function of a region giving the noise of the smoothed pixels there: the sky's,
    scaled by the ratio of the robust spread of the unsmoothed pixels about their smoothed
    values (which smooth light leaves alone) in the region to that in the sky. Inside a bright
    galaxy the source's Poisson noise can be several times the sky's."""
    @functools.cache
    def sky_residual() -> tuple[np.ndarray, float]:  # only once a source needs it
        residual = (np.where(segments.bad, 0.0, segments.data - segments.sky)
                    - segments.smoothed)
        sky = (segments.labels == 0) & ~segments.bad
        return residual, float(np.median(np.abs(residual[sky]))) if sky.any() else 0.0

    def noise(region: np.ndarray, box) -> float:
        residual, sky_spread = sky_residual()
        if not sky_spread > 0:
            return segments.noise
        spread = float(np.median(np.abs(residual[box][region & ~segments.bad[box]])))
        return segments.noise * max(1.0, spread / sky_spread)

    return noise


def _stands_out(region: np.ndarray, box, base: float, smoothed: np.ndarray, noise,
                sharp: bool = False) -> bool:
    """Whether a source (``region`` of the pixels in ``box``) has a smoothed peak that rises
    ``PROMINENCE_SIGMA`` times the noise where it lies above ``base``: its saddle, or the
    threshold. ``sharp``: the noise is measured below half its rise, for a piece on a galaxy
    that may be a star, whose sharp core is not noise."""
    values = smoothed[box]
    rise = values[region].max() - base
    lower = region & (values <= base + 0.5 * rise) if sharp else region
    return bool(rise >= PROMINENCE_SIGMA * noise(lower if lower.any() else region, box))


def _grown(sources: np.ndarray) -> np.ndarray:
    """The pixels within each source's growth radius of it (of the nearest source's, where
    the grown sources meet): one distance transform for all of them."""
    from scipy.ndimage import distance_transform_edt

    area = np.bincount(sources.ravel())
    radius = np.maximum(GROWTH_MIN_PIXELS, GROWTH_FRACTION * np.sqrt(area / math.pi))
    distance, (rows, cols) = distance_transform_edt(sources == 0, return_indices=True)
    return distance <= radius[sources[rows, cols]]
