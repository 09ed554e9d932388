"""Batch runs: every input answered exactly once, parallel = serial, resume, --detect."""

from __future__ import annotations

import json

import galsim
import h5py
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from galaxy_inspector.batch import BatchOptions, run_batch
from galaxy_inspector.catalogue import read_catalogue
from galaxy_inspector.errors import InputError
from galaxy_inspector.flags import Flag


@pytest.fixture(scope="module")
def bundle(tiny_bundle_factory):
    return str(tiny_bundle_factory())


def _options(bundle, **kw):
    return BatchOptions(model=bundle, n_samples=16, **kw)


def test_missing_inputs_are_refused_before_anything_is_written(tmp_path, bundle):
    out = tmp_path / "cat.h5"
    with pytest.raises(InputError, match=r"no such file or folder: .*a\.fits \(and 1 more\)"):
        run_batch([tmp_path / "a.fits", tmp_path, tmp_path / "b"], out, _options(bundle))
    assert not out.exists()


def test_mixed_inputs_each_get_one_row_with_aligned_samples(tmp_path, bundle, write_galaxies):
    write_galaxies(tmp_path / "in", 3)
    (tmp_path / "in" / "empty.fits").write_bytes(b"")
    (tmp_path / "in" / "sub").mkdir()
    fits.PrimaryHDU(np.full((40, 40), np.nan)).writeto(tmp_path / "in" / "sub" / "nan.fits")
    (tmp_path / "targets.csv").write_text("path,id\nmissing.fits,missing.fits\n")
    out = tmp_path / "cat.h5"
    result = run_batch([tmp_path / "in", tmp_path / "targets.csv"], out,
                       _options(bundle, save_samples=True))
    assert (result.done, result.failed, result.skipped, result.inputs) == (3, 3, 0, 6)
    table = read_catalogue(out)
    assert len(table) == 6 and len(set(table["input_key"])) == 6
    errors = {row["id"]: row["error"] for row in table if row["status"] == "error"}
    assert "empty" in errors["empty.fits"] and "no such file" in errors["missing.fits"]
    assert "no usable pixels" in errors["nan.fits"]
    ok = table[table["status"] == "ok"]
    assert np.isfinite(ok["bt_median"]).all() and (ok["hdu"] == 1).all()
    assert all("FLUXMAG0" in c for c in ok["calibration"])
    with h5py.File(out) as f:
        samples = f["posterior_samples"][:]
        assert f.attrs["complete"] and f.attrs["model_name"] == "tiny-test-morphology"
    assert samples.shape == (6, 16, 3)
    is_ok = table["status"] == "ok"
    assert np.isfinite(samples[is_ok]).all() and np.isnan(samples[~is_ok]).all()
    np.testing.assert_allclose(np.median(samples[is_ok][:, :, 1], axis=1),
                               ok["re_arcsec_median"], rtol=1e-5)


def test_table_positions_sky_without_wcs_is_an_error_row(tmp_path, bundle, write_galaxies):
    (path,) = write_galaxies(tmp_path, 1)
    Table({"path": [path.name] * 3, "id": ["pix", "sky", "off"], "x": [49.5, np.nan, 900.0],
           "y": [49.5, np.nan, 900.0], "ra": [np.nan, 150.0, np.nan],
           "dec": [np.nan, 2.0, np.nan]}).write(tmp_path / "t.csv")
    run_batch([tmp_path / "t.csv"], tmp_path / "cat.h5", _options(bundle))
    table = read_catalogue(tmp_path / "cat.h5")
    rows = {r["id"]: r for r in table}
    assert rows["pix"]["status"] == "ok" and rows["pix"]["x"] == 49.5
    assert "no celestial WCS" in rows["sky"]["error"]
    assert "outside" in rows["off"]["error"]


def test_existing_output_needs_resume_or_overwrite_and_resume_skips_done(
        tmp_path, bundle, write_galaxies):
    paths = write_galaxies(tmp_path / "in", 4)
    out = tmp_path / "cat.h5"
    run_batch(paths[:2], out, _options(bundle))
    with pytest.raises(InputError, match="already exists"):
        run_batch(paths, out, _options(bundle))
    again = run_batch(paths, out, _options(bundle, resume=True))
    assert (again.done, again.skipped) == (2, 2)
    table = read_catalogue(out)
    assert sorted(table["id"]) == [p.name for p in paths]
    fresh = run_batch(paths[:1], out, _options(bundle, overwrite=True))
    assert fresh.done == 1 and len(read_catalogue(out)) == 1


