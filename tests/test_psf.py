"""The image's PSF: header keywords, PSF images, stars of the field, and the options that give
it, through read_image and --batch into the catalogue's psf_fwhm_arcsec / psf_source."""

from __future__ import annotations

import math
from collections import ChainMap

import numpy as np
import pytest
from astropy.io import fits

from galaxy_inspector.catalogue import read_catalogue
from galaxy_inspector.cli import main
from galaxy_inspector.errors import InputError
from galaxy_inspector.io import SkyImage, read_image
from galaxy_inspector.io.psf import (
    psf_from_header,
    psf_fwhm_from_stars,
    psf_fwhm_of_image,
)


def _header(cards) -> fits.Header:
    header = fits.Header()
    for key, value, comment in cards:
        header[f"HIERARCH {key}" if len(key) > 8 else key] = (value, comment)
    return header


@pytest.mark.parametrize("cards, scale, fwhm, source", [
    ([("SEEING", 0.71, "seeing FWHM")], 0.168, 0.71, "header SEEING"),  # HSC, arcsec
    ([("PSF_FWHM", 0.65, "Spatial resolution (arcsec)")], 0.2, 0.65, "header PSF_FWHM"),  # KiDS
    ([("FWHM", 4.0, "Median FWHM in pixels")], 0.262, 1.048, "header FWHM (4 px)"),  # DECam CP
    ([("FWHM", 4.0, "")], 0.262, 1.048, "header FWHM (4 px)"),  # pixels by the CP's convention
    ([("FWHM", 0.9, "[arcsec] FWHM of stars")], 0.262, 0.9, "header FWHM"),  # the comment says
    ([("SEEING", 2.5, "[pix] seeing FWHM")], 1.0, 2.5, "header SEEING (2.5 px)"),  # ZTF-like
    ([("SEEINGP1", 3.5, "")], 0.26, 0.91, "header SEEINGP1 (3.5 px)"),  # Mosaic/90Prime CP
    ([("SEEING", 0.0, "not measured"), ("FWHM", 3.0, "")], 0.2, 0.6, "header FWHM (3 px)"),
    ([("SEEING_FWHM", 0.8, "")], None, 0.8, "header SEEING_FWHM"),  # written as HIERARCH
])
def test_header_keywords_in_arcsec_and_pixels(cards, scale, fwhm, source):
    estimate = psf_from_header(_header(cards), scale)
    assert estimate.fwhm == pytest.approx(fwhm) and estimate.source == source


def test_header_without_a_usable_keyword_says_nothing():
    assert psf_from_header(_header([("SEEING", 99.0, ""), ("FWHM", -1.0, "")]), 0.2) is None
    assert psf_from_header(_header([("FWHM", 4.0, "pixels")]), None) is None  # no scale
    assert psf_from_header(_header([("SEEING", "bad", "")]), 0.2) is None


def test_the_image_header_comes_before_the_primary_header(tmp_path):
    primary = fits.PrimaryHDU()
    primary.header["SEEING"] = (1.4, "arcsec")
    image = fits.ImageHDU(np.zeros((50, 50), np.float32), name="IMAGE")
    image.header["SEEING"] = (0.6, "arcsec")
    assert psf_from_header(ChainMap(image.header, primary.header), 0.2).fwhm == 0.6
    path = tmp_path / "img.fits"
    fits.HDUList([primary, image]).writeto(path)
    read = read_image(path, pixel_scale=0.2)
    assert (read.psf_fwhm, read.psf_source) == (0.6, "header SEEING")


def _moffat_psf(path, fwhm, beta, scale, own_scale=True):
    import galsim

    data = galsim.Moffat(beta=beta, fwhm=fwhm).drawImage(nx=41, ny=41, scale=scale).array
    header = fits.Header()
    if own_scale:
        header.update(CTYPE1="RA---TAN", CTYPE2="DEC--TAN", CRVAL1=150.0, CRVAL2=2.0,
                      CRPIX1=21.0, CRPIX2=21.0, CDELT1=-scale / 3600, CDELT2=scale / 3600)
    fits.PrimaryHDU(data.astype(np.float32), header).writeto(path)
    return path


@pytest.mark.parametrize("beta", [2.5, 4.765])
def test_moffat_psf_image_fwhm_within_3_percent(tmp_path, beta):
    path = _moffat_psf(tmp_path / "psf.fits", 0.7, beta, 0.168)
    estimate = psf_fwhm_of_image(path, pixel_scale=0.5)  # its own WCS scale wins
    assert estimate.fwhm == pytest.approx(0.7, rel=0.03)
    assert estimate.source == "PSF image psf.fits"


