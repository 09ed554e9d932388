"""The display-image morphology model (issue 16): a simulated SkyServer-style JPEG is measured
by the shipped display bundle (B/T and R_e, no flux), a flux model still refuses it, the
simulation is seeded, and the training commands run end to end on a tiny set."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from galaxy_inspector.batch import BatchOptions, run_batch
from galaxy_inspector.catalogue import read_catalogue
from galaxy_inspector.engine import (
    DEFAULT_DISPLAY_MODEL,
    DEFAULT_MODEL,
    DISPLAY_REFUSAL,
    StampSpec,
    analyse_position,
    default_model_for,
    load_model,
)
from galaxy_inspector.flags import Flag
from galaxy_inspector.io import read_image
from galaxy_inspector.viewer.tasks import morphology_model_for
from training.display import (
    DisplayConfig,
    DisplayTrainConfig,
    calibrate_display,
    draw_display_parameters,
    evaluate_display,
    render_jpeg,
    simulate_display,
    train_display,
)


@pytest.fixture(scope="module")
def skyserver_jpeg(tmp_path_factory):
    """A GalSim gri galaxy (r = 15, R_e about 3.5″) drawn through make_lupton_rgb into a JPEG."""
    rng = np.random.default_rng(4)
    p = {**draw_display_parameters(rng), "r_mag": 15.0, "dx": 0.0, "dy": 0.0}
    path = tmp_path_factory.mktemp("jpeg") / "galaxy.jpg"
    path.write_bytes(render_jpeg(p, DisplayConfig(), rng))
    return path, p


@pytest.fixture(scope="module")
def display_model():
    return load_model(DEFAULT_DISPLAY_MODEL)


def test_the_shipped_display_bundle_says_kind_display_and_predicts_no_flux(display_model):
    card = display_model.bundle.card
    assert card["input"]["kind"] == "display" and card["posterior"]["calibrated"]
    assert display_model.names == ["bt", "re_arcsec"]
    assert display_model.pixel_scale == pytest.approx(0.396)
    assert StampSpec.of(display_model).display and not StampSpec.of(load_model()).display
    # Its report holds the held-out coverage the README quotes, within 5 points of each level.
    for levels in card["test"]["coverage"].values():
        for level, covered in levels.items():
            assert abs(covered - float(level)) <= 0.05


def test_a_skyserver_jpeg_is_measured_by_the_display_model(skyserver_jpeg, display_model):
    path, truth = skyserver_jpeg
    image = read_image(path)
    m = analyse_position(image, 63.5, 63.5, display_model, n_samples=200)
    assert m.error == "" and m.names == ["bt", "re_arcsec"]
    assert 0.0 <= m.summary["bt_mode"] <= 1.0
    assert m.summary["re_arcsec_lo997"] < truth["re_arcsec"] < m.summary["re_arcsec_hi997"]
    assert m.flags & Flag.NONLINEAR_IMAGE and np.isfinite(m.snr) and m.snr > 10


def test_a_flux_model_still_refuses_the_same_jpeg(skyserver_jpeg):
    m = analyse_position(read_image(skyserver_jpeg[0]), 63.5, 63.5, load_model(), n_samples=20)
    assert m.error == DISPLAY_REFUSAL and DEFAULT_DISPLAY_MODEL in DISPLAY_REFUSAL
    assert m.names == [] and m.flags & Flag.NONLINEAR_IMAGE


def test_a_batch_of_jpegs_without_a_model_uses_the_display_model(skyserver_jpeg, tmp_path):
    path = skyserver_jpeg[0]
    out = tmp_path / "cat.h5"
    run_batch([path], out, BatchOptions(n_samples=50, save_samples=True))
    table = read_catalogue(out)
    (row,) = table
    assert row["status"] == "ok" and np.isfinite(row["bt_mode"]) and np.isfinite(row["re_arcsec_mode"])
    # The catalogue keeps the contract's flux columns (DESIGN.md), NaN: a JPEG holds no flux.
    assert np.isnan(row["flux_njy_mode"]) and np.isnan(row["flux_njy_hi997"])
    with h5py.File(out) as f:
        assert DEFAULT_DISPLAY_MODEL in f.attrs["models"]
        stored = f["posterior_samples"][0]
    assert np.isfinite(stored[:, :2]).all() and np.isnan(stored[:, 2]).all()
    # A FITS input among them keeps the flux model for the whole catalogue.
    assert default_model_for([path]) == DEFAULT_DISPLAY_MODEL
    assert default_model_for([path, "cutout.fits"]) == DEFAULT_MODEL


def test_the_gui_measures_a_jpeg_with_the_display_model_while_the_default_is_chosen(
        skyserver_jpeg):
    image = read_image(skyserver_jpeg[0])
    assert morphology_model_for(image, DEFAULT_MODEL) == DEFAULT_DISPLAY_MODEL
    assert morphology_model_for(image, None) == DEFAULT_DISPLAY_MODEL
    assert morphology_model_for(image, "bundles/mine") == "bundles/mine"


def test_the_display_simulation_is_seeded(tmp_path, run_isolated):
    rng_a, rng_b = np.random.default_rng(9), np.random.default_rng(9)
    p = draw_display_parameters(rng_a)
    assert p == draw_display_parameters(rng_b)
    assert render_jpeg(p, DisplayConfig(), rng_a) == render_jpeg(p, DisplayConfig(), rng_b)
    config = DisplayConfig(chunk=2)
    for name in ("a.h5", "b.h5"):
        run_isolated(simulate_display, tmp_path / name, 3, 5, config=config)
    with h5py.File(tmp_path / "a.h5") as a, h5py.File(tmp_path / "b.h5") as b:
        assert np.array_equal(a["images"][:], b["images"][:])
        assert np.array_equal(a["re_arcsec"][:], b["re_arcsec"][:])
        assert a["images"].shape == (3, 128, 128) and 0 <= a["images"][:].min()
        assert a["images"][:].max() <= 255 and a.attrs["jpeg_quality"] == 75


@pytest.mark.slow
def test_display_training_calibration_and_evaluation_run_on_a_tiny_set(tmp_path, run_isolated):
    data = tmp_path / "set.h5"
    run_isolated(simulate_display, data, 4, 1)
    bundle = run_isolated(train_display, data, data, tmp_path / "run",
                          DisplayTrainConfig(epochs=1, batch_size=2))
    card = run_isolated(calibrate_display, bundle, data, 4, 20)
    assert card["posterior"]["calibrated"] and len(card["posterior"]["sigma_scale"]) == 2
    report = run_isolated(evaluate_display, bundle, data, 30)
    assert set(report["coverage"]) == {"bt", "re_arcsec"}
    assert (bundle / "report" / "report.md").exists()
    model = load_model(bundle)
    assert model.bundle.card["input"]["kind"] == "display" and model.names == ["bt", "re_arcsec"]


@pytest.mark.gui
def test_clicking_a_jpeg_in_the_gui_measures_it_with_the_display_model(
        qtbot, make_main_window, sample_paths, wait_for_analysis):
    window = make_main_window()
    window.open_file(str(sample_paths["sdss_gri.jpg"]))
    qtbot.waitUntil(lambda: window.state.image is not None or bool(window.state.message),
                    timeout=30_000)
    assert DEFAULT_DISPLAY_MODEL in window.model_label.text()
    window.image_view.click_at(63.5, 63.5)
    analysis = wait_for_analysis(window)
    assert analysis.model_name == DEFAULT_DISPLAY_MODEL and analysis.measurement.error == ""
    assert analysis.measurement.names == ["bt", "re_arcsec"]


def test_the_display_model_labels_display_images_and_the_flux_model_would_not(sample_paths):
    """Its thresholds were chosen on display images: their stretch withholds no label from
    it (a flux model's posterior of one would get none, and is refused anyway)."""
    from galaxy_inspector.engine import DEFAULT_DISPLAY_MODEL, analyse_position, load_model
    from galaxy_inspector.flags import Flag
    from galaxy_inspector.io import read_image
    from galaxy_inspector.labels import qualitative_label, thresholds_from_card

    model = load_model(DEFAULT_DISPLAY_MODEL)
    m = analyse_position(read_image(sample_paths["sdss_gri.jpg"]), 63.5, 63.5, model, seed=1)
    assert m.flags & Flag.NONLINEAR_IMAGE and not m.flags & (Flag.LOW_SNR | Flag.OUTSIDE_TRAINING)
    expected = qualitative_label(m.summary["bt_mode"], m.summary["re_arcsec_mode"],
                                 thresholds_from_card(model.bundle.card), 0)
    assert m.label == expected and expected