@pytest.mark.slow
def test_parallel_workers_write_the_same_rows_in_input_order(tmp_path, bundle, write_galaxies):
    paths = write_galaxies(tmp_path / "in", 6)
    run_batch(paths, tmp_path / "one.h5", _options(bundle))
    run_batch(paths, tmp_path / "two.h5", _options(bundle, workers=2))
    one, two = read_catalogue(tmp_path / "one.h5"), read_catalogue(tmp_path / "two.h5")
    assert list(one["id"]) == list(two["id"]) == [p.name for p in paths]
    # Equal up to float rounding (torch runs with fewer threads beside two workers).
    np.testing.assert_allclose(one["re_arcsec_median"], two["re_arcsec_median"], rtol=1e-4)


def test_detect_measures_every_galaxy_of_a_field(tmp_path, bundle):
    image = galsim.ImageF(300, 200, scale=0.168)
    for dx, dy in [(-15, -8), (0, 5), (15, -3)]:
        galsim.Exponential(half_light_radius=0.7, flux=3e4).shift(dx, dy).drawImage(
            image, add_to_image=True)
    data = image.array + np.random.default_rng(0).normal(0, 2.0, image.array.shape)
    header = fits.Header({"BUNIT": "nJy"})
    fits.PrimaryHDU(data.astype(np.float32), header).writeto(tmp_path / "field.fits")
    run_batch([tmp_path / "field.fits"], tmp_path / "cat.h5", _options(bundle, detect=True))
    table = read_catalogue(tmp_path / "cat.h5")
    assert len(table) == 3 and set(table["status"]) == {"ok"}
    assert sorted(table["id"]) == ["field.fits#0", "field.fits#1", "field.fits#2"]
    assert len(set(table["input_key"])) == 1
    xs = sorted(np.round((table["x"] - 149.5) * 0.168))
    assert xs == [-15, 0, 15]
    assert all(f & Flag.EDGE for f in table["flags"][table["x"] < 100])


def test_cancel_keeps_written_rows(tmp_path, bundle, write_galaxies):
    paths = write_galaxies(tmp_path / "in", 5)
    calls = []
    result = run_batch(paths, tmp_path / "cat.h5", _options(bundle, batch_size=1),
                       progress=calls.append, cancel=lambda: True)
    assert result.cancelled and result.done == 1 and len(read_catalogue(tmp_path / "cat.h5")) == 1
    with h5py.File(tmp_path / "cat.h5") as f:
        assert not f.attrs["complete"]


def test_plane_option_picks_the_band_of_a_cube(tmp_path, bundle, write_galaxies):
    (path,) = write_galaxies(tmp_path, 1)
    galaxy = fits.getdata(path, 1)
    cube = np.stack([np.zeros_like(galaxy), galaxy])
    fits.PrimaryHDU(cube, fits.Header({"MAGZP": 27.0})).writeto(tmp_path / "cube.fits")
    run_batch([tmp_path / "cube.fits"], tmp_path / "cat.h5", _options(bundle, plane=1))
    (row,) = read_catalogue(tmp_path / "cat.h5")
    assert row["status"] == "ok" and "plane 1 of a cube" in row["calibration"]
    assert row["snr"] > 50  # the galaxy, not the empty plane 0


def _nj_image(path, offsets_arcsec=(), n=160, seed=4):
    """A FITS image in nJy of exponential galaxies shifted by ``offsets_arcsec`` from its
    centre (0.168″/px assumed: no WCS), with sky noise of 2 nJy."""
    image = galsim.ImageF(n, n, scale=0.168)
    for dx, dy in offsets_arcsec:
        galsim.Exponential(half_light_radius=0.6, flux=3e4).shift(dx, dy).drawImage(
            image, add_to_image=True)
    data = image.array + np.random.default_rng(seed).normal(0, 2.0, image.array.shape)
    fits.PrimaryHDU(data.astype(np.float32), fits.Header({"BUNIT": "nJy"})).writeto(path)
    return path


