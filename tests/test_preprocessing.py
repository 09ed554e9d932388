"""Stamps: flux-conserving resampling, masks, edges, calibration scaling, detection."""

from __future__ import annotations

import galsim
import numpy as np
import pytest
from astropy.wcs import WCS

from galaxy_inspector.errors import InputError
from galaxy_inspector.flags import Flag
from galaxy_inspector.io import SkyImage
from galaxy_inspector.preprocessing import (
    central_galaxy,
    detect_galaxies,
    detect_min_pixels,
    make_stamp,
)

MODEL_SCALE, SIZE = 0.168, 128
GALAXY = galsim.Convolve(galsim.Sersic(1.0, half_light_radius=1.2, flux=5e4)
                         .shear(q=0.6, beta=30 * galsim.degrees),
                         galsim.Moffat(beta=3.0, fwhm=1.4))


def _half_light_radius(image, scale):
    """Radius (arcsec) of the centred circle holding half the image's flux, interpolated."""
    n = image.shape[0]
    c = (n - 1) / 2.0
    yy, xx = np.indices(image.shape)
    r = np.hypot(yy - c, xx - c).ravel() * scale
    order = np.argsort(r)
    cum = np.cumsum(image.ravel()[order])
    return float(np.interp(cum[-1] / 2, cum, r[order]))


def _drawn(scale, n, **kw):
    return GALAXY.drawImage(nx=n, ny=n, scale=scale, **kw).array


@pytest.mark.parametrize("source_scale, n", [(0.396, 81), (0.05, 481)])
def test_resampling_keeps_total_flux_and_half_light_radius(source_scale, n):
    image = SkyImage.from_array(_drawn(source_scale, n), source_scale)
    centre = (n - 1) / 2.0
    stamp = make_stamp(image, centre, centre, SIZE, MODEL_SCALE)
    truth = _drawn(MODEL_SCALE, SIZE)
    assert stamp.data.sum() == pytest.approx(truth.sum(), rel=0.01)
    assert _half_light_radius(stamp.data, MODEL_SCALE) == pytest.approx(
        _half_light_radius(truth, MODEL_SCALE), rel=0.03)
    assert bool(stamp.flags & Flag.COARSE_PIXELS) == (source_scale > MODEL_SCALE)


def test_rotated_wcs_comes_out_north_up():
    """A galaxy elongated along north in a 90°-rotated image is elongated along y."""
    n, scale = 101, 0.3
    along_x = galsim.Gaussian(sigma=1.5).shear(q=0.3, beta=0 * galsim.degrees)
    data = along_x.drawImage(nx=n, ny=n, scale=scale).array
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [(n + 1) / 2, (n + 1) / 2]
    w.wcs.cd = np.array([[0.0, scale], [scale, 0.0]]) / 3600.0  # +x points north
    stamp = make_stamp(SkyImage.from_array(data, scale, wcs=w), 50, 50, SIZE, MODEL_SCALE)
    yy, xx = np.indices(stamp.data.shape)
    c = (SIZE - 1) / 2
    var_x = (stamp.data * (xx - c) ** 2).sum() / stamp.data.sum()
    var_y = (stamp.data * (yy - c) ** 2).sum() / stamp.data.sum()
    assert var_y > 5 * var_x
    assert np.isfinite(stamp.ra) and stamp.ra == pytest.approx(150.0)


def test_masked_and_nan_pixels_are_filled_flagged_and_inputs_untouched():
    data = _drawn(MODEL_SCALE, 200) + np.random.default_rng(0).normal(0, 1.0, (200, 200))
    data[90:105, 90:105] = 1e9  # a saturated star, masked
    data[120:123, 40:60] = np.nan
    mask = np.zeros(data.shape, bool)
    mask[90:105, 90:105] = True
    original, original_mask = data.copy(), mask.copy()
    stamp = make_stamp(SkyImage.from_array(data, MODEL_SCALE, mask=mask), 100, 100, SIZE,
                       MODEL_SCALE)
    assert np.isfinite(stamp.data).all() and stamp.data.max() < 1e4
    assert stamp.flags & Flag.MASKED
    assert stamp.masked_fraction == pytest.approx((225 + 60) / SIZE ** 2, rel=0.05)
    np.testing.assert_array_equal(data, original)
    np.testing.assert_array_equal(mask, original_mask)


