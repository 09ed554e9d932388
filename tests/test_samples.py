"""The shipped samples hold what their README and truth.csv say, in the documented units."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from astropy.io import fits
from astropy.stats import mad_std
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

from galaxy_inspector.io import read_image

HSC_NJY_PER_COUNT = 10 ** ((31.4 - 27.0) / 2.5)
FITS_SAMPLES = ["hsc_coadd_cutout.fits", "sdss_frame_cutout.fits", "plain_njy.fits",
                "cube_gri.fits", "field_3gal.fits"]


def _truth(rows, ident):
    return next(r for r in rows if r["id"] == ident)


def _aperture_sum(image, x, y, radius, good=None):
    yy, xx = np.indices(image.shape)
    inside = np.hypot(xx - x, yy - y) <= radius
    if good is not None:
        inside &= good
    return float(image[inside].sum())


def _scale(header):
    return proj_plane_pixel_scales(WCS(header).celestial).mean() * 3600.0


def test_every_sample_is_small_and_documented(sample_paths):
    readme = sample_paths["README.md"].read_text()
    for name, path in sample_paths.items():
        assert path.stat().st_size < 1_000_000, name
        assert name == "README.md" or f"`{name}`" in readme, f"{name} missing from README"
    assert set(FITS_SAMPLES + ["sdss_gri.jpg", "truth.csv"]) <= set(sample_paths)


def test_hsc_cutout_layout_and_flux(sample_paths, sample_truth):
    with fits.open(sample_paths["hsc_coadd_cutout.fits"]) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "IMAGE", "MASK", "VARIANCE"]
        assert hdul[0].data is None
        zp = 2.5 * np.log10(hdul[0].header["FLUXMAG0"])
        assert zp == pytest.approx(27.0, abs=1e-9)
        image, mask, var = (hdul[k].data.astype(float) for k in ("IMAGE", "MASK", "VARIANCE"))
        assert np.issubdtype(hdul["MASK"].data.dtype, np.integer)
        bad_bits = (1 << hdul["MASK"].header["MP_BAD"]) | (1 << hdul["MASK"].header["MP_CR"])
        assert _scale(hdul["IMAGE"].header) == pytest.approx(0.168, rel=1e-6)
    t = _truth(sample_truth, "hsc-1")
    good = (mask.astype(int) & bad_bits) == 0
    assert (~good).sum() > 100  # the bad column and the cosmic ray are flagged
    flux = _aperture_sum(image, t["x"], t["y"], 60, good) * HSC_NJY_PER_COUNT
    assert flux == pytest.approx(t["flux_njy"], rel=0.03)
    # Ignoring the mask would be badly wrong: the flagged pixels hold garbage.
    assert _aperture_sum(image, t["x"], t["y"], 60) * HSC_NJY_PER_COUNT > 1.5 * t["flux_njy"]
    # Sky noise: HSC-Wide-like 2-3 nJy per pixel, and VARIANCE agrees with the scatter.
    sky = image[:20, 30:90] * HSC_NJY_PER_COUNT
    sigma = mad_std(sky)
    assert 2.0 < sigma < 3.0
    assert np.sqrt(np.median(var[:20, 30:90])) * HSC_NJY_PER_COUNT == pytest.approx(
        sigma, rel=0.1)


def test_sdss_cutout_is_in_nanomaggies(sample_paths, sample_truth):
    data, header = fits.getdata(sample_paths["sdss_frame_cutout.fits"], header=True)
    assert header["BUNIT"] == "nanomaggy"
    assert _scale(header) == pytest.approx(0.396, rel=1e-6)
    t = _truth(sample_truth, "sdss-1")
    flux = _aperture_sum(data.astype(float), t["x"], t["y"], 49) * 3631.0
    assert flux == pytest.approx(t["flux_njy"], rel=0.05)


@pytest.mark.parametrize("name,ident", [("plain_njy.fits", "plain-1")])
def test_njy_image_flux(sample_paths, sample_truth, name, ident):
    data, header = fits.getdata(sample_paths[name], header=True)
    assert header["BUNIT"] == "nJy"
    t = _truth(sample_truth, ident)
    assert _aperture_sum(data.astype(float), t["x"], t["y"], 60) == pytest.approx(
        t["flux_njy"], rel=0.03)


def test_cube_bands_wcs_and_fluxes(sample_paths, sample_truth):
    data, header = fits.getdata(sample_paths["cube_gri.fits"], header=True)
    assert data.shape == (3, 128, 128)
    assert [header[f"BAND{k}"] for k in (1, 2, 3)] == ["g", "r", "i"]
    assert header["FILTERS"].split(",") == ["g", "r", "i"]
    assert header["BUNIT"] == "nJy"
    assert _scale(header) == pytest.approx(0.168, rel=1e-6)
    bts = []
    for k, band in enumerate("gri"):
        t = _truth(sample_truth, f"cube-{band}")
        assert _aperture_sum(data[k].astype(float), t["x"], t["y"], 60) == pytest.approx(
            t["flux_njy"], rel=0.03)
        bts.append(t["bt"])
    assert bts == sorted(bts)  # red bulge: B/T rises from g to i


def test_field_galaxies_sit_where_truth_and_tables_say(sample_paths, sample_truth, samples_dir):
    data, header = fits.getdata(sample_paths["field_3gal.fits"], header=True)
    wcs = WCS(header)
    field = [r for r in sample_truth if r["path"] == "field_3gal.fits"]
    assert len(field) == 3
    for t in field:
        xi, yi = int(round(t["x"])), int(round(t["y"]))
        box = data[yi - 6:yi + 7, xi - 6:xi + 7]
        peak_y, peak_x = np.unravel_index(np.argmax(box), box.shape)
        assert abs(peak_x - 6) <= 2 and abs(peak_y - 6) <= 2, t["id"]
        ra, dec = wcs.all_pix2world([[t["x"], t["y"]]], 0)[0]  # 0-based pixels
        assert (ra, dec) == pytest.approx((t["ra"], t["dec"]), abs=1e-6)
    with open(samples_dir / "galaxies_radec.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and all((samples_dir / r["path"]).is_file() for r in rows)
    for r in rows:
        t = _truth(sample_truth, r["id"])
        hdr = fits.getheader(samples_dir / r["path"], "IMAGE" if t["hdu"] == "IMAGE" else 0)
        x, y = WCS(hdr).all_world2pix([[float(r["ra"]), float(r["dec"])]], 0)[0]
        assert (x, y) == pytest.approx((t["x"], t["y"]), abs=0.01)
    with open(samples_dir / "field_xy.csv", newline="") as f:
        xy = {r["id"]: (float(r["x"]), float(r["y"])) for r in csv.DictReader(f)}
    assert xy == {t["id"]: pytest.approx((t["x"], t["y"]), abs=0.01) for t in field}


def test_jpeg_is_an_rgb_skyserver_style_cutout(sample_paths):
    from PIL import Image

    with Image.open(sample_paths["sdss_gri.jpg"]) as im:
        assert im.format == "JPEG" and im.mode == "RGB" and im.size == (128, 128)
        rgb = np.asarray(im).astype(float)
    centre = rgb[56:72, 56:72].mean()
    corner = rgb[:20, :20].mean()
    assert centre > 60 and corner < 25  # galaxy in the middle of a dark sky
    assert rgb[60:68, 60:68, 0].mean() > rgb[60:68, 60:68, 2].mean()  # red (i) bulge


def test_truth_radii_are_the_exact_circular_half_light_radii(sample_truth):
    from training.truth import circular_half_light_radius

    for t in sample_truth:
        re = circular_half_light_radius([
            (1 - t["bt"], t["n_disk"], t["hlr_disk"], t["q_disk"]),
            (t["bt"], t["n_bulge"], t["hlr_bulge"], t["q_bulge"])])
        assert re == pytest.approx(t["re_arcsec"], rel=1e-8), t["id"]


@pytest.mark.slow
def test_samples_regenerate_identically(tmp_path, sample_paths):
    """The committed files are what ``python -m training.make_samples`` writes."""
    from training.make_samples import make_samples

    make_samples(tmp_path)
    for name in FITS_SAMPLES:
        with fits.open(sample_paths[name]) as old, fits.open(tmp_path / name) as new:
            assert len(old) == len(new)
            for a, b in zip(old, new, strict=True):
                assert a.header == b.header
                if a.data is not None:
                    np.testing.assert_array_equal(a.data, b.data)
    for name in ("truth.csv", "galaxies_radec.csv", "field_xy.csv", "README.md"):
        assert (tmp_path / name).read_text() == sample_paths[name].read_text(), name


def test_reader_converts_samples_to_documented_fluxes(sample_paths, sample_truth):
    """Through the app's own reader, ``galaxy_inspector.io.read_image``."""
    cases = [("hsc_coadd_cutout.fits", "hsc-1", {}), ("sdss_frame_cutout.fits", "sdss-1", {}),
             ("plain_njy.fits", "plain-1", {}), ("cube_gri.fits", "cube-g", {"plane": 0}),
             ("cube_gri.fits", "cube-i", {"plane": 2})]
    for name, ident, kwargs in cases:
        image = read_image(sample_paths[name], **kwargs)
        t = _truth(sample_truth, ident)
        assert image.calibrated, name
        assert image.pixel_scale == pytest.approx(t["pixel_scale"], rel=1e-6), name
        data = np.asarray(image.data, dtype=float)
        good = None if image.mask is None else ~np.asarray(image.mask)
        assert _aperture_sum(np.nan_to_num(data), t["x"], t["y"], 49, good) == pytest.approx(
            t["flux_njy"], rel=0.05), name
    jpeg = read_image(sample_paths["sdss_gri.jpg"])
    assert not jpeg.calibrated
    assert jpeg.pixel_scale == pytest.approx(0.396)