def test_an_input_without_a_position_is_its_central_source_never_empty_sky(
        tmp_path, bundle, sample_paths):
    _nj_image(tmp_path / "offset.fits", [(1.0, -0.5), (9.0, 9.0)])
    _nj_image(tmp_path / "noise.fits")
    (tmp_path / "t.csv").write_text("path,id,x,y\nnoise.fits,noise-at-centre,79.5,79.5\n")
    out = tmp_path / "cat.h5"
    result = run_batch([tmp_path / "offset.fits", tmp_path / "noise.fits",
                        sample_paths["field_3gal.fits"], tmp_path / "t.csv"], out,
                       _options(bundle, save_samples=True))
    assert (result.done, result.failed) == (1, 3)
    rows = {r["id"]: r for r in read_catalogue(out)}
    galaxy = rows["offset.fits"]  # measured at its own centroid, not at the image centre
    assert galaxy["status"] == "ok" and galaxy["error"] == ""
    assert (galaxy["x"], galaxy["y"]) == pytest.approx((79.5 + 1.0 / 0.168, 79.5 - 0.5 / 0.168),
                                                       abs=0.25)
    advice = "; use --detect to measure every source in the image"
    assert rows["noise.fits"]["error"] == ("no source detected within 3.0 arcsec of the "
                                           f"image centre{advice}")
    assert rows["field_3gal.fits"]["error"] == (
        "no source within 3.0 arcsec of the image centre (the nearest of 3 sources within "
        f"13 arcsec lies 6.5 arcsec away){advice}")
    # A position given is measured there, but empty sky is not a galaxy.
    at_centre = rows["noise-at-centre"]
    assert at_centre["status"] == "error" and at_centre["x"] == 79.5
    assert at_centre["error"].startswith("no galaxy detected: S/N ")
    assert at_centre["error"].endswith(" within 2 R_e") and at_centre["snr"] < 3
    assert np.isnan(at_centre["bt_median"]) and at_centre["label"] == ""
    with h5py.File(out) as f:
        samples = f["posterior_samples"][:]
    ok = np.array([r["status"] == "ok" for r in read_catalogue(out)])
    assert np.isfinite(samples[ok]).all() and np.isnan(samples[~ok]).all()


def test_rows_flagged_outside_training_keep_the_posterior_but_lose_the_label(
        tmp_path, tiny_bundle_factory, write_galaxies):
    (path,) = write_galaxies(tmp_path / "in", 1)
    always = {"re_small_arcsec": 1000.0}  # a label for every row the flags allow one
    labelled = tiny_bundle_factory(tmp_path / "labelled", labels=always)
    strict = tiny_bundle_factory(tmp_path / "strict", labels=always,
                                 training_ranges={"re_arcsec": [100.0, 200.0]})
    for folder, name in ((labelled, "labelled.h5"), (strict, "strict.h5")):
        run_batch([path], tmp_path / name, _options(str(folder)))
    (plain,) = read_catalogue(tmp_path / "labelled.h5")
    (flagged,) = read_catalogue(tmp_path / "strict.h5")
    # (the untrained model's B/T may add a label of its own)
    assert plain["label"].endswith("R_e < 1000″") and not plain["flags"] & Flag.OUTSIDE_TRAINING
    assert flagged["flags"] & Flag.OUTSIDE_TRAINING and flagged["label"] == ""
    assert flagged["status"] == "ok" and np.isfinite(flagged["bt_median"])


def _hst_field(path, scale=0.05, n=256):
    """A faint R_e = 0.3″ galaxy at HST's 0.05″/px, in nJy, the scale in PIXSCALE."""
    galaxy = galsim.Convolve(galsim.Exponential(half_light_radius=0.3, flux=600.0),
                             galsim.Gaussian(fwhm=0.1))
    data = (galaxy.drawImage(nx=n, ny=n, scale=scale).array
            + np.random.default_rng(6).normal(0, 1.0, (n, n)))
    fits.PrimaryHDU(data.astype(np.float32),
                    fits.Header({"BUNIT": "nJy", "PIXSCALE": scale})).writeto(path)
    return path


def test_detect_finds_a_small_galaxy_at_hst_scale_and_the_least_area_is_an_option(
        tmp_path, bundle):
    path = _hst_field(tmp_path / "hst.fits")
    run_batch([path], tmp_path / "cat.h5", _options(bundle, detect=True))
    table = read_catalogue(tmp_path / "cat.h5")
    assert list(table["status"]) == ["ok"] and abs(table["x"][0] - 127.5) < 2
    run_batch([path], tmp_path / "strict.h5", _options(bundle, detect=True, detect_min_area=2.0))
    strict = read_catalogue(tmp_path / "strict.h5")
    assert "no galaxy detected" in strict["error"][0] and "--detect-min-area" in strict["error"][0]
    with h5py.File(tmp_path / "strict.h5") as f:
        assert json.loads(f.attrs["settings"])["--detect-min-area"] == 2.0
    with pytest.raises(InputError, match="--detect-min-area"):
        run_batch([path], tmp_path / "bad.h5", _options(bundle, detect=True, detect_min_area=0.0))


