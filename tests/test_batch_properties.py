"""Property models in the engine, ``--batch`` and the catalogue, with bundles trained here.

Two tiny bundles are trained through the bring-your-own-labels command (seconds): a flux model
on g, r, i FITS images with a redshift (CNN + LightGBM, so it needs a redshift per galaxy) and a
display model on colour PNG cutouts (CNN). They run beside a tiny morphology bundle on a 3-band
FITS cube listed in a table with redshifts, and on a JPEG.
"""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from galaxy_inspector.batch import BatchOptions, run_batch
from galaxy_inspector.catalogue import property_errors, read_catalogue
from galaxy_inspector.cli import main
from galaxy_inspector.engine import DISPLAY_REFUSAL, analyse_position, load_models
from galaxy_inspector.errors import BundleError, InputError
from galaxy_inspector.flags import Flag
from galaxy_inspector.io import read_image
from galaxy_inspector.physical_properties.bands import read_bands
from galaxy_inspector.physical_properties.model import PropertyModel
from galaxy_inspector.physical_properties.stamps import PropertySpec, property_stamp
from training.cli import main as train_properties

pytestmark = pytest.mark.slow  # every test uses bundles trained here

BANDS = "gri"
SCALE = 0.168
N_TRAIN = 14


def _galaxy_planes(size, amplitude, seed, colours=(1.0, 1.6, 2.2)):
    """(3, size, size) nJy planes of an elliptical blob, brighter towards i, with noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    blob = np.exp(-0.5 * (xx ** 2 / 9 + yy ** 2 / 4))
    return np.stack([amplitude * c * blob + rng.normal(0, 2.0, blob.shape) for c in colours])


@pytest.fixture(scope="module")
def morphology_bundle(tiny_bundle_factory):
    return str(tiny_bundle_factory())


@pytest.fixture(scope="module")
def flux_bundle(tmp_path_factory, train_property_bundle):
    """CNN+GBM on g, r, i images (one FITS per band) with redshifts: needs a redshift."""
    return train_property_bundle(tmp_path_factory.mktemp("flux"), "flux-mstar",
                                 method="cnn+gbm", redshift=True, target="mstar")


@pytest.fixture(scope="module")
def display_bundle(tmp_path_factory, tiny_cnn_args, run_isolated):
    """CNN on 16x16 colour PNG cutouts at the SDSS scale (card kind "display", bands R, G, B)."""
    root = tmp_path_factory.mktemp("display")
    rng = np.random.default_rng(0)
    rows = ["path,oh12"]
    for k in range(N_TRAIN):
        img = rng.integers(0, 60, (16, 16, 3), dtype=np.uint8)
        img[6:10, 5:11] = 120 + 8 * k
        Image.fromarray(img).save(root / f"c{k}.png")
        rows.append(f"c{k}.png,{8.5 + 0.02 * k}")
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    out = root / "display-oh12"
    assert run_isolated(train_properties, [
        "properties", "--table", str(root / "train.csv"), "--image-column", "path", "--target",
        "oh12", "--method", "cnn", "--pixel-scale", "0.396", "--out", str(out),
        *tiny_cnn_args]) == 0
    return str(out)


def _cube(path, band_names=BANDS, size=100):
    """A 3-band cube (band, y, x) in nJy with the band keywords of training/make_samples.py."""
    header = fits.Header({"BUNIT": "nJy", "PIXSCALE": SCALE})
    header["FILTERS"] = ",".join(band_names)
    for k, band in enumerate(band_names, start=1):
        header[f"BAND{k}"] = band
    fits.PrimaryHDU(_galaxy_planes(size, 300.0, seed=99).astype(np.float32), header).writeto(path)
    return path


def _table(folder, cube, redshifts):
    lines = ["path,id,x,y,z"] + [f"{cube.name},row{k},{49.5 + k},{49.5 - k},{'' if z is None else z}"
                                 for k, z in enumerate(redshifts)]
    (folder / "targets.csv").write_text("\n".join(lines) + "\n")
    return folder / "targets.csv"


def test_cube_table_with_redshifts_gives_property_columns_and_nan_without_redshift(
        tmp_path, morphology_bundle, flux_bundle, capsys):
    table = _table(tmp_path, _cube(tmp_path / "cube.fits"), [0.06, 0.1, None])
    out = tmp_path / "cat.h5"
    code = main(["--batch", str(table), "--out", str(out), "--model", morphology_bundle,
                 "--model", flux_bundle, "--samples", "12", "--workers", "1",
                 "--save-samples"])
    assert code == 2  # finished, but one row lacks its property prediction
    err = capsys.readouterr().err
    assert "3 done (1 without some model's columns), 0 failed" in err
    rows = {r["id"]: r for r in read_catalogue(out)}
    assert all(r["status"] == "ok" and np.isfinite(r["bt_median"]) for r in rows.values())
    for ident in ("row0", "row1"):
        r = rows[ident]
        assert r["property_error"] == ""
        assert np.isfinite([r[f"mstar_{s}"] for s in ("mode", "median", "mean", "lo68",
                                                       "hi68", "lo997", "hi997")]).all()
        assert r["mstar_lo997"] <= r["mstar_lo68"] <= r["mstar_hi68"] <= r["mstar_hi997"]
    assert rows["row0"]["redshift"] == 0.06
    missing = rows["row2"]
    assert np.isnan(missing["redshift"]) and np.isnan(missing["mstar_mean"])
    assert property_errors(missing["property_error"])["flux-mstar"].startswith(
        "needs a redshift: row 2 of targets.csv has no finite value")
    with h5py.File(out) as f:
        models = json.loads(f.attrs["models"])
        assert [m["task"] for m in models] == ["morphology", "properties"]
        assert models[1]["sha256"] == PropertyModel(flux_bundle).bundle.sha256
        assert json.loads(f.attrs["property_parameters"]) == ["mstar"]
        assert f.attrs["demo_models"] == "" and f["posterior_samples"].shape == (3, 12, 3)
        draws = f["property_samples/mstar"][:]
    assert draws.shape == (3, 12) and np.isfinite(draws[:2]).all() and np.isnan(draws[2]).all()
    np.testing.assert_allclose(np.median(draws[:2], axis=1),
                               [rows["row0"]["mstar_median"], rows["row1"]["mstar_median"]],
                               rtol=1e-5)


def test_cube_rows_match_predicting_the_planes_directly(tmp_path, flux_bundle):
    """The stamps the batch builds are the cube's g, r, i planes around (x, y), in order."""
    cube = _cube(tmp_path / "cube.fits", size=16)
    table = _table(tmp_path, cube, [0.08])
    lines = table.read_text().splitlines()
    table.write_text(lines[0] + "\n" + lines[1].replace("49.5,49.5", "7.5,7.5") + "\n")
    run_batch([table], tmp_path / "cat.h5", BatchOptions(model=flux_bundle, n_samples=20))
    (row,) = read_catalogue(tmp_path / "cat.h5")
    model = PropertyModel(flux_bundle)
    expected = model.predict(fits.getdata(cube)[None], redshift=[0.08], n_samples=20,
                             seed=0).catalogue_columns()
    assert row["status"] == "ok" and "bt_median" not in row.colnames
    assert row["mstar_mean"] == pytest.approx(expected["mstar_mean"][0], rel=1e-5)


