"""Segmenting pixels as photutils does, written with scipy where that is faster.

The one segmentation of the field search (``preprocessing.detect_galaxies``,
``central_galaxy``) and of a stamp's neighbours (``neighbours.other_sources``): the
sky-subtracted pixels smoothed by a 1-pixel Gaussian, thresholded at a number of times their
noise, in 8-connected groups of a least area (photutils' ``detect_sources``); the search runs
``deblend_sources`` only where its multi-thresholding could split a segment
(``_could_split``). No photutils import unless a segment is deblended.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from galaxy_inspector.errors import InputError

#: Multi-thresholding of ``photutils.segmentation.deblend_sources`` as called here (its
#: defaults): levels per segment, spaced exponentially between the segment's lowest and highest
#: smoothed values (linearly when the lowest is not positive).
DEBLEND_LEVELS = 32
#: 8-connected pixels, as photutils segments.
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class _Segments:
    """A searched window of an image: its pixels, its unusable ones, its sky, the sky-subtracted
    pixels smoothed by a 1-pixel Gaussian and their noise (0 where they have none), and the
    segments above the threshold (``labels``, 1..n, 0 elsewhere; None when there are none) of
    at least ``n_pixels`` pixels. ``origin`` is the window's (x0, y0) in the image."""

    data: np.ndarray
    bad: np.ndarray
    sky: float
    smoothed: np.ndarray
    noise: float
    labels: np.ndarray | None
    n_pixels: int
    origin: tuple[int, int]


def _large_groups(mask: np.ndarray, n_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """The 8-connected groups of ``mask`` (a label image, as photutils' ``detect_sources``
    numbers them) and, per label, whether its group has at least ``n_pixels`` pixels (never
    label 0, the background)."""
    from scipy.ndimage import label

    groups, n = label(mask, structure=EIGHT_CONNECTED)
    large = np.bincount(groups.ravel(), minlength=n + 1) >= n_pixels
    large[0] = False
    return groups, large


def _sigma_clipped(values: np.ndarray) -> np.ndarray:
    """The finite 1-D ``values`` that ``sigma_clipped_stats(values, sigma=3, maxiters=5)``
    keeps, clipped by ``SigmaClip``'s compiled path (taken when an axis is given; without one
    astropy loops in Python, 3 times slower): the same bounds, so the same values, whose
    statistics are then the same."""
    from astropy.stats import SigmaClip

    _, low, high = SigmaClip(sigma=3.0, maxiters=5)(values, axis=0, masked=False,
                                                     return_bounds=True)
    return values[(values >= low) & (values <= high)]


def _segment_pixels(data: np.ndarray, bad: np.ndarray, n_sigma: float, n_pixels: int,
                   origin: tuple[int, int] = (0, 0)) -> _Segments:
    """Segment float64 pixels ``data`` (``bad``: unusable ones, not all) as photutils'
    ``detect_sources`` would: the pixels of the sky-subtracted image smoothed by a 1-pixel
    Gaussian above ``n_sigma`` times its noise, 8-connected, in groups of at least
    ``n_pixels`` pixels, numbered in raster order. The one segmentation of a field's search
    and of a stamp's neighbours (``neighbours.other_sources``)."""
    from scipy.ndimage import gaussian_filter

    sky = float(np.median(_sigma_clipped(data[~bad])))
    smoothed = gaussian_filter(np.where(bad, sky, data) - sky, 1.0)
    noise = float(np.std(_sigma_clipped(smoothed[~bad])))
    threshold = n_sigma * noise if noise > 0 else np.nanmax(smoothed) / 2
    groups, large = _large_groups((smoothed > threshold) & ~bad, n_pixels)
    labels = None
    if large.any():
        renumber = np.zeros(large.size, dtype=np.int32)
        renumber[large] = np.arange(1, large.sum() + 1)
        labels = renumber[groups]
    return _Segments(data, bad, sky, smoothed, noise, labels, n_pixels, origin)


def _deblend(segments: _Segments):
    """The segments split by photutils' ``deblend_sources``, as a ``SegmentationImage``."""
    from photutils.segmentation import SegmentationImage, deblend_sources

    try:
        return deblend_sources(segments.smoothed, SegmentationImage(segments.labels),
                               segments.n_pixels, progress_bar=False)
    except ImportError:  # photutils deblends with scikit-image's watershed
        raise InputError("--detect needs scikit-image for deblending: pip install "
                         "scikit-image") from None


def _deblend_levels(lowest: float, highest: float) -> np.ndarray:
    """The thresholds ``deblend_sources`` tries on a segment whose smoothed values span
    ``lowest``..``highest`` (its ``_SingleSourceDeblender.compute_thresholds``)."""
    linear = np.linspace(lowest, highest, DEBLEND_LEVELS + 2)
    if lowest <= 0:
        return linear[1:-1]
    return (lowest * (highest / lowest) ** ((linear - lowest) / (highest - lowest)))[1:-1]


def _could_split(segments: _Segments) -> bool:
    """Whether ``deblend_sources`` might split any segment: it does only where, at one of its
    thresholds, the segment's pixels above it form two groups of at least ``n_pixels`` each
    (its multi-thresholding; a segment of fewer than ``2 * n_pixels`` is never split). Those
    groups are counted with one ``label`` per threshold, where photutils loops over every
    group of every threshold (2 ms per segment), and only at thresholds with two local peaks
    and ``2 * n_pixels`` pixels above them: each group holds a peak of its own (its highest
    pixel), so with fewer there cannot be two."""
    from scipy.ndimage import find_objects, maximum_filter

    n_pixels, labels = segments.n_pixels, segments.labels
    for k, box in enumerate(find_objects(labels), start=1):
        inside = labels[box] == k
        values = segments.smoothed[box]
        inner = values[inside]
        if inner.size < 2 * n_pixels or inner.min() == inner.max():
            continue
        within = np.where(inside, values, -np.inf)
        peaks = within[inside & (maximum_filter(within, size=3, mode="constant",
                                                cval=-np.inf) == within)]
        for level in _deblend_levels(inner.min(), inner.max()):
            if (peaks > level).sum() < 2 or (inner > level).sum() < 2 * n_pixels:
                continue
            if _large_groups((values > level) & inside, n_pixels)[1].sum() >= 2:
                return True
    return False