def test_psf_image_without_scale_takes_the_images(tmp_path):
    import galsim

    path = _moffat_psf(tmp_path / "psf.fits", 0.3, 3.0, 0.1, own_scale=False)
    assert psf_fwhm_of_image(path, pixel_scale=0.1).fwhm == pytest.approx(0.3, rel=0.03)
    gaussian = galsim.Gaussian(fwhm=0.25).drawImage(nx=31, ny=31, scale=0.05).array
    assert psf_fwhm_of_image(gaussian, pixel_scale=0.05).fwhm == pytest.approx(0.25, rel=0.03)
    with pytest.raises(InputError, match="no pixel scale"):
        psf_fwhm_of_image(path)


def _not_psf_files(folder):
    (folder / "empty.fits").write_bytes(b"")
    (folder / "text.fits").write_text("not a FITS file at all\n" * 200)
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
        [fits.Column("PSF_MASK", "E", array=np.zeros(3))])]).writeto(folder / "table.fits")
    rng = np.random.default_rng(1)
    fits.PrimaryHDU(rng.normal(0, 1, (64, 64)).astype(np.float32)).writeto(folder / "noise.fits")
    flat = np.ones((41, 41), np.float32)
    fits.PrimaryHDU(flat).writeto(folder / "flat.fits")
    return {"empty.fits": "empty", "text.fits": "cannot read PSF image",
            "table.fits": "holds no 2-D image", "noise.fits": "not a PSF image",
            "flat.fits": "not a PSF image", "missing.fits": "does not exist"}


def test_files_that_are_not_psf_images_are_one_line_input_errors(tmp_path):
    for name, message in _not_psf_files(tmp_path).items():
        with pytest.raises(InputError, match=message) as error:
            psf_fwhm_of_image(tmp_path / name, pixel_scale=0.2)
        assert "\n" not in str(error.value)


def _field(psf, n_stars, n_galaxies=6, side=400, scale=0.2, seed=3) -> SkyImage:
    """A field of ``n_stars`` stars of ``psf`` and ``n_galaxies`` PSF-convolved exponential
    discs, on a sky of 10 with unit noise."""
    import galsim

    rng = np.random.default_rng(seed)
    image = galsim.ImageF(side, side, scale=scale)
    for k in range(n_stars + n_galaxies):
        x, y = rng.uniform(20, side - 20, 2)
        if k < n_stars:
            source = psf.withFlux(rng.uniform(2e3, 3e4))
        else:
            disc = galsim.Exponential(half_light_radius=rng.uniform(0.8, 2.0)).shear(
                e=0.3, beta=rng.uniform(0, math.pi) * galsim.radians)
            source = galsim.Convolve(disc, psf).withFlux(rng.uniform(3e3, 4e4))
        stamp = source.drawImage(nx=61, ny=61, scale=scale,
                                 center=galsim.PositionD(x + 1, y + 1))
        bounds = stamp.bounds & image.bounds
        image[bounds] += stamp[bounds]
    data = image.array + rng.normal(0, 1.0, image.array.shape) + 10.0
    return SkyImage.from_array(data, pixel_scale=scale)


@pytest.mark.parametrize("kind, fwhm", [("moffat", 0.8), ("gaussian", 0.6), ("moffat", 1.2)])
def test_stars_of_a_simulated_field_give_its_psf_within_5_percent(kind, fwhm):
    import galsim

    psf = galsim.Moffat(beta=3.0, fwhm=fwhm) if kind == "moffat" else galsim.Gaussian(fwhm=fwhm)
    estimate = psf_fwhm_from_stars(_field(psf, n_stars=15))
    assert estimate.fwhm == pytest.approx(fwhm, rel=0.05)
    n = int(estimate.source.split()[2])
    assert estimate.source == f"measured from {n} stars" and n >= 3


def test_too_few_stars_are_refused_with_the_reason():
    import galsim

    with pytest.raises(InputError, match=r"only [0-2] usable star\(s\).*3 needed") as error:
        psf_fwhm_from_stars(_field(galsim.Moffat(beta=3.0, fwhm=0.8), n_stars=2))
    assert "--psf-fwhm" in str(error.value) and "\n" not in str(error.value)