def test_wrong_bands_and_property_only_rows_without_prediction_are_errors(
        tmp_path, morphology_bundle, flux_bundle, display_bundle):
    table = _table(tmp_path, _cube(tmp_path / "uzy.fits", band_names="uzy"), [0.1])
    run_batch([table], tmp_path / "mixed.h5", BatchOptions(
        model=[morphology_bundle, flux_bundle], n_samples=8))
    (row,) = read_catalogue(tmp_path / "mixed.h5")
    assert row["status"] == "ok" and np.isfinite(row["bt_mean"]) and np.isnan(row["mstar_mean"])
    assert "reads bands g, r, i but uzy.fits has u, z, y" in property_errors(
        row["property_error"])["flux-mstar"]
    # Property models alone: a row none of them can predict is a failed input.
    result = run_batch([tmp_path / "uzy.fits"], tmp_path / "only.h5", BatchOptions(
        model=[flux_bundle, display_bundle], n_samples=8))
    assert (result.done, result.failed) == (0, 1)
    (row,) = read_catalogue(tmp_path / "only.h5")
    assert row["status"] == "error" and "bt_mean" not in row.colnames
    assert "reads colour JPEG/PNG cutouts" in row["error"] and "u, z, y" in row["error"]


def test_jpeg_with_a_display_bundle_reads_the_rgb_channels_y_up(
        tmp_path, morphology_bundle, display_bundle):
    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 50, (48, 48, 3), dtype=np.uint8)
    rgb[20:26, 18:30] = (200, 150, 90)
    rgb[30:34, 22:26] = (40, 220, 40)  # asymmetric in y: a flip would change the stamp
    Image.fromarray(rgb).save(tmp_path / "cutout.jpg", quality=95)
    # x, y are 0-based with y growing upwards (FITS convention): row 12 from the bottom.
    (tmp_path / "t.csv").write_text("path,x,y\ncutout.jpg,20.5,12.5\n")
    out = tmp_path / "cat.h5"
    result = run_batch([tmp_path / "t.csv"], out, BatchOptions(
        model=[morphology_bundle, display_bundle], n_samples=30))
    # The morphology model (not made for display images) refuses the JPEG, the display
    # property model predicts it: an ok row without morphology columns, saying why.
    assert (result.done, result.failed, result.partial) == (1, 0, 1)
    (row,) = read_catalogue(out)
    assert row["status"] == "ok" and row["error"] == DISPLAY_REFUSAL
    assert np.isnan(row["bt_mean"]) and row["label"] == ""
    assert row["flags"] & Flag.NONLINEAR_IMAGE and np.isfinite(row["oh12_mean"])
    decoded = np.asarray(Image.open(tmp_path / "cutout.jpg").convert("RGB"), np.float32)
    expected = np.flipud(decoded)[5:21, 13:29].transpose(2, 0, 1)
    model = PropertyModel(display_bundle)
    spec = PropertySpec.of(model)
    assert spec.kind == "display" and spec.bands == ("R", "G", "B")
    stamp, _ = property_stamp(read_bands(tmp_path / "cutout.jpg", spec.bands, "display"),
                              20.5, 12.5, spec)
    np.testing.assert_array_equal(stamp, expected)
    assert not np.array_equal(stamp, decoded[5:21, 13:29].transpose(2, 0, 1))
    columns = model.predict(expected[None], n_samples=30, seed=0).catalogue_columns()
    assert row["oh12_mean"] == pytest.approx(columns["oh12_mean"][0], rel=1e-7)


