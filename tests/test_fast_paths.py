"""The per-galaxy fast paths (issue 13) give the answers of the slow ones they stand in for.

An input without a position is searched for its central source: deblending (photutils, most of
the search's cost) runs only when a segment is a blend photutils could split, and otherwise
each segment is one source at its centroid. A same-scale stamp is filled only where its own
window holds unusable pixels. Sigma clipping takes astropy's compiled path.
"""

from __future__ import annotations

import json
import subprocess
import sys

import galsim
import numpy as np
import pytest
from astropy.nddata import Cutout2D
from astropy.stats import sigma_clipped_stats
from astropy.wcs import WCS
from scipy.ndimage import gaussian_filter

from galaxy_inspector import preprocessing
from galaxy_inspector.flags import Flag
from galaxy_inspector.io import SkyImage
from galaxy_inspector.preprocessing import central_galaxy, detect_galaxies, make_stamp

SCALE, SIDE = 0.168, 128
CENTRE = (SIDE - 1) / 2


def _cutout(galaxies, seed=0, n=SIDE, noise=2.0):
    """An n x n nJy cutout at 0.168″/px of exponential galaxies ``(dx, dy, flux, r_e)`` (arcsec
    from the centre), with Gaussian noise."""
    image = galsim.ImageF(n, n, scale=SCALE)
    for dx, dy, flux, r_e in galaxies:
        galsim.Exponential(half_light_radius=r_e, flux=flux).shift(dx, dy).drawImage(
            image, add_to_image=True)
    return image.array + np.random.default_rng(seed).normal(0.0, noise, (n, n))


def _nearest_of(found, n=SIDE):
    centre = (n - 1) / 2
    return min(found, key=lambda s: np.hypot(s[0] - centre, s[1] - centre))


@pytest.mark.parametrize("kind", ["normal", "skewed", "cauchy", "smoothed"])
def test_sigma_clipping_keeps_what_astropy_keeps(kind):
    rng = np.random.default_rng(7)
    values = {"normal": rng.normal(3.0, 2.0, 20000),
              "skewed": rng.normal(0, 1, 20000) + rng.exponential(4, 20000) * (
                  rng.random(20000) < 0.3),
              "cauchy": rng.standard_cauchy(20000),  # does not converge in 5 iterations
              "smoothed": gaussian_filter(_cutout([(0, 0, 3e4, 1.0)]), 1.0).ravel()}[kind]
    kept = preprocessing._sigma_clipped(values)
    mean, median, std = sigma_clipped_stats(values, sigma=3.0, maxiters=5)
    assert (np.mean(kept), np.median(kept), np.std(kept)) == (mean, median, std)


def test_an_unblended_central_galaxy_is_found_without_deblending(monkeypatch):
    """A galaxy with a faint neighbour: the answer of the deblending search, to 1e-9 px."""
    image = SkyImage.from_array(_cutout([(0.4, -0.3, 2e4, 0.8), (6.0, 5.0, 3e3, 0.5)]), SCALE)
    x, y, flags = _nearest_of(detect_galaxies(image))
    monkeypatch.setattr(preprocessing, "_deblended_sources",
                        lambda segments: pytest.fail("deblended an unblended galaxy"))
    found = central_galaxy(image)
    assert found == (pytest.approx(x, abs=1e-9), pytest.approx(y, abs=1e-9), 0)
    assert flags == 0


@pytest.mark.parametrize("separation", [0.9, 1.5, 2.0, 2.5, 3.0])
@pytest.mark.parametrize("ratio", [1.0, 0.3, 0.05])
def test_a_central_blend_is_deblended_as_detect_galaxies_does(separation, ratio):
    """Pairs from barely to clearly separated: wherever photutils splits the central segment,
    the search deblends it too, so position and BLENDED flag are those of ``detect_galaxies``."""
    pair = [(-separation / 2, 0.2, 2e4, 0.5), (separation / 2, 0.2, 2e4 * ratio, 0.5)]
    image = SkyImage.from_array(_cutout(pair, seed=int(separation * 10)), SCALE)
    expected = _nearest_of(detect_galaxies(image))
    assert central_galaxy(image) == pytest.approx(expected, abs=1e-9)
    segments = preprocessing._segment(image, (slice(None), slice(None)),
                                      preprocessing.DETECT_N_SIGMA,
                                      preprocessing.DETECT_MIN_AREA_ARCSEC2)
    if any(flag & Flag.BLENDED for *_, flag in detect_galaxies(image)):
        assert preprocessing._could_split(segments)