def test_read_image_takes_the_given_fwhm_then_the_psf_image_then_stars_then_the_header(
        tmp_path):
    import galsim

    field = _field(galsim.Moffat(beta=3.0, fwhm=0.8), n_stars=15)
    path = tmp_path / "field.fits"
    header = fits.Header()
    header["SEEING"] = (1.5, "arcsec")
    header["PIXSCALE"] = 0.2
    fits.PrimaryHDU(field.data, header).writeto(path)
    psf = _moffat_psf(tmp_path / "psf.fits", 0.7, 3.0, 0.2, own_scale=False)

    def known(**options):
        image = read_image(path, **options)
        return round(image.psf_fwhm, 2), image.psf_source

    assert known() == (1.5, "header SEEING")
    assert known(psf="stars")[0] == pytest.approx(0.8, abs=0.04)
    assert known(psf=str(psf)) == (0.7, "PSF image psf.fits")
    assert known(psf=str(psf), psf_fwhm=0.95) == (0.95, "given")


@pytest.fixture(scope="module")
def bundle(tiny_bundle_factory):
    return str(tiny_bundle_factory())


@pytest.fixture(scope="module")
def images(tmp_path_factory, write_galaxies):
    return write_galaxies(tmp_path_factory.mktemp("images"), 2)


def _batch(images, out, bundle, *options) -> int:
    return main(["--batch", *map(str, images), "--out", str(out), "--model", bundle,
                 "--samples", "4", "--workers", "1", "--quiet", *options])


def test_psf_options_reach_the_catalogue_columns(tmp_path, images, bundle, capsys):
    given = tmp_path / "given.h5"
    assert _batch(images, given, bundle, "--psf-fwhm", "0.9") == 0
    table = read_catalogue(given)
    assert np.allclose(table["psf_fwhm_arcsec"], 0.9) and list(table["psf_source"]) == [
        "given", "given"]
    assert str(table["psf_fwhm_arcsec"].unit) == "arcsec"
    assert _batch(images, given, bundle, "--psf-fwhm", "1.1", "--resume") == 1
    assert "--psf-fwhm 0.9 (now 1.1)" in capsys.readouterr().err

    psf = _moffat_psf(tmp_path / "psf.fits", 0.75, 3.0, 0.168)
    from_image = tmp_path / "image.h5"
    assert _batch(images, from_image, bundle, "--psf", str(psf)) == 0
    table = read_catalogue(from_image)
    assert np.allclose(table["psf_fwhm_arcsec"], 0.75, rtol=0.03)
    assert set(table["psf_source"]) == {"PSF image psf.fits"}

    unknown = tmp_path / "unknown.h5"  # write_galaxies' cutouts record no PSF
    assert _batch(images, unknown, bundle) == 0
    table = read_catalogue(unknown)
    assert np.isnan(table["psf_fwhm_arcsec"]).all() and set(table["psf_source"]) == {""}


@pytest.mark.parametrize("options, message", [
    (["--psf", "{bad}"], "PSF image noise.fits is not one point source"),
    (["--psf", "{missing}"], "PSF image missing.fits does not exist"),
    (["--psf-fwhm", "50"], "--psf-fwhm 50 is not a PSF's FWHM"),
    (["--psf-fwhm", "0"], "must be positive"),
    (["--psf-fwhm", "0.8", "--psf", "stars"], "give --psf-fwhm or --psf, not both"),
])
def test_bad_psf_options_exit_1_with_one_line_and_write_nothing(
        tmp_path, images, bundle, capsys, options, message):
    _not_psf_files(tmp_path)
    options = [o.format(bad=tmp_path / "noise.fits", missing=tmp_path / "missing.fits")
               for o in options]
    out = tmp_path / "cat.h5"
    try:
        code = _batch(images, out, bundle, *options)
    except SystemExit as exit_:  # argparse's own refusals
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 1 and message in err and err.count("\n") == 1
    assert not out.exists()


@pytest.mark.gui
def test_batch_dialog_passes_the_psf_fwhm_and_the_panel_shows_its_source(
        qtbot, gui_settings, tmp_path, images, bundle):
    from galaxy_inspector.catalogue import stored_measurement
    from galaxy_inspector.gui.batch_dialog import BatchDialog
    from galaxy_inspector.gui.posterior_panel import PosteriorPanel
    from galaxy_inspector.viewer.tasks import GalaxyAnalysis

    dialog = BatchDialog("")
    qtbot.addWidget(dialog)
    assert dialog.options().psf_fwhm is None
    dialog.psf_fwhm.setValue(0.85)
    assert dialog.options().psf_fwhm == pytest.approx(0.85)

    out = tmp_path / "cat.h5"
    assert _batch(images[:1], out, bundle, "--psf-fwhm", "0.85", "--save-samples") == 0
    panel = PosteriorPanel()
    qtbot.addWidget(panel)
    panel.show_analysis(GalaxyAnalysis(stored_measurement(out, 0), str(images[0]), "tiny", ()))
    assert "PSF:</b> FWHM 0.85″ (given)" in panel.flags_text.text()