def test_variance_plane_marks_no_data_pixels():
    data = np.ones((150, 150))
    variance = np.full(data.shape, 1.0)
    variance[:, :20] = 0.0  # no data
    stamp = make_stamp(SkyImage.from_array(data, MODEL_SCALE, variance=variance), 60, 75, SIZE,
                       MODEL_SCALE)
    assert stamp.masked_fraction > 0 and stamp.flags & Flag.MASKED


def test_edge_stamps_are_padded_and_flagged_or_refused():
    data = _drawn(MODEL_SCALE, 160)
    image = SkyImage.from_array(data, MODEL_SCALE)
    inside = make_stamp(image, 79.5, 79.5, SIZE, MODEL_SCALE)
    assert not inside.flags & Flag.EDGE
    near = make_stamp(image, 20, 80, SIZE, MODEL_SCALE)
    assert near.flags & Flag.EDGE and np.isfinite(near.data).all()
    x0, y0, x1, y1 = near.box
    assert (x0, y0, x1, y1) == pytest.approx((20 - 64, 80 - 64, 20 + 64, 80 + 64))
    corner = make_stamp(image, 0, 0, SIZE, MODEL_SCALE)
    assert corner.flags & Flag.EDGE
    with pytest.raises(InputError, match="usable pixels"):
        make_stamp(SkyImage.from_array(data[:20, :20], MODEL_SCALE), 10, 10, SIZE, MODEL_SCALE)
    with pytest.raises(InputError, match="outside"):
        make_stamp(image, 500, 10, SIZE, MODEL_SCALE)
    with pytest.raises(InputError, match="too small"):
        make_stamp(SkyImage.from_array(np.ones((1, 1)), MODEL_SCALE), 0, 0, SIZE, MODEL_SCALE)