def test_the_split_test_sees_every_blend_photutils_splits():
    """Over random pairs, ``_could_split`` is true wherever ``deblend_sources`` makes more
    sources than segments (it may be true where the watershed then merges them again)."""
    from photutils.segmentation import SegmentationImage, deblend_sources

    rng = np.random.default_rng(11)
    splits = 0
    for seed in range(40):
        dx, dy = rng.uniform(0.6, 3.0), rng.uniform(-1.0, 1.0)
        pair = [(0.0, 0.0, rng.uniform(5e3, 3e4), rng.uniform(0.3, 1.0)),
                (dx, dy, rng.uniform(1e3, 2e4), rng.uniform(0.3, 1.0))]
        image = SkyImage.from_array(_cutout(pair, seed=seed), SCALE)
        segments = preprocessing._segment(image, (slice(None), slice(None)),
                                          preprocessing.DETECT_N_SIGMA,
                                          preprocessing.DETECT_MIN_AREA_ARCSEC2)
        parents = SegmentationImage(segments.labels)
        pieces = deblend_sources(segments.smoothed, parents, segments.n_pixels,
                                 progress_bar=False)
        if len(pieces.labels) > len(parents.labels):
            splits += 1
            assert preprocessing._could_split(segments), seed
    assert splits >= 5  # the pairs do hold blends photutils splits


def test_a_same_scale_stamp_fills_only_what_it_holds(monkeypatch):
    """Masked pixels in the cut but outside the stamp need no background or noise: the stamp
    is the image's own pixels, made without estimating either."""
    data = _cutout([(0.0, 0.0, 2e4, 0.8)], n=160)
    mask = np.zeros(data.shape, bool)
    mask[:10, :10] = True  # in the padded cut, outside the 128-pixel stamp
    image = SkyImage.from_array(data, SCALE, mask=mask)
    monkeypatch.setattr(preprocessing, "_local_sky",
                        lambda *a, **k: pytest.fail("estimated a fill nothing needs"))
    stamp = make_stamp(image, 79.5, 79.5, SIDE, SCALE)
    np.testing.assert_array_equal(stamp.data, data[16:144, 16:144].astype(np.float32))
    assert stamp.masked_fraction == 0 and not stamp.flags & (Flag.EDGE | Flag.MASKED)


def test_a_cutout_has_the_window_wcs_cutout2d_gives():
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval, wcs.wcs.crpix = [150.0, 2.0], [40.0, 50.0]
    wcs.wcs.cd = np.array([[-0.5, 0.2], [0.2, 0.5]]) / 3600.0
    image = SkyImage.from_array(np.zeros((90, 80)), 0.5, wcs=wcs)
    cut = image.cutout(70.3, 12.8, 41)  # runs off two sides
    expected = Cutout2D(np.zeros((90, 80)), (70.3, 12.8), 41, wcs=wcs, mode="partial").wcs
    assert cut.wcs.to_header_string() == expected.to_header_string()
    assert SkyImage.from_array(np.zeros((90, 80)), 0.5).cutout(70.3, 12.8, 41).wcs is None


def test_the_last_bits_of_a_position_never_move_a_stamp():
    """A 128-pixel stamp of a 128-pixel cutout within a pixel of its centre is the cutout
    itself, never EDGE: its overhang on one side equals the room on the other, and rounding
    (a centroid's 1e-13 px) must not decide between them."""
    # A sky-subtracted image: a calibrated image's sky pedestal would be subtracted.
    data = np.random.default_rng(2).normal(0.0, 1.0, (SIDE, SIDE))
    image = SkyImage.from_array(data, SCALE)
    for x in np.linspace(CENTRE - 0.45, CENTRE + 0.95, 57):
        for nudge in (-2e-13, 0.0, 2e-13):
            stamp = make_stamp(image, x + nudge, CENTRE, SIDE, SCALE)
            assert not stamp.flags & Flag.EDGE, x + nudge
            np.testing.assert_array_equal(stamp.data, data.astype(np.float32))


#: Packages a one-galaxy batch of a plain cutout does not need (photutils and scikit-image:
#: deblending; matplotlib: imported by photutils' SourceCatalog), a second of start-up.
UNNEEDED_AT_START = {"photutils", "skimage", "matplotlib", "galsim", "reproject", "PySide6"}


@pytest.mark.slow
def test_a_one_galaxy_batch_imports_only_what_it_uses(tmp_path, tiny_bundle, write_galaxies):
    path, = write_galaxies(tmp_path / "in", 1, size=160)
    code = ("import json, sys\n"
            "from galaxy_inspector.batch import BatchOptions, run_batch\n"
            f"r = run_batch([{str(path)!r}], {str(tmp_path / 'cat.h5')!r}, "
            f"BatchOptions(model={str(tiny_bundle)!r}, n_samples=16))\n"
            "print(json.dumps([r.done, sorted({m.split('.')[0] for m in sys.modules})]))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True)
    done, modules = json.loads(run.stdout.strip().splitlines()[-1])
    assert done == 1
    assert not UNNEEDED_AT_START & set(modules)