def test_pixel_scale_option_replaces_a_wrong_wcs_scale(tmp_path, bundle, write_galaxies):
    """The cutouts are drawn at 0.168″/px; a WCS saying 0.1″/px is overridden by the option,
    and the row's calibration says so."""
    (path,) = write_galaxies(tmp_path / "in", 1)
    with fits.open(path, mode="update") as hdul:
        hdul[1].header.update({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": 150.0,
                               "CRVAL2": 2.0, "CRPIX1": 50.5, "CRPIX2": 50.5,
                               "CD1_1": -0.1 / 3600, "CD2_2": 0.1 / 3600})
    run_batch([path], tmp_path / "wcs.h5", _options(bundle))
    run_batch([path], tmp_path / "given.h5", _options(bundle, pixel_scale=0.168))
    wcs, given = read_catalogue(tmp_path / "wcs.h5"), read_catalogue(tmp_path / "given.h5")
    assert wcs["pixel_scale"][0] == pytest.approx(0.1)
    assert given["pixel_scale"][0] == pytest.approx(0.168) and given["status"][0] == "ok"
    assert "0.168\"/px as given, not the file's 0.1\"/px" in given["calibration"][0]


def test_uncalibrated_rows_are_flagged_and_the_run_notes_it_once(tmp_path, bundle, capsys):
    """Images without a flux calibration are scaled to a nominal sky noise: every row says so
    (flags, calibration) and the command prints one note for the run, not one per galaxy."""
    from galaxy_inspector.cli import main

    rng = np.random.default_rng(7)
    for i in range(3):
        counts = 50 * galsim.Exponential(half_light_radius=0.8, flux=2e3).drawImage(
            nx=100, ny=100, scale=0.168).array + rng.normal(0, 1.0, (100, 100)) + 300
        fits.PrimaryHDU(counts.astype(np.float32),
                        fits.Header({"PIXSCALE": 0.168})).writeto(tmp_path / f"raw{i}.fits")
    inputs = [str(tmp_path / f"raw{i}.fits") for i in range(3)]
    assert main(["--batch", *inputs, "--out", str(tmp_path / "cat.h5"), "--model", bundle,
                 "--samples", "16", "--workers", "1"]) == 0
    table = read_catalogue(tmp_path / "cat.h5")
    assert all(f & Flag.FLUX_UNCALIBRATED and f & Flag.CALIBRATION_GUESSED
               for f in table["flags"])
    assert all("scaled to a sky noise" in c for c in table["calibration"])
    notes = [line for line in capsys.readouterr().err.splitlines()
             if "without a flux calibration" in line]
    assert len(notes) == 1 and notes[0].startswith("note: 3 rows come from images")


def test_sky_subtracted_is_said_in_each_row_refused_for_jpegs_and_kept_by_resume(
        tmp_path, bundle, write_galaxies):
    from PIL import Image

    (cutout,) = write_galaxies(tmp_path / "in", 1)
    jpeg = tmp_path / "in" / "colour.jpg"
    Image.fromarray(np.full((64, 64, 3), 40, np.uint8)).save(jpeg)
    out = tmp_path / "cat.h5"
    run_batch([cutout, jpeg], out, _options(bundle, sky_subtracted=True))
    rows = {row["id"]: row for row in read_catalogue(out)}
    assert rows[cutout.name]["status"] == "ok"
    assert rows[cutout.name]["calibration"].endswith("its sky given as 0")
    assert "--sky-subtracted is for FITS images" in rows["colour.jpg"]["error"]
    with pytest.raises(InputError, match="--sky-subtracted on \\(now not given\\)"):
        run_batch([cutout, jpeg], out, _options(bundle, resume=True))
    run_batch([cutout], tmp_path / "plain.h5", _options(bundle))
    with h5py.File(tmp_path / "plain.h5") as f:  # as a catalogue made before the option
        assert json.loads(f.attrs["settings"])["--sky-subtracted"] is None
    (plain,) = read_catalogue(tmp_path / "plain.h5")
    assert "sky given" not in plain["calibration"]