@pytest.mark.parametrize("source_scale", [MODEL_SCALE, 2 * MODEL_SCALE])
def test_a_galaxy_at_the_image_low_edges_lands_at_the_stamp_centre(source_scale):
    # The cut runs off the image's first rows and columns, where the cutout's own
    # to_cutout_position() would put the galaxy off centre.
    x, y, size = 2.0, 3.0, 33
    yy, xx = np.indices((90, 90))
    data = 1e3 * np.exp(-0.5 * ((xx - x) ** 2 + (yy - y) ** 2) / 1.5 ** 2)
    stamp = make_stamp(SkyImage.from_array(data, source_scale), x, y, size, MODEL_SCALE)
    assert stamp.flags & Flag.EDGE
    peak = np.unravel_index(np.argmax(stamp.data), stamp.data.shape)
    assert peak == ((size - 1) // 2, (size - 1) // 2)


def test_uncalibrated_stamp_is_scaled_to_the_nominal_sky_noise():
    rng = np.random.default_rng(1)
    data = 1000 + 50 * (_drawn(MODEL_SCALE, 160) + rng.normal(0, 3.0, (160, 160)))
    image = SkyImage.from_array(data, MODEL_SCALE, calibrated=False)
    stamp = make_stamp(image, 79.5, 79.5, SIZE, MODEL_SCALE, nominal_sky_sigma=2.5)
    assert stamp.flags & Flag.FLUX_UNCALIBRATED and stamp.flags & Flag.CALIBRATION_GUESSED
    raw = make_stamp(image, 79.5, 79.5, SIZE, MODEL_SCALE, normalise_uncalibrated=False)
    assert not raw.flags & Flag.CALIBRATION_GUESSED  # the file's values, nothing assumed
    assert stamp.sky_sigma == 2.5
    outskirts = stamp.data[:10].ravel()
    assert abs(np.median(outskirts)) < 1.0 and 1.5 < outskirts.std() < 3.5
    assert "scaled" in stamp.calibration


def test_unknown_pixel_scale_is_assumed_and_flagged():
    image = SkyImage.from_array(_drawn(MODEL_SCALE, 140), None)
    stamp = make_stamp(image, 69.5, 69.5, SIZE, MODEL_SCALE)
    assert stamp.flags & Flag.PIXEL_SCALE_GUESSED and stamp.source_scale == MODEL_SCALE


def test_detection_finds_separate_galaxies_and_flags_a_split_blend():
    scale, n = 0.2, 240
    image = galsim.ImageF(n, n, scale=scale)
    blob = galsim.Exponential(half_light_radius=0.8, flux=4e4)
    for dx, dy in [(-14, -14), (14, 12), (-10, 14), (-7.5, 14)]:  # the last two blend
        blob.shift(dx, dy).drawImage(image, add_to_image=True)
    data = image.array + np.random.default_rng(2).normal(0, 2.0, (n, n))
    found = detect_galaxies(SkyImage.from_array(data, scale))
    assert len(found) == 4
    centre = (n - 1) / 2
    positions = sorted(((x - centre) * scale, (y - centre) * scale) for x, y, _ in found)
    np.testing.assert_allclose(positions, sorted([(-14, -14), (14, 12), (-10, 14), (-7.5, 14)]),
                               atol=0.5)
    blended = [flag & Flag.BLENDED for _, _, flag in found]
    assert sum(bool(b) for b in blended) == 2


def _field(offsets_arcsec, scale=0.168, n=200, seed=3):
    """An n x n nJy image of exponential galaxies shifted by ``offsets_arcsec`` from its
    centre, with noise of 2 nJy."""
    image = galsim.ImageF(n, n, scale=scale)
    for dx, dy, flux in offsets_arcsec:
        galsim.Exponential(half_light_radius=0.6, flux=flux).shift(dx, dy).drawImage(
            image, add_to_image=True)
    data = image.array + np.random.default_rng(seed).normal(0, 2.0, (n, n))
    return SkyImage.from_array(data, scale)


def test_central_galaxy_is_the_source_nearest_the_centre_measured_at_its_centroid():
    # A brighter neighbour 10″ out, and a galaxy 1.4″ from the centre: that one is the target.
    image = _field([(1.2, -0.7, 3e4), (8.0, 6.0, 1e5)])
    x, y, flags = central_galaxy(image)
    centre = (200 - 1) / 2
    assert (x, y) == pytest.approx((centre + 1.2 / 0.168, centre - 0.7 / 0.168), abs=0.25)
    assert flags == 0
    # The radius is a promise: outside it, the nearest source is a neighbour, not the target.
    with pytest.raises(InputError, match=r"no source within 1\.0 arcsec of the image centre "
                                         r"\(the nearest of 2 sources within 11 arcsec lies "
                                         r"1\.4 arcsec away\); use --detect"):
        central_galaxy(image, radius_arcsec=1.0)


def test_no_central_galaxy_in_pure_noise_or_between_the_galaxies_of_a_field():
    with pytest.raises(InputError, match=r"^no source detected within 3\.0 arcsec of the image "
                                         r"centre; use --detect to measure every source"):
        central_galaxy(_field([]))
    field = _field([(-6.0, 2.0, 3e4), (5.0, 4.0, 3e4), (0.5, -7.0, 3e4)])
    with pytest.raises(InputError, match=r"the nearest of 3 sources within 13 arcsec lies "
                                         r"6\.3 arcsec away"):
        central_galaxy(field)


def test_a_sub_pixel_overhang_is_not_an_edge_but_a_missing_strip_is():
    """A click 0.6 px off the centre of a 128-px cutout takes the cutout's own pixels (the
    galaxy within a pixel of the stamp centre), not a column of noise; 3 px off is EDGE."""
    data = _drawn(MODEL_SCALE, SIZE) + np.random.default_rng(2).normal(0, 1.0, (SIZE, SIZE))
    image = SkyImage.from_array(data, MODEL_SCALE)
    for x, y in [(64.1, 63.5), (62.9, 64.1), (64.4, 62.6)]:
        stamp = make_stamp(image, x, y, SIZE, MODEL_SCALE)
        assert not stamp.flags & Flag.EDGE, (x, y)
        np.testing.assert_array_equal(stamp.data, data.astype(np.float32))
    off = make_stamp(image, 66.5, 63.5, SIZE, MODEL_SCALE)
    assert off.flags & Flag.EDGE
    np.testing.assert_array_equal(off.data[:, :-3], data[:, 3:].astype(np.float32))


def _rotated_wcs(n: int, scale: float, degrees: float) -> WCS:
    """A TAN WCS of an ``n``-pixel frame at ``scale`` arcsec/px, rotated by ``degrees``."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [(n + 1) / 2, (n + 1) / 2]
    angle = np.radians(degrees)
    w.wcs.cd = scale / 3600.0 * np.array([[-np.cos(angle), np.sin(angle)],
                                          [np.sin(angle), np.cos(angle)]])
    return w


def test_noise_filled_corners_of_a_north_up_stamp_from_a_rotated_frame_are_an_edge():
    """A frame rotated by 48 degrees holds the stamp's whole axis-aligned footprint, but the
    north-up stamp's corners lie off it and are filled."""
    n, scale = 112, 0.2
    w = _rotated_wcs(n, scale, 48.0)
    data = _drawn(scale, n) + np.random.default_rng(3).normal(0, 1.0, (n, n))
    image = SkyImage.from_array(data, scale, wcs=w)
    assert SIZE * MODEL_SCALE / scale < n  # the unrotated footprint fits
    stamp = make_stamp(image, (n - 1) / 2, (n - 1) / 2, SIZE, MODEL_SCALE)
    assert stamp.flags & Flag.EDGE
    unrotated = make_stamp(SkyImage.from_array(data, scale), (n - 1) / 2, (n - 1) / 2, SIZE,
                           MODEL_SCALE)
    assert not unrotated.flags & Flag.EDGE


def test_fill_is_the_sky_around_a_galaxy_that_fills_most_of_the_cut():
    """The corners a north-up stamp cut from a rotated frame lacks are filled at the sky
    around the galaxy (10 nJy, noise 1), not at the median of a cut the galaxy dominates."""
    n, scale, sky = 112, 0.2, 10.0
    w = _rotated_wcs(n, scale, 48.0)
    disk = galsim.Sersic(1.0, half_light_radius=4.0, flux=5e5, trunc=10.0)
    data = (disk.drawImage(nx=n, ny=n, scale=scale, method="no_pixel").array + sky
            + np.random.default_rng(4).normal(0, 1.0, (n, n)))
    assert np.median(data) > sky + 10  # the galaxy's light is most of the frame
    stamp = make_stamp(SkyImage.from_array(data, scale, wcs=w), (n - 1) / 2, (n - 1) / 2,
                       SIZE, MODEL_SCALE, seed=5)
    assert stamp.flags & Flag.EDGE
    corners = np.concatenate([stamp.data[:10, :10], stamp.data[:10, -10:],
                              stamp.data[-10:, :10], stamp.data[-10:, -10:]]).ravel()
    area = (MODEL_SCALE / scale) ** 2  # the stamp's pixels are smaller: less sky in each
    assert np.median(corners) == pytest.approx(sky * area, abs=0.2)
    assert corners.std() < 1.0


def test_detection_at_hst_scale_finds_a_small_galaxy():
    """A faint R_e = 0.3″ galaxy at 0.05″/px: the least area is two PSF beams (20 pixels)
    at every scale, where 2 arcsec² would be 800 pixels and find nothing."""
    scale, n = 0.05, 256
    galaxy = galsim.Convolve(galsim.Exponential(half_light_radius=0.3, flux=600.0),
                             galsim.Gaussian(fwhm=0.1))
    data = (galaxy.drawImage(nx=n, ny=n, scale=scale).array
            + np.random.default_rng(6).normal(0, 1.0, (n, n)))
    image = SkyImage.from_array(data, scale)
    found = detect_galaxies(image)
    assert len(found) == 1
    assert np.hypot(found[0][0] - (n - 1) / 2, found[0][1] - (n - 1) / 2) < 2
    assert detect_galaxies(image, min_area_arcsec2=2.0) == []
    assert detect_min_pixels(scale) == detect_min_pixels(0.168) == 20
    assert detect_min_pixels(scale, 0.1) == 40 and detect_min_pixels(scale, 1e-4) == 10


def _drizzled_noise(n, seed):
    """Noise of spread 1 per pixel, correlated over 3x3 pixels as drizzling correlates it: nine
    times white noise's power on scales of several pixels."""
    white = np.random.default_rng(seed).normal(0.0, 1.0, (n + 2, n + 2))
    return sum(white[i:i + n, j:j + n] for i in range(3) for j in range(3)) / 3.0


def _fill_and_image(stamp, image_side_arcsec):
    """The stamp's filled pixels (well off the image) and its image pixels (well inside it,
    beyond 2″ of the galaxy)."""
    c, half = (SIZE - 1) / 2.0, image_side_arcsec / MODEL_SCALE / 2.0
    yy, xx = np.indices(stamp.data.shape)
    box = np.maximum(np.abs(xx - c), np.abs(yy - c))
    beyond = np.hypot(xx - c, yy - c) * MODEL_SCALE > 2.0
    return stamp.data[box > half + 8], stamp.data[(box < half - 8) & beyond]


def test_fill_of_a_psf_matched_stamp_has_the_drizzled_images_noise():
    """A small HST-like cut (0.06″/px, correlated noise) PSF-matched to 0.8″ and mostly filled:
    the fill's noise is the image's as the stamp sees it. White noise of the pixels' spread,
    as it was, came out three times quieter than the image after the kernel, set the stamp's
    sky noise and so tripled the galaxy's signal-to-noise ratio (Abell 2744's HFF cutouts)."""
    scale, n = 0.06, 160
    galaxy = galsim.Exponential(half_light_radius=0.3, flux=500.0)
    data = (galaxy.drawImage(nx=n, ny=n, scale=scale, method="no_pixel").array
            + _drizzled_noise(n, 7))
    stamp = make_stamp(SkyImage.from_array(data, scale), (n - 1) / 2, (n - 1) / 2, SIZE,
                       MODEL_SCALE, seed=3, psf_kernel_fwhm=0.8)
    assert stamp.flags & Flag.EDGE
    fill, image = _fill_and_image(stamp, n * scale)
    assert fill.std() / image.std() == pytest.approx(1.0, abs=0.25)
    assert stamp.sky_sigma / image.std() == pytest.approx(1.0, abs=0.25)


def test_fill_of_a_calibrated_image_is_at_its_zero_sky_not_under_a_galaxys_wings():
    """A calibrated, sky-subtracted cut whose galaxy's wings reach its edges (half a noise
    sigma per pixel there): the fill is at the zero sky the stamp is measured against. At the
    wings' level, as the sky around the galaxy put it, it was a pedestal of over twenty times
    the fill's noise over the filled frame, which the model took for light."""
    scale, n = 0.06, 160
    galaxy = galsim.DeVaucouleurs(half_light_radius=2.0, flux=2e5)
    data = (galaxy.drawImage(nx=n, ny=n, scale=scale, method="no_pixel").array
            + _drizzled_noise(n, 8))
    assert np.median(data[:5]) > 0.3  # the wings at the cut's edge
    stamp = make_stamp(SkyImage.from_array(data, scale), (n - 1) / 2, (n - 1) / 2, SIZE,
                       MODEL_SCALE, seed=4, psf_kernel_fwhm=0.8)
    fill, _ = _fill_and_image(stamp, n * scale)
    assert abs(np.median(fill)) < 0.3 * fill.std()


def test_the_sky_of_pixels_with_a_faint_source_tail_is_their_mode_not_their_median():
    """Undetected faint sources give sky pixels a positive tail, which lifts a median (on the
    NGC 5831 WFPC2 mosaic by a quarter of the pixel noise, a fifth of a 3″ elliptical's flux);
    SExtractor's mode estimate lies nearer the sky, and is the median for plain noise."""
    from galaxy_inspector.preprocessing import sky_mode
    from galaxy_inspector.segmentation import _sigma_clipped

    rng = np.random.default_rng(1)
    noise = rng.normal(90.0, 10.0, 200_000)
    assert sky_mode(noise) == pytest.approx(np.median(noise), abs=0.1)
    tailed = noise.copy()
    faint = rng.random(tailed.size) < 0.3
    tailed[faint] += rng.exponential(8.0, faint.sum())
    kept = _sigma_clipped(tailed)
    assert abs(sky_mode(kept) - 90.0) < abs(np.median(kept) - 90.0) - 0.3
