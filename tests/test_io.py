"""Image readers: every calibration rule, HDU choice, masks, hostile files, input expansion."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from galaxy_inspector.errors import ImageReadError, InputError
from galaxy_inspector.flags import Flag
from galaxy_inspector.io import SkyImage, expand_inputs, read_image
from galaxy_inspector.io.calibration import calibration_from_header

COUNTS = np.arange(400, dtype=np.float32).reshape(20, 20) + 1.0


def _write(path, hdus):
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path


def _celestial(scale_arcsec, rotation_deg=0.0, n=20) -> fits.Header:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [(n + 1) / 2, (n + 1) / 2]
    c, s = math.cos(math.radians(rotation_deg)), math.sin(math.radians(rotation_deg))
    w.wcs.cd = np.array([[-c, s], [s, c]]) * scale_arcsec / 3600.0
    return w.to_header()


def test_hsc_coadd_cutout_uses_fluxmag0_mask_planes_and_variance(tmp_path):
    primary = fits.PrimaryHDU()
    primary.header["FLUXMAG0"] = 10 ** (0.4 * 27.0)
    mask = np.zeros((20, 20), np.int32)
    mask[0, 0] = 1 << 5  # DETECTED: an ordinary galaxy pixel
    mask[1, 1] = 1 << 1  # SAT
    mask_hdu = fits.ImageHDU(mask, name="MASK")
    mask_hdu.header.update(MP_BAD=0, MP_SAT=1, MP_DETECTED=5, MP_NO_DATA=8)
    path = _write(tmp_path / "hsc.fits", [
        primary, fits.ImageHDU(COUNTS, header=_celestial(0.168), name="IMAGE"), mask_hdu,
        fits.ImageHDU(np.full((20, 20), 4.0, np.float32), name="VARIANCE")])
    image = read_image(path)
    factor = 10 ** ((31.4 - 27.0) / 2.5)
    assert image.hdu == 1 and image.calibrated
    np.testing.assert_allclose(image.data, COUNTS * factor, rtol=1e-6)
    np.testing.assert_allclose(image.variance, 4.0 * factor ** 2, rtol=1e-6)
    assert not image.mask[0, 0] and image.mask[1, 1] and image.mask.sum() == 1
    assert image.pixel_scale == pytest.approx(0.168)
    assert "FLUXMAG0" in image.calibration


@pytest.mark.parametrize("bunit, factor", [
    ("nanomaggy", 3631.0), ("nanomaggies", 3631.0), ("NMGY", 3631.0), ("nJy", 1.0),
    ("uJy", 1e3), ("mJy", 1e6), ("Jy", 1e9)])
def test_bunit_flux_densities_become_njy(bunit, factor):
    cal = calibration_from_header({"BUNIT": bunit})
    assert cal.factor == pytest.approx(factor)


def test_surface_brightness_unit_is_multiplied_by_pixel_solid_angle():
    cal = calibration_from_header({"BUNIT": "MJy/sr"}, pixel_scale=0.1)
    pixel_sr = (0.1 / 206264.80624709636) ** 2
    assert cal.factor == pytest.approx(1e15 * pixel_sr, rel=1e-6)


@pytest.mark.parametrize("key", ["MAGZERO", "MAGZP", "ZP", "PHOTZP"])
def test_zero_point_keywords(key):
    cal = calibration_from_header({key: 30.0})
    assert cal.factor == pytest.approx(10 ** (1.4 / 2.5))
    assert key in cal.description and not cal.flags


def test_hst_photflam_rates_counts_and_missing_exptime():
    photflam, photplam = 1.5e-19, 8000.0
    zp_ab = -2.5 * math.log10(photflam) - 5 * math.log10(photplam) - 2.408
    expected = 10 ** ((31.4 - zp_ab) / 2.5)
    rate = calibration_from_header({"PHOTFLAM": photflam, "PHOTPLAM": photplam,
                                    "BUNIT": "ELECTRONS/S"})
    assert rate.factor == pytest.approx(expected, rel=2e-3) and not rate.flags
    counts = calibration_from_header({"PHOTFLAM": photflam, "PHOTPLAM": photplam,
                                      "BUNIT": "ELECTRONS", "EXPTIME": 400.0})
    assert counts.factor == pytest.approx(expected / 400.0, rel=2e-3)
    no_time = calibration_from_header({"PHOTFLAM": photflam, "PHOTPLAM": photplam,
                                       "BUNIT": "COUNTS"})
    assert not no_time.calibrated and "EXPTIME" in no_time.description


PHOT = {"TELESCOP": "HST", "PHOTFLAM": 1.5e-19, "PHOTPLAM": 8000.0, "EXPTIME": 400.0}


@pytest.mark.parametrize("header, file_name, per_second, assumed", [
    # WFPC2 pipeline images (c0f/c0m) are DN; nothing else need say so (issue 16's 200-1280x).
    ({"INSTRUME": "WFPC2"}, "u2x80101t_c0f.fits", False, True),
    ({"INSTRUME": "WFPC2"}, "galaxy.fits", False, True),
    ({"INSTRUME": "WFPC2", "FILENAME": "u2x80101t_c0m.fits"}, "cutout.fits", False, True),
    # ACS and WFC3/UVIS: flt/flc are electrons, drz/drc electrons/s; WFC3/IR flt are rates.
    ({"INSTRUME": "ACS"}, "j8xx01abq_flt.fits", False, True),
    ({"INSTRUME": "ACS"}, "j8xx01010_drz.fits", True, True),
    ({"INSTRUME": "WFC3", "DETECTOR": "UVIS"}, "ib4v12n5q_flc.fits", False, True),
    ({"INSTRUME": "WFC3", "DETECTOR": "IR"}, "ia2113inq_flt.fits", True, True),
    ({"INSTRUME": "ACS", "BUNIT": "ELECTRONS/S"}, "j8xx01abq_flt.fits", True, False),
    # Drizzle's record of its output units wins over the WFPC2 BUNIT it left behind.
    ({"INSTRUME": "WFPC2", "BUNIT": "COUNTS", "D001OUUN": "cps"}, "u2x8_drz.fits", True, False),
    ({"INSTRUME": "ACS", "D001OUUN": "counts"}, "j8xx01010_drz.fits", False, False),
])
def test_hst_counts_are_divided_by_exptime_whatever_says_they_are_counts(
        header, file_name, per_second, assumed):
    rate_factor = calibration_from_header({**PHOT, "BUNIT": "ELECTRONS/S"}).factor
    cal = calibration_from_header({**PHOT, **header}, file_name=file_name)
    expected = rate_factor if per_second else rate_factor / PHOT["EXPTIME"]
    assert cal.factor == pytest.approx(expected)
    assert bool(cal.flags & Flag.CALIBRATION_GUESSED) == assumed
    assert ("EXPTIME" in cal.description) == (not per_second)


def test_hst_values_nothing_tells_apart_are_not_calibrated():
    """PHOTFLAM of an image that may be counts or rates: uncalibrated with the reason (a
    guess is off by the exposure time), and a zero point the user gives is used instead."""
    unknown = calibration_from_header(PHOT, file_name="galaxy.fits")
    assert not unknown.calibrated
    assert "counts or count rates" in unknown.description and "--zero-point" in unknown.description
    given = calibration_from_header(PHOT, user_zero_point=25.0, file_name="galaxy.fits")
    assert given.calibrated and "user zero point" in given.description


def test_wfpc2_counts_file_reads_as_rates_times_photflam(tmp_path):
    header = fits.Header({**PHOT, "INSTRUME": "WFPC2"})
    path = _write(tmp_path / "u2x80101t_c0f.fits", [fits.PrimaryHDU(COUNTS, header)])
    image = read_image(path)
    rate_factor = calibration_from_header({**PHOT, "BUNIT": "COUNTS/S"}).factor
    np.testing.assert_allclose(image.data, COUNTS / 400.0 * rate_factor, rtol=1e-6)
    assert image.flags & Flag.CALIBRATION_GUESSED and "EXPTIME 400" in image.calibration


def test_user_zero_point_only_where_the_file_has_none(tmp_path):
    bare = _write(tmp_path / "bare.fits", [fits.PrimaryHDU(COUNTS)])
    assert not read_image(bare).calibrated
    given = read_image(bare, zero_point=31.4)
    assert given.calibrated and "user zero point" in given.calibration
    np.testing.assert_allclose(given.data, COUNTS)
    sdss = fits.PrimaryHDU(COUNTS)
    sdss.header["BUNIT"] = "nanomaggy"
    own = read_image(_write(tmp_path / "sdss.fits", [sdss]), zero_point=20.0)
    np.testing.assert_allclose(own.data, COUNTS * 3631.0)


def test_pixel_scale_from_rotated_wcs_else_option_else_unknown(tmp_path):
    rotated = _write(tmp_path / "rot.fits", [fits.PrimaryHDU(COUNTS, _celestial(0.396, 37.0))])
    image = read_image(rotated)
    assert image.pixel_scale == pytest.approx(0.396) and image.wcs is not None
    assert read_image(rotated, pixel_scale=0.3961).calibration == image.calibration
    bare = _write(tmp_path / "bare.fits", [fits.PrimaryHDU(COUNTS)])
    assert read_image(bare, pixel_scale=0.25).pixel_scale == 0.25
    assert read_image(bare).pixel_scale is None and read_image(bare).wcs is None


def test_given_pixel_scale_overrides_a_wrong_wcs_and_says_so(tmp_path):
    """--pixel-scale wins over the WCS: the WCS is rescaled about its reference pixel (its
    rotation and reference position kept), so stamps are cut at the scale given."""
    from astropy.wcs.utils import proj_plane_pixel_scales

    wrong = _write(tmp_path / "wrong.fits", [fits.PrimaryHDU(COUNTS, _celestial(0.1, 48.0))])
    own = read_image(wrong)
    image = read_image(wrong, pixel_scale=0.05)
    assert image.pixel_scale == 0.05
    np.testing.assert_allclose(proj_plane_pixel_scales(image.wcs) * 3600.0, 0.05)
    assert image.pixel_to_sky(9.5, 9.5) == pytest.approx(own.pixel_to_sky(9.5, 9.5))
    ra0, dec0 = own.pixel_to_sky(9.5, 9.5)
    far = [np.subtract(im.pixel_to_sky(19.5, 9.5), (ra0, dec0)) for im in (own, image)]
    np.testing.assert_allclose(far[1], far[0] / 2, rtol=1e-4)  # same direction, half as far
    assert "0.05\"/px as given, not the file's 0.1\"/px" in image.calibration
    keyword = fits.PrimaryHDU(COUNTS)
    keyword.header["PIXSCALE"] = 0.4
    assert read_image(_write(tmp_path / "kw.fits", [keyword]), pixel_scale=0.2).pixel_scale == 0.2


def test_compressed_and_gzipped_files_read_like_plain_ones(tmp_path):
    gz = _write(tmp_path / "a.fits.gz", [fits.PrimaryHDU(COUNTS)])
    fz = _write(tmp_path / "a.fz", [fits.PrimaryHDU(), fits.CompImageHDU(COUNTS)])
    np.testing.assert_array_equal(read_image(gz).data, COUNTS)
    np.testing.assert_allclose(read_image(fz).data, COUNTS, rtol=1e-3)


def test_cube_planes_and_hdu_option(tmp_path):
    cube = np.stack([COUNTS, 2 * COUNTS, 3 * COUNTS])
    path = _write(tmp_path / "cube.fits", [fits.PrimaryHDU(cube),
                                           fits.ImageHDU(5 * COUNTS, name="OTHER")])
    np.testing.assert_array_equal(read_image(path, plane=2).data, 3 * COUNTS)
    assert "plane 2" in read_image(path, plane=2).calibration
    np.testing.assert_array_equal(read_image(path, hdu="OTHER").data, 5 * COUNTS)
    np.testing.assert_array_equal(read_image(path, hdu=1).data, 5 * COUNTS)
    with pytest.raises(InputError, match="no HDU 'SCI'"):
        read_image(path, hdu="SCI")
    with pytest.raises(InputError, match="3 planes"):
        read_image(path, plane=3)


@pytest.mark.parametrize("content, message", [
    (b"", "empty"), (b"SIMPLE  = nonsense", "cannot read"), (None, "truncated")])
def test_hostile_files_give_one_line_messages(tmp_path, content, message):
    path = tmp_path / "bad.fits"
    if content is None:
        _write(path, [fits.PrimaryHDU(np.ones((200, 200), np.float32))])
        content = path.read_bytes()[:20000]
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=message) as err:
        read_image(path)
    assert "\n" not in str(err.value)


def test_table_only_and_one_pixel_fits_are_refused(tmp_path):
    table = tmp_path / "t.fits"
    Table({"a": [1, 2]}).write(table)
    with pytest.raises(ImageReadError, match="only tables"):
        read_image(table)
    one = _write(tmp_path / "one.fits", [fits.PrimaryHDU(np.ones((1, 1)))])
    with pytest.raises(ImageReadError, match="too small"):
        read_image(one)


def test_jpeg_is_grey_flipped_uncalibrated_with_guessed_sdss_scale(tmp_path):
    from PIL import Image

    rgb = np.zeros((10, 12, 3), np.uint8)
    rgb[0, :, :] = 255  # top row of the picture
    Image.fromarray(rgb).save(tmp_path / "c.png")
    image = read_image(tmp_path / "c.png")
    assert image.shape == (10, 12) and not image.calibrated
    assert image.data[-1].min() == 255 and image.data[0].max() == 0  # y grows upwards
    assert image.pixel_scale == 0.396
    assert image.flags & Flag.PIXEL_SCALE_GUESSED and image.flags & Flag.NONLINEAR_IMAGE
    assert not read_image(tmp_path / "c.png", pixel_scale=0.2).flags & Flag.PIXEL_SCALE_GUESSED


def test_sky_image_copies_and_freezes_the_callers_array():
    mine = np.ones((16, 16))
    image = SkyImage.from_array(mine, 0.2)
    mine[0, 0] = 7.0
    assert image.data[0, 0] == 1.0
    with pytest.raises(ValueError):
        image.data[0, 0] = 3.0


def test_inputs_expand_folders_tables_and_report_unusable_ones(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.fits", "a.fits.gz", "sub/c.jpg", "notes.txt", "sub/d.fz"):
        (tmp_path / name).write_bytes(b"x")
    found = [t.path for t in expand_inputs([tmp_path])]
    assert [p.split("/")[-1] for p in found] == ["a.fits.gz", "b.fits", "c.jpg", "d.fz"]

    Table({"path": ["b.fits", "/abs/x.fits"], "ID": ["g1", "g2"], "ra": [150.0, 151.0],
           "dec": [2.0, 2.5]}).write(tmp_path / "t.csv")
    rows = list(expand_inputs([tmp_path / "t.csv"]))
    assert rows[0].path == str(tmp_path / "b.fits") and rows[1].path == "/abs/x.fits"
    assert (rows[0].id, rows[0].ra, rows[0].dec, rows[0].x) == ("g1", 150.0, 2.0, None)
    assert len({r.key for r in rows}) == 2

    Table({"file": ["b.fits"]}).write(tmp_path / "nopath.ecsv")
    bad, missing = expand_inputs([tmp_path / "nopath.ecsv", tmp_path / "gone.fits"])
    assert "no 'path' column" in bad.error and "no such file" in missing.error


def test_fits_table_with_path_column_is_a_position_table(tmp_path):
    Table({"path": ["a.fits"], "x": [3.0], "y": [4.0]}).write(tmp_path / "pos.fits")
    (target,) = expand_inputs([tmp_path / "pos.fits"])
    assert (target.x, target.y, target.path) == (3.0, 4.0, str(tmp_path / "a.fits"))


@pytest.mark.parametrize("lazy", [False, True])
def test_a_mosaics_zero_fill_off_the_chips_is_no_data_and_its_sky_is_found(
        tmp_path, monkeypatch, lazy):
    """Drizzle, SWarp and WFPC2 mosaics write 0 where nothing was exposed. Taken as data, a
    quarter of an image at 0 beside a sky of 90 spread the sky so wide that the image seemed
    to have none (NGC 5831's WFPC2 mosaic); a lone zero of a count image stays data."""
    from galaxy_inspector.io import fits as fits_io
    from galaxy_inspector.preprocessing import image_sky

    data = np.random.default_rng(4).normal(90.0, 5.0, (200, 200)).astype(np.float32)
    data[:100, :100] = 0.0  # the chevron of a WFPC2 mosaic
    data[150, 150] = 0.0  # a pixel that happens to be 0
    path = _write(tmp_path / "mosaic.fits", [fits.PrimaryHDU(data)])
    monkeypatch.setattr(fits_io, "LAZY_ABOVE_BYTES", 0 if lazy else float("inf"))
    image = read_image(path, pixel_scale=0.1)
    assert isinstance(image.pixels, fits_io.FitsSectionPixels) == lazy
    mask = image.window(slice(None), slice(None)).mask
    assert mask[:100, :100].all() and mask.sum() == 100 * 100
    assert image_sky(image) == pytest.approx(90.0, abs=0.5)