def test_demo_bundles_are_named_in_the_catalogue(tmp_path, display_bundle):
    demo = tmp_path / "demo-bundle"
    shutil.copytree(display_bundle, demo)
    card = json.loads((demo / "card.json").read_text())
    (demo / "card.json").write_text(json.dumps({**card, "name": "demo-oh12", "demo": True,
                                                "synthetic_training_data": True}))
    Image.fromarray(np.full((32, 32, 3), 30, np.uint8)).save(tmp_path / "flat.png")
    result = run_batch([tmp_path / "flat.png"], tmp_path / "cat.h5",
                       BatchOptions(model=str(demo), n_samples=8))
    assert any("demo-oh12" in note and "synthetic labels" in note for note in result.notes)
    table = read_catalogue(tmp_path / "cat.h5")
    assert table.meta["DEMOMODS"] == "demo-oh12" and "not measurements" in table.meta["DEMOWARN"]
    assert "DEMO" in table["oh12_mean"].description


def test_analyse_position_returns_property_predictions_beside_the_morphology(
        tmp_path, morphology_bundle, flux_bundle):
    morphology, properties = load_models([morphology_bundle, flux_bundle])
    image = read_image(_cube(tmp_path / "cube.fits"), plane=0)
    plain = analyse_position(image, 49.5, 49.5, morphology, n_samples=10)
    assert plain.properties == {}  # the old call is unchanged
    m = analyse_position(image, 49.5, 49.5, morphology, n_samples=10,
                         property_models=properties, redshift=0.07)
    (prediction,) = m.properties.values()
    assert prediction.error == "" and prediction.samples.shape == (10, 1)
    assert np.isfinite(prediction.summary["mstar_mean"]) and np.isfinite(m.summary["bt_mean"])
    no_z = analyse_position(image, 49.5, 49.5, morphology, n_samples=10,
                            property_models=properties)
    (prediction,) = no_z.properties.values()
    assert "needs a redshift" in prediction.error and np.isnan(prediction.summary["mstar_mean"])


def test_model_combinations_that_cannot_work_are_refused(tmp_path, morphology_bundle,
                                                         flux_bundle, display_bundle):
    with pytest.raises(BundleError, match="two morphology models"):
        load_models([morphology_bundle, morphology_bundle])

    def edited_copy(source, name, edit):
        folder = tmp_path / name
        shutil.copytree(source, folder)
        card = json.loads((folder / "card.json").read_text())
        edit(card)
        (folder / "card.json").write_text(json.dumps(card))
        return folder

    same_target = edited_copy(flux_bundle, "copy", lambda card: card.update(name="mstar-2"))
    with pytest.raises(BundleError, match="both predict 'mstar'"):
        load_models([flux_bundle, same_target])
    same_name = edited_copy(display_bundle, "renamed",
                            lambda card: card.update(name="flux-mstar"))
    with pytest.raises(BundleError, match="both named 'flux-mstar'"):
        load_models([flux_bundle, same_name])
    table = _table(tmp_path, _cube(tmp_path / "cube.fits"), [0.1])
    run_batch([table], tmp_path / "cat.h5", BatchOptions(model=[morphology_bundle, flux_bundle],
                                                         n_samples=8))
    with pytest.raises(InputError, match="resume with the same models"):
        run_batch([table], tmp_path / "cat.h5", BatchOptions(model=morphology_bundle,
                                                             n_samples=8, resume=True))


def test_redshift_column_option_and_help(tmp_path, morphology_bundle, flux_bundle, capsys):
    cube = _cube(tmp_path / "cube.fits")
    (tmp_path / "t.csv").write_text(f"path,zspec\n{cube.name},0.09\n")
    out = tmp_path / "cat.h5"
    assert main(["--batch", str(tmp_path / "t.csv"), "--out", str(out), "--model",
                 flux_bundle, "--redshift-column", "zspec", "--samples", "8", "--quiet",
                 "--workers", "2"]) == 0  # property stamps are cut in worker processes too
    (row,) = read_catalogue(out)
    assert row["redshift"] == 0.09 and np.isfinite(row["mstar_mean"])
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())  # as wrapped at any width
    assert "--redshift-column" in help_text and "repeat to add physical-property" in help_text
