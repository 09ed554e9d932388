"""More small galaxies in training, weighted so that the size prior stays GaMPEN's
(``simulate --small-fraction``; ``training.simulate.draw_small``)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from galaxy_inspector.models.bundle import load_bundle
from training.dataset import PRIOR_WEIGHT, fit_output_specs, load_set, load_sets
from training.simulate import (
    SMALL_SIZE_RANGE_ARCSEC,
    SimulationConfig,
    draw_parameters,
    draw_small,
    simulate,
)
from training.train import TrainConfig, train

SMALL = dict(stamp_size=48, chunk=8)


def _draws(n: int, fraction: float | None, seed: int = 1) -> dict[str, np.ndarray]:
    rng, small = np.random.default_rng(seed), np.random.default_rng(seed + 100)
    rows = []
    for _ in range(n):
        p = draw_parameters(rng)
        if fraction is not None:
            draw_small(p, small, fraction)
        rows.append(p)
    return {k: np.array([p.get(k, 1.0) for p in rows]) for k in ("hlr_disk", "hlr_bulge", "bt",
                                                                 "re_arcsec", "prior_weight")}


@pytest.mark.slow
def test_weighted_sizes_follow_the_prior_and_small_galaxies_are_more_common():
    plain, mixed = _draws(6000, None, seed=1), _draws(6000, 0.4, seed=2)
    assert np.mean(mixed["prior_weight"]) == pytest.approx(1.0, abs=0.03)
    small = SMALL_SIZE_RANGE_ARCSEC[1]
    assert np.mean(mixed["re_arcsec"] < small) > 1.6 * np.mean(plain["re_arcsec"] < small)
    edges = np.array([0.1, 0.5, 1.0, 1.5, 2.5, 5.0])
    for column in ("hlr_disk", "re_arcsec"):
        has = plain["bt"] < 1 if column == "hlr_disk" else np.ones(len(plain["bt"]), bool)
        mixed_has = mixed["bt"] < 1 if column == "hlr_disk" else np.ones(len(mixed["bt"]), bool)
        expected = np.histogram(plain[column][has], edges)[0] / has.sum()
        weighted = np.histogram(mixed[column][mixed_has], edges,
                                weights=mixed["prior_weight"][mixed_has])[0]
        np.testing.assert_allclose(weighted / mixed["prior_weight"][mixed_has].sum(), expected,
                                   atol=0.025, err_msg=column)


def test_fraction_zero_changes_nothing():
    plain, zero = _draws(200, None), _draws(200, 0.0)
    np.testing.assert_array_equal(zero["re_arcsec"], plain["re_arcsec"])
    assert np.all(zero["prior_weight"] == 1.0)


@pytest.fixture(scope="module")
def sets(simulated_set):
    return (simulated_set(simulate, SimulationConfig(**SMALL), n=16, seed=5),
            simulated_set(simulate, SimulationConfig(**SMALL, small_fraction=1.0), n=16, seed=5))


@pytest.mark.slow
def test_redrawn_sizes_are_small_weighted_and_the_rest_of_the_galaxy_kept(sets):
    plain, small = sets
    with h5py.File(plain) as a, h5py.File(small) as b:
        assert set(b) - set(a) == {PRIOR_WEIGHT} and b.attrs["small_fraction"] == 1.0
        assert "small_fraction" not in a.attrs
        for name in ("bt", "q_disk", "n_bulge", "psf_fwhm", "dx"):  # its own random stream
            np.testing.assert_array_equal(b[name][:], a[name][:])
        bt = b["bt"][:]
        assert np.all(b["hlr_disk"][:][bt < 1] < SMALL_SIZE_RANGE_ARCSEC[1])
        assert np.all(b["hlr_bulge"][:][bt > 0] < SMALL_SIZE_RANGE_ARCSEC[1])
        assert np.all(b["re_arcsec"][:] < SMALL_SIZE_RANGE_ARCSEC[1])
        # All small: the weight is the density ratio of the plain prior to the small one.
        assert np.all((b[PRIOR_WEIGHT][:] > 0) & (b[PRIOR_WEIGHT][:] < 1))
    with pytest.raises(ValueError, match="small fraction must be within 0-1"):
        simulate("never-written.h5", 1, 0, config=SimulationConfig(small_fraction=1.5))


@pytest.mark.slow
def test_a_plain_file_weighs_one_beside_a_weighted_one_and_scalers_keep_the_prior(sets):
    plain, small = sets
    both = load_sets([small, plain])
    weights = both.table[PRIOR_WEIGHT]
    np.testing.assert_array_equal(weights[16:], 1.0)
    np.testing.assert_array_equal(weights[:16], load_set(small).table[PRIOR_WEIGHT])
    table = dict(both.table)
    weighted = {s.name: s for s in fit_output_specs(table, (1e2, 1e5))}
    table[PRIOR_WEIGHT] = np.ones(len(weights))
    unweighted = {s.name: s for s in fit_output_specs(table, (1e2, 1e5))}
    # The small galaxies weigh less, so the weighted mean log size is the larger.
    assert weighted["re_arcsec"].scaler_mean > unweighted["re_arcsec"].scaler_mean


def _with_weights(source, path, weight: float):
    path.write_bytes(source.read_bytes())
    with h5py.File(path, "r+") as f:
        f[PRIOR_WEIGHT][:] = weight
    return path


@pytest.mark.slow
def test_training_multiplies_each_galaxy_loss_by_its_weight(sets, tmp_path, run_isolated):
    _, small = sets
    config = TrainConfig(epochs=1, batch_size=8, seed=4, channels=(4, 4, 8, 8), hidden=16)

    def first_epoch(weight):
        path = _with_weights(small, tmp_path / f"w{weight}.h5", weight)
        bundle = run_isolated(train, path, small, tmp_path / f"run{weight}", config)
        return load_bundle(bundle).card["training"]["history"][0]

    one, light = first_epoch(1.0), first_epoch(1e-3)
    # Adam steps do not depend on the loss's scale: the same network, a thousandth the loss.
    assert light["train_loss"] == pytest.approx(1e-3 * one["train_loss"], rel=0.1)
    assert light["val_loss"] == pytest.approx(one["val_loss"], rel=0.1)  # not weighted


@pytest.mark.slow
def test_weights_that_weigh_nothing_are_refused(sets, tmp_path):
    _, small = sets
    with pytest.raises(ValueError, match="prior_weight values"):
        load_set(_with_weights(small, tmp_path / "zero.h5", 0.0))
    with pytest.raises(ValueError, match="prior_weight values"):
        load_set(_with_weights(small, tmp_path / "nan.h5", np.nan))
