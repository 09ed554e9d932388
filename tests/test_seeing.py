"""Seeing conditioning: a morphology network that reads the PSF's FWHM, or that it is unknown
(``MorphologyNet(psf_input=...)``), added to a trained network as a head-only stage, and the
engine telling it the PSF a stamp holds in the model's frame (``domain.psf_seen_by_model``)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from galaxy_inspector.domain import PSF_TARGET_FACTOR, psf_seen_by_model
from galaxy_inspector.engine import measure_stamps, stamp_for
from galaxy_inspector.errors import BundleError
from galaxy_inspector.flags import Flag
from galaxy_inspector.io.image import SkyImage
from galaxy_inspector.models.bundle import load_bundle, save_bundle
from galaxy_inspector.models.morphology import MorphologyModel, spread_factors
from galaxy_inspector.models.morphology_network import MorphologyNet, gaussian_nll_ldl
from training.train import PSF_INPUT, _warm_start, psf_given

RANGE = (0.6, 1.6)


def _psf_network(bundle) -> MorphologyNet:
    hyper = {**bundle.card["hyperparameters"], "psf_input": dict(PSF_INPUT)}
    net = MorphologyNet(**hyper)
    _warm_start(net, bundle)
    return net.eval()


def _stamps(n=3, size=128, seed=0) -> torch.Tensor:
    x = torch.from_numpy(np.random.default_rng(seed).normal(0, 3, (n, 1, size, size))
                         .astype(np.float32))
    c = size // 2
    x[..., c - 4:c + 4, c - 4:c + 4] += torch.tensor([30.0, 300.0, 3000.0][:n]).reshape(n, 1, 1, 1)
    return x


def test_a_psf_input_added_to_a_trained_network_starts_as_that_network(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    plain = MorphologyModel(tiny_bundle).network
    net = _psf_network(bundle)
    x = _stamps()
    with torch.no_grad():
        before = plain(x)
        for psf in (None, torch.tensor([0.7, math.nan, 1.5])):
            assert torch.equal(net(x, psf_fwhm=psf), before)
    assert net.head_hidden.in_features == plain.head_hidden.in_features + 2


def test_the_head_reads_known_and_the_scaled_fwhm():
    net = MorphologyNet(stamp_size=32, crop_size=16, channels=[4, 4, 8, 8], hidden=8,
                        psf_input={"centre": 1.0, "scale": 0.25})
    like = torch.zeros(1)
    columns = net.psf_columns(torch.tensor([0.5, math.nan, 1.0]), 3, like)
    assert columns.tolist() == [[1.0, -2.0], [0.0, 0.0], [1.0, 0.0]]
    assert net.psf_columns(None, 2, like).tolist() == [[0.0, 0.0], [0.0, 0.0]]
    assert net.psf_columns(1.5, 2, like).tolist() == [[1.0, 2.0], [1.0, 2.0]]


def test_a_head_only_stage_moves_the_head_and_nothing_of_the_trunk(tiny_bundle):
    net = _psf_network(load_bundle(tiny_bundle))
    net.freeze_trunk()
    net.train()
    trunk = {k: v.clone() for k, v in net.state_dict().items() if not k.startswith("head_")}
    optimiser = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-2)
    head_before = net.head_hidden.weight.detach().clone()
    for _ in range(3):
        loss = gaussian_nll_ldl(net(_stamps(), psf_fwhm=torch.tensor([0.7, 1.0, math.nan])),
                                torch.zeros(3, 3)).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    after = net.state_dict()
    for k, v in trunk.items():  # weights and batch-norm statistics alike
        assert torch.equal(after[k], v), k
    assert not torch.equal(net.head_hidden.weight, head_before)
    assert not torch.equal(net.head_hidden.weight[:, -2:], torch.zeros_like(head_before[:, :2]))


def test_the_psf_given_in_training_is_sometimes_withheld_and_never_exact():
    true = np.full(20000, 0.9)
    given = psf_given(true, np.random.default_rng(0))
    assert np.isnan(given).mean() == pytest.approx(0.3, abs=0.02)
    known = given[np.isfinite(given)]
    assert np.std(np.log(known)) == pytest.approx(0.03, rel=0.05)
    assert np.isfinite(psf_given(true, np.random.default_rng(0), unknown_fraction=0.0)).all()
    # A realism set says per stamp whether its PSF counts as known (simulate --psf-known).
    told = psf_given(true[:4], np.random.default_rng(0), known=np.array([1, 0, 1, 0]))
    assert np.isfinite(told).tolist() == [True, False, True, False]


@pytest.mark.parametrize("fwhm, binning, flags, seen", [
    (0.9, 1.0, 0, 0.9),                                  # as it is
    (2.4, 2.0, int(Flag.RESCALED), 1.2),                 # binned: k times sharper
    (0.1, 1.0, int(Flag.PSF_MATCHED), PSF_TARGET_FACTOR * RANGE[0]),  # matched to the target
    (math.nan, 1.0, 0, math.nan),                        # unknown
    (0.12, 1.0, int(Flag.PSF_MATCHED | Flag.PSF_GUESSED), math.nan),  # a guess is not known
    (2.5, 1.0, int(Flag.OUTSIDE_TRAINING), RANGE[1]),    # clipped to what was trained
])
def test_the_psf_the_model_sees(fwhm, binning, flags, seen):
    assert psf_seen_by_model(fwhm, binning, flags, RANGE) == pytest.approx(seen, nan_ok=True)


@pytest.fixture
def psf_bundle(tiny_bundle, tmp_path):
    """The tiny bundle with a PSF input whose weights matter, trained on 0.6-1.6″ PSFs."""
    bundle = load_bundle(tiny_bundle)
    net = _psf_network(bundle)
    with torch.no_grad():
        net.head_hidden.weight[:, -2:] = torch.randn(net.head_hidden.out_features, 2)
    card = copy.deepcopy(bundle.card)
    card["hyperparameters"]["psf_input"] = dict(PSF_INPUT)
    card["training_ranges"]["psf_fwhm_arcsec"] = list(RANGE)
    for key in ("format", "weights"):
        card.pop(key, None)
    tensors = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    return save_bundle(tmp_path / "psf", card, tensors)


def test_the_engine_tells_a_conditioned_model_the_psf_its_stamp_holds(psf_bundle, monkeypatch):
    model = MorphologyModel(psf_bundle)
    assert model.takes_psf
    data = np.random.default_rng(1).normal(0, 2.7, (200, 200)).astype(np.float32)
    data[95:105, 95:105] += 50.0
    told = []
    predict = model.predict

    def spy(*args, **kwargs):
        told.append(kwargs["psf_fwhm"])
        return predict(*args, **kwargs)

    monkeypatch.setattr(model, "predict", spy)
    rows = {}
    for fwhm in (0.8, 1.4, None):
        image = SkyImage.from_array(data, pixel_scale=0.168, psf_fwhm=fwhm,
                                    psf_source="given" if fwhm else "")
        rows[fwhm] = measure_stamps([stamp_for(image, 99.5, 99.5, model)], model,
                                    n_samples=64)[0]
    assert told[0] == [pytest.approx(0.8)] and told[1] == [pytest.approx(1.4)]
    assert math.isnan(told[2][0])
    assert rows[0.8].psf_told == pytest.approx(0.8) and math.isnan(rows[None].psf_told)
    # Same pixels, another seeing: another posterior.
    assert not np.array_equal(rows[0.8].samples, rows[1.4].samples)
    assert not np.array_equal(rows[0.8].samples, rows[None].samples)


def test_a_card_with_a_bad_psf_input_is_refused(psf_bundle, tmp_path):
    bundle = load_bundle(psf_bundle)
    card = copy.deepcopy(bundle.card)
    card["hyperparameters"]["psf_input"] = {"centre": 1.0, "scale": 0.0}
    for key in ("format", "weights"):
        card.pop(key, None)
    bad = save_bundle(tmp_path / "bad", card, dict(bundle.tensors))
    with pytest.raises(BundleError, match="psf_input"):
        MorphologyModel(bad)


def test_seeing_factors_multiply_the_brightness_factors_of_galaxies_told_the_psf():
    table = {"flux_knots": [0.0, 1.0], "factors": [[1.0, 2.0], [1.0, 1.0]],
             "psf_knots": [0.7, 1.3], "psf_factors": [[0.5, 1.5], [2.0, 2.0]]}
    rows = spread_factors(table, np.array([0.0, 1.0, 0.5]), psf=np.array([0.7, math.nan, 1.0]))
    np.testing.assert_allclose(rows, [[0.5, 2.0], [2.0, 1.0], [1.5, 2.0]])
    np.testing.assert_allclose(spread_factors(table, np.array([1.0])), [[2.0, 1.0]])


def test_cell_factors_replace_the_brightness_factors_of_galaxies_told_the_psf():
    # Bilinear in (brightness, told FWHM) between the cells, constant beyond the outer knots;
    # a galaxy told "unknown" keeps its brightness factors.
    table = {"flux_knots": [0.0, 1.0], "factors": [[1.0, 2.0], [3.0, 3.0]],
             "psf_knots": [0.7, 1.3],
             "psf_flux_factors": [[[0.5, 1.5], [2.5, 3.5]], [[1.0, 1.0], [1.0, 1.0]]]}
    rows = spread_factors(table, np.array([0.0, 1.0, 0.5, 0.5, -4.0, 0.25]),
                          psf=np.array([0.7, 1.3, 1.0, math.nan, 2.0, 0.85]))
    np.testing.assert_allclose(rows[:, 0], [0.5, 3.5, 2.0, 1.5, 1.5, 1.25])
    np.testing.assert_allclose(rows[:, 1], [1.0, 1.0, 1.0, 3.0, 1.0, 1.0])


@pytest.mark.parametrize("extra, ok", [
    ({"psf_knots": [0.7, 1.3], "psf_factors": [[0.9, 1.1]] * 3}, True),
    ({"psf_knots": [1.3, 0.7], "psf_factors": [[0.9, 1.1]] * 3}, False),
    ({"psf_knots": [0.7, 1.3], "psf_flux_factors": [[[0.9, 1.1]]] * 3}, True),
    ({"psf_knots": [0.7, 1.3], "psf_flux_factors": [[0.9, 1.1]] * 3}, False),
    ({"psf_knots": [0.7, 1.3], "psf_flux_factors": [[[0.9, -1.0]]] * 3}, False),
    ({"psf_knots": [0.7, 1.3], "psf_factors": [[0.9, 1.1]] * 3,
      "psf_flux_factors": [[[0.9, 1.1]]] * 3}, False),
])
def test_a_card_with_seeing_factors_loads_and_a_malformed_one_is_refused(psf_bundle, tmp_path,
                                                                         extra, ok):
    bundle = load_bundle(psf_bundle)
    card = copy.deepcopy(bundle.card)
    card["posterior"]["sigma_scale"] = {"flux_knots": [0.0], "factors": [[1.0]] * 3, **extra}
    for key in ("format", "weights"):
        card.pop(key, None)
    folder = save_bundle(tmp_path / "bundle", card, dict(bundle.tensors))
    if ok:
        assert MorphologyModel(folder).sigma_scale["psf_knots"] == extra["psf_knots"]
    else:
        with pytest.raises(BundleError, match="sigma_scale"):
            MorphologyModel(folder)


def test_seeing_factors_on_a_network_that_does_not_read_the_psf_are_refused(tiny_bundle,
                                                                            tmp_path):
    # The brightness factors of such a table were fitted as half of a product: applied alone
    # (the network is never told a PSF) they would be wrong without a word.
    bundle = load_bundle(tiny_bundle)
    card = copy.deepcopy(bundle.card)
    card["posterior"]["sigma_scale"] = {"flux_knots": [0.0], "factors": [[1.0]] * 3,
                                        "psf_knots": [0.7], "psf_factors": [[0.9]] * 3}
    for key in ("format", "weights"):
        card.pop(key, None)
    folder = save_bundle(tmp_path / "plain", card, dict(bundle.tensors))
    with pytest.raises(BundleError, match="psf_input"):
        MorphologyModel(folder)



def test_a_psf_list_of_the_wrong_length_is_a_one_line_error(psf_bundle):
    from galaxy_inspector.errors import InputError

    model = MorphologyModel(psf_bundle)
    with pytest.raises(InputError, match="one per stamp"):
        model.predict(_stamps(2)[:, 0].numpy(), n_samples=4, psf_fwhm=[0.7, 0.8, 0.9])
    assert model.predict(_stamps(2)[:, 0].numpy(), n_samples=4, psf_fwhm=0.8).samples.shape[0] == 2


def test_the_psf_a_model_was_told_is_kept_in_the_catalogue(psf_bundle, tiny_bundle, tmp_path):
    # A reloaded row says which posterior it is, as the measurement did: told a FWHM, told
    # "unknown" (NaN), or nothing for a model that does not read the PSF (None).
    from astropy.io import fits

    from galaxy_inspector.batch import BatchOptions, run_batch
    from galaxy_inspector.catalogue.reader import read_catalogue, stored_measurement

    data = np.random.default_rng(1).normal(0, 2.7, (200, 200)).astype(np.float32)
    data[95:105, 95:105] += 50.0
    image = tmp_path / "g.fits"
    fits.writeto(image, data, fits.Header({"BUNIT": "nJy", "PIXSCALE": 0.168}))
    told = {}
    for name, model, fwhm in (("told", psf_bundle, 0.9), ("unknown", psf_bundle, None),
                              ("plain", tiny_bundle, 0.9)):
        out = tmp_path / f"{name}.h5"
        run_batch([image], out, BatchOptions(model=str(model), psf_fwhm=fwhm, n_samples=16))
        assert read_catalogue(out)[0]["status"] == "ok"
        told[name] = stored_measurement(out, 0).psf_told
    assert told["told"] == pytest.approx(0.9, rel=1e-6) and math.isnan(told["unknown"])
    assert told["plain"] is None


@pytest.mark.parametrize("psf_fwhm, binning, flags, told, words", [
    (0.8, 1.0, 0, None, None),
    (math.nan, 1.0, 0, math.nan, "marginalised"),
    (0.8, 1.0, 0, 0.8, "told 0.8″"),
    (2.4, 1.0, 0, 1.6, "clipped"),  # broader than the training seeing
    (2.4, 2.0, 0, 1.2, "told 1.2″"),  # binned into the range
    (0.1, 1.0, int(Flag.PSF_MATCHED), 0.75, "told 0.75″"),  # matched, not clipped
    (math.nan, 1.0, 0, 1.0, "told 1″"),  # no image PSF to compare with: nothing claimed
])
def test_the_panel_says_which_seeing_the_posterior_is_for(psf_fwhm, binning, flags, told,
                                                          words):
    from types import SimpleNamespace

    from galaxy_inspector.viewer.wording import psf_in_words

    stamp = SimpleNamespace(psf_fwhm=psf_fwhm, psf_source="given", binning=binning)
    text = psf_in_words(SimpleNamespace(stamp=stamp, psf_told=told, flags=flags))
    assert ("told" in text) == (told is not None)
    if words:
        assert words in text
    assert ("clipped" in text) == (words == "clipped")
