"""Morphology inference: reproducible per-galaxy posteriors, input checks, calibration knobs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from galaxy_inspector.errors import InputError
from galaxy_inspector.models.morphology import MorphologyModel


@pytest.fixture
def stamps():
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[:128, :128] - 63.5
    galaxy = 500.0 * np.exp(-np.hypot(xx, yy) / 4.0)
    return (galaxy + rng.normal(0, 3, (3, 128, 128))).astype(np.float32)


def test_posterior_of_a_galaxy_does_not_depend_on_its_batch(tiny_bundle, stamps):
    model = MorphologyModel(tiny_bundle)
    together = model.predict(stamps, n_samples=64, seed=9)
    alone = model.predict(stamps[2], n_samples=64, seed=9)
    reordered = model.predict(stamps[::-1], n_samples=64, seed=9)
    # Equal up to float rounding (BLAS kernels differ with the batch size).
    np.testing.assert_allclose(together.samples[2], alone.samples[0], rtol=1e-5)
    np.testing.assert_allclose(together.samples[0], reordered.samples[2], rtol=1e-5)
    other_seed = model.predict(stamps[2], n_samples=64, seed=10)
    assert not np.allclose(other_seed.samples, alone.samples, rtol=1e-3)


def test_samples_are_physical_and_have_spread(tiny_bundle, stamps):
    pred = MorphologyModel(tiny_bundle).predict(stamps, n_samples=200)
    assert pred.samples.shape == (3, 200, 3)
    bt, re, flux = pred.samples[..., 0], pred.samples[..., 1], pred.samples[..., 2]
    assert np.all((bt >= 0) & (bt <= 1)) and np.all(re > 0) and np.all(flux > 0)
    assert np.all(pred.samples.std(axis=1) > 0)
    assert np.all((pred.stn_scale > 0.2) & (pred.stn_scale <= 1.25))


def test_sigma_scale_widens_the_aleatoric_spread(tiny_bundle, stamps):
    narrow = MorphologyModel(tiny_bundle).predict(stamps, n_samples=400, seed=1)
    card_path = tiny_bundle / "card.json"
    card = json.loads(card_path.read_text())
    card["posterior"].update(sigma_scale=[3.0, 3.0, 3.0], dropout=0.0)
    card_path.write_text(json.dumps(card))
    wide = MorphologyModel(tiny_bundle).predict(stamps, n_samples=400, seed=1)
    log_narrow = np.log10(narrow.samples[..., 2]).std(axis=1)
    log_wide = np.log10(wide.samples[..., 2]).std(axis=1)
    assert np.all(log_wide > 2.0 * log_narrow)


def test_spread_factors_follow_the_predicted_brightness(tiny_bundle, stamps):
    from galaxy_inspector.models.morphology import spread_factors

    table = {"flux_knots": [-1.0, 1.0], "factors": [[2.0, 1.0], [0.7, 0.7], [4.0, 0.5]]}
    rows = spread_factors(table, np.array([-3.0, -1.0, 0.0, 1.0, 5.0]))
    # Linear between the knots, constant beyond them.
    np.testing.assert_allclose(rows[:, 0], [2.0, 2.0, 1.5, 1.0, 1.0])
    np.testing.assert_allclose(rows[:, 1], 0.7)
    np.testing.assert_allclose(rows[:, 2], [4.0, 4.0, 2.25, 0.5, 0.5])
    # The model looks the factors up at each galaxy's mean predicted flux (affine-corrected):
    # with knots far below every galaxy's, all of them get the last factors.
    card_path = tiny_bundle / "card.json"
    card = json.loads(card_path.read_text())
    card["posterior"].update(dropout=0.0, sigma_scale=[1.0, 1.0, 1.0],
                             affine=[[0.0, 1.0], [0.0, 1.0], [0.5, 2.0]])
    card_path.write_text(json.dumps(card))
    flat = MorphologyModel(tiny_bundle).predict(stamps, n_samples=400, seed=1)
    card["posterior"]["sigma_scale"] = {"flux_knots": [-101.0, -100.0],
                                        "factors": [[1.0, 1.0], [1.0, 1.0], [9.0, 3.0]]}
    card_path.write_text(json.dumps(card))
    model = MorphologyModel(tiny_bundle)
    out = np.arange(18.0).reshape(2, 9)  # two passes of one galaxy: flux mean in column 2
    np.testing.assert_allclose(model.brightness(out, 2), [0.5 + 2.0 * 6.5])
    wide = model.predict(stamps, n_samples=400, seed=1)
    ratio = np.log10(wide.samples[..., 2]).std(1) / np.log10(flat.samples[..., 2]).std(1)
    np.testing.assert_allclose(ratio, 3.0, rtol=0.02)


def test_each_galaxy_gets_the_factor_at_its_own_brightness(tiny_bundle, stamps):
    import torch

    from training.calibrate import posterior_pieces

    card_path = tiny_bundle / "card.json"
    card = json.loads(card_path.read_text())
    card["posterior"].update(dropout=0.0, sigma_scale=[1.0, 1.0, 1.0],
                             affine=[[0.0, 1.0], [0.0, 1.0], [0.3, 1.5]])
    card_path.write_text(json.dumps(card))
    pair = np.stack([stamps[0] * 0.05, stamps[1] * 20.0])
    model = MorphologyModel(tiny_bundle)
    flat = model.predict(pair, n_samples=300, seed=2)
    # The brightness calibration sees (dropout 0: every pass alike) is the knot of each galaxy.
    level = posterior_pieces(model, torch.from_numpy(pair), 4, 0.0, seed=0)[2]
    assert abs(level[0] - level[1]) > 1e-3
    order = np.argsort(level)
    card["posterior"]["sigma_scale"] = {"flux_knots": level[order].tolist(),
                                        "factors": [[1.0, 1.0], [1.0, 1.0], [1.0, 4.0]]}
    card_path.write_text(json.dumps(card))
    spread = MorphologyModel(tiny_bundle).predict(pair, n_samples=300, seed=2)
    ratio = np.log10(spread.samples[..., 2]).std(1) / np.log10(flat.samples[..., 2]).std(1)
    np.testing.assert_allclose(ratio[order], [1.0, 4.0], rtol=0.02)


@pytest.mark.parametrize("sigma_scale", [
    [1.0, 1.0],
    [1.0, -1.0, 1.0],
    {"flux_knots": [float("nan")], "factors": [[1], [1], [1]]},
    {"flux_knots": [0.0], "factors": [1, 1, 1]},
    {"flux_knots": ["a"], "factors": [[1], [1], [1]]},
    {"flux_knots": [1.0, 0.0], "factors": [[1, 1]] * 3},
    {"flux_knots": [0.0, 1.0], "factors": [[1, 1]] * 2},
    {"flux_knots": [0.0, 1.0], "factors": [[1]] * 3},
    {"factors": [[1], [1], [1]]},
])
def test_malformed_spread_factors_refuse_the_bundle(tiny_bundle, sigma_scale):
    from galaxy_inspector.errors import BundleError

    card_path = tiny_bundle / "card.json"
    card = json.loads(card_path.read_text())
    card["posterior"]["sigma_scale"] = sigma_scale
    card_path.write_text(json.dumps(card))
    with pytest.raises(BundleError, match="sigma_scale"):
        MorphologyModel(tiny_bundle)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 64, 64), np.float32), "128x128"),
    (np.full((1, 128, 128), np.nan, np.float32), "NaN"),
])
def test_unusable_stamps_are_refused_with_a_reason(tiny_bundle, bad, message):
    with pytest.raises(InputError, match=message):
        MorphologyModel(tiny_bundle).predict(bad)


def test_orientations_make_a_mixture_over_dihedral_views(tiny_bundle, stamps):
    import torch

    from galaxy_inspector.models.symmetry import dihedral_views

    model = MorphologyModel(tiny_bundle)
    yy, xx = np.mgrid[:128, :128] - 63.5
    symmetric = (500.0 * np.exp(-np.hypot(xx, yy) / 4.0)).astype(np.float32)
    one = model.predict(symmetric, n_samples=64, seed=4)
    model.orientations = 8
    eight = model.predict(symmetric, n_samples=64, seed=4)
    # Every view of a dihedrally symmetric galaxy is the galaxy: nothing changes.
    np.testing.assert_allclose(eight.samples, one.samples, rtol=1e-4)
    lopsided = stamps[:1].copy()
    lopsided[0, 20:50, 70:120] += 300.0  # a bright companion up and to the right
    model.orientations = 8
    noisy = model.predict(lopsided, n_samples=64, seed=4, return_crops=True)
    model.orientations = 1
    plain = model.predict(lopsided, n_samples=64, seed=4, return_crops=True)
    np.testing.assert_allclose(noisy.crops, plain.crops)  # the crop shown is of the stamp
    model.orientations = 8
    x = torch.from_numpy(lopsided[:, None])
    with torch.inference_mode():
        h, s, _ = model.network.trunk(dihedral_views(x, 8))
        rows, _, _ = model.head_inputs(x, 20)
    for j in range(20):  # sample j reads view j % 8
        assert torch.equal(rows[j], h[j % 8])
    assert noisy.stn_scale[0] == pytest.approx(float(s.mean()), rel=1e-5)
