"""One prediction path for property bundles: the app and training's evaluation give the same
numbers; the stamps each property model reads; what loaded models share."""

from __future__ import annotations

import json

import numpy as np
import pytest

from galaxy_inspector.errors import BundleError
from galaxy_inspector.io import SkyImage
from galaxy_inspector.models.bundle import OutputSpec, is_demo, model_info
from galaxy_inspector.models.morphology import MorphologyModel
from galaxy_inspector.physical_properties.model import PropertyModel
from galaxy_inspector.physical_properties.predict import NetworkPasses, gaussian_prediction
from galaxy_inspector.physical_properties.stamps import PropertySpec, property_inputs
from training.properties import evaluate as ev
from training.properties import pipelines
from training.properties.cnn import CNNConfig
from training.properties.data import load_survey
from training.properties.survey import SurveyConfig, simulate_survey


@pytest.fixture(scope="module")
def survey(simulated_set):
    return simulated_set(simulate_survey, SurveyConfig(stamp_size=32, chunk=40), n=80, seed=5)


def _survey_data(survey, method):
    if method == "cnn":
        return load_survey(survey, targets=("metallicity", "log_mstar"))
    return load_survey(survey, targets=("ml_g",), bands=["g"])


def _train_recording_evaluation(survey, method, folder):
    """In a child: the ``method`` pipeline's bundle folder and the predictions its evaluation
    made through the shared prediction function."""
    shared = pipelines.gaussian_prediction if method == "cnn" else pipelines.gbm_prediction
    evaluated = []

    def recorded(*args, **kwargs):
        evaluated.append(shared(*args, **kwargs))
        return evaluated[-1]

    setattr(pipelines, shared.__name__, recorded)  # the child's own module, gone with it
    run = pipelines.run_cnn_pipeline if method == "cnn" else pipelines.run_gbm_pipeline
    opts = pipelines.PipelineOptions(
        work_dir=folder / "work", bundle_dir=folder / "bundle", name="tiny", seed=3,
        n_samples=40, cnn=CNNConfig(epochs=1, batch_size=16, widths=[4, 4, 8, 8], hidden=8,
                                    threads=1))
    return run(_survey_data(survey, method), opts), evaluated


@pytest.mark.slow
@pytest.mark.parametrize("method", ["cnn", "cnn+gbm"])
def test_training_reports_the_figures_the_app_computes(survey, tmp_path, method, run_isolated):
    folder, evaluated = run_isolated(_train_recording_evaluation, survey, method, tmp_path)
    (training,) = evaluated
    data = _survey_data(survey, method)
    test = data.part("test")
    model = PropertyModel(folder)
    app = model.predict(test.images, redshift=test.redshift if model.needs_redshift else None,
                        n_samples=40, seed=3)
    np.testing.assert_array_equal(training.point, app.point)
    np.testing.assert_array_equal(training.samples, app.samples)
    metrics = json.loads((folder / "report" / "metrics.json").read_text())
    for j, name in enumerate(model.names):
        assert metrics["coverage"][name] == ev.interval_coverage(app.samples[..., j],
                                                                 test.targets[name])


def test_views_combine_into_one_gaussian_with_the_calibrated_spread():
    # Two galaxies, 8 views, one target: equal views keep the predicted sigma, spread adds.
    means = np.zeros((2, 8, 1), np.float32)
    means[1, :, 0] = [-1, 1] * 4
    log_sigmas = np.full((2, 8, 1), np.log(0.5), np.float32)
    passes = NetworkPasses(None, None, means, log_sigmas, None)
    mu, sigma = passes.gaussian()
    np.testing.assert_allclose(mu[:, 0], [0.0, 0.0], atol=1e-7)
    np.testing.assert_allclose(sigma[:, 0], [0.5, np.sqrt(0.25 + 1.0)], rtol=1e-6)
    spec = OutputSpec("oh", "dex", "identity", scaler_mean=8.5, scaler_std=0.2)
    prediction = gaussian_prediction(passes, [spec], [2.0], n_samples=20000, seed=1)
    np.testing.assert_allclose(prediction.point[:, 0], [8.5, 8.5])
    np.testing.assert_allclose(prediction.samples.std(axis=1)[:, 0],
                               0.2 * 2.0 * sigma[:, 0], rtol=0.03)


def test_property_inputs_give_each_model_its_stamp_or_its_reason():
    yy, xx = np.mgrid[:60, :60] - 29.5
    image = SkyImage.from_array(1e3 * np.exp(-(xx ** 2 + yy ** 2) / 20)
                                + np.random.default_rng(0).normal(0, 2, (60, 60)), 0.168)
    one_band = PropertySpec("one-band", ("g",), "flux", 16, 0.168)
    three_bands = PropertySpec("three-bands", ("g", "r", "i"), "flux", 16, 0.168)
    cache = {}
    rows = property_inputs(image, [(29.5, 29.5), (200.0, 5.0)], [one_band, three_bands],
                           [0, 1], redshift=0.1, photometry={"mag_g": 18.0}, bands_cache=cache)
    (inside_one, inside_three), (outside_one, _) = rows
    assert inside_one.stamp.shape == (1, 16, 16) and not inside_one.error
    assert inside_one.redshift == 0.1 and inside_one.photometry == {"mag_g": 18.0}
    assert inside_three.stamp is None and "an image without a file" in inside_three.error
    assert outside_one.stamp is None and "outside" in outside_one.error
    assert cache["one-band"] == [image] and isinstance(cache["three-bands"], str)


def test_loaded_models_check_their_task_and_refuse_a_card_their_network_cannot_take(
        tiny_bundle_factory, tmp_path):
    folder = tiny_bundle_factory(tmp_path / "tiny", demo=True)
    model = MorphologyModel(folder, device="cpu")
    assert model.names == ["bt", "re_arcsec", "flux_njy"] and model.stamp_size == 128
    assert is_demo(model) and model_info(model)["outputs"] == model.names
    with pytest.raises(BundleError, match="not a physical-properties model"):
        PropertyModel(folder)
    card = json.loads((folder / "card.json").read_text())
    card["hyperparameters"] = {"no_such_option": 1}
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(BundleError, match="tiny/card.json: hyperparameters.no_such_option is not"):
        MorphologyModel(folder, device="cpu")
