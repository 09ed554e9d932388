"""The training package: simulation, refusal of broken sets, resumable training, calibration."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from galaxy_inspector.models.bundle import load_bundle
from galaxy_inspector.models.morphology import MorphologyModel
from galaxy_inspector.models.registry import build_network
from training.cli import main as train_main
from training.dataset import load_set
from training.simulate import SimulationConfig, draw_galaxy, draw_parameters, simulate
from training.train import TrainConfig, train


@pytest.fixture(scope="module")
def tiny_set(simulated_set):
    return simulated_set(simulate, SimulationConfig(stamp_size=64, chunk=12), n=24, seed=11)


@pytest.mark.slow
def test_simulation_is_deterministic_and_truthful(tiny_set, tmp_path):
    again = tmp_path / "again.h5"
    simulate(again, n=24, seed=11, workers=2, config=SimulationConfig(stamp_size=64, chunk=12))
    with h5py.File(tiny_set) as a, h5py.File(again) as b:
        np.testing.assert_array_equal(a["images"][:], b["images"][:])
        np.testing.assert_array_equal(a["re_arcsec"][:], b["re_arcsec"][:])
        bt, comps = a["bt"][:], a["components"][:]
        assert np.all((bt >= 0) & (bt <= 1))
        assert np.all((bt[comps == 1] == 0) | (bt[comps == 1] == 1))
        # Unit-flux images: the stamp holds at most all of the light.
        assert np.all(a["images"][:].sum(axis=(1, 2)) < 1.001)


def test_simulated_flux_is_the_intrinsic_flux():
    rng = np.random.default_rng(3)
    p = draw_parameters(rng)
    p.update(hlr_disk=0.5, hlr_bulge=0.3, dx=0.0, dy=0.0)
    image = draw_galaxy(p, SimulationConfig(stamp_size=256), flux=1234.0)
    assert image.sum() == pytest.approx(1234.0, rel=0.01)


def test_broad_psf_fraction_sets_the_share_of_poor_seeing():
    # The default leaves the draws of sets made before the option exactly as they were
    # (the first galaxy of the test set, seed 3).
    assert draw_parameters(np.random.default_rng([3, 0]))["psf_fwhm"] == 0.6470643211201996

    def broad_share(fraction):
        rng = np.random.default_rng(5)
        fwhm = np.array([draw_parameters(rng, fraction)["psf_fwhm"] for _ in range(300)])
        assert fwhm.min() >= 0.6 and fwhm.max() <= 1.6
        return np.mean(fwhm > 1.1)

    assert broad_share(0.15) == pytest.approx(0.15, abs=0.06)
    assert broad_share(0.5) == pytest.approx(0.5, abs=0.09)
    with pytest.raises(ValueError, match="broad PSF fraction"):
        simulate("never-written.h5", 1, 0, config=SimulationConfig(broad_psf_fraction=1.5))


@pytest.mark.slow
def test_load_set_names_missing_columns_and_nan_targets(tiny_set, tmp_path):
    broken = tmp_path / "broken.h5"
    with h5py.File(tiny_set) as src, h5py.File(broken, "w") as dst:
        for key in src:
            if key != "re_arcsec":
                src.copy(key, dst)
        dst.attrs.update(src.attrs)
    with pytest.raises(ValueError, match="missing column.*re_arcsec"):
        load_set(broken)
    nan = tmp_path / "nan.h5"
    with h5py.File(tiny_set) as src, h5py.File(nan, "w") as dst:
        for key in src:
            src.copy(key, dst)
        dst.attrs.update(src.attrs)
        dst["bt"][3] = np.nan
    with pytest.raises(ValueError, match=r"non-finite bt in rows \[3\]"):
        load_set(nan)
    assert train_main(["train", "--train", str(nan), "--val", str(tiny_set),
                       "--out", str(tmp_path / "run")]) == 1


def _small_config(epochs):
    return TrainConfig(epochs=epochs, batch_size=8, seed=4, channels=(4, 4, 8, 8), hidden=16)


@pytest.mark.slow
def test_resumed_training_equals_uninterrupted(tiny_set, tmp_path, run_isolated):
    one_thread = {"OMP_NUM_THREADS": "1"}  # the same sums in the same order in every run
    straight = run_isolated(train, tiny_set, tiny_set, tmp_path / "a", _small_config(2),
                            env=one_thread)
    assert run_isolated(train, tiny_set, tiny_set, tmp_path / "b", _small_config(2),
                        stop_after=1, env=one_thread) is None
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["epoch"] == 1
    resumed = run_isolated(train, tiny_set, tiny_set, tmp_path / "b", _small_config(2),
                           env=one_thread)
    a, b = load_bundle(straight), load_bundle(resumed)
    assert [h["epoch"] for h in b.card["training"]["history"]] == [1, 2]
    for name, value in a.tensors.items():
        np.testing.assert_allclose(value, b.tensors[name], rtol=0, atol=1e-6, err_msg=name)


@pytest.mark.slow
@pytest.mark.filterwarnings("error::RuntimeWarning")  # an untrained bundle's outputs overflow
def test_calibrate_and_evaluate_write_card_and_report(tiny_set, tmp_path, run_isolated):
    bundle = run_isolated(train, tiny_set, tiny_set, tmp_path / "run", _small_config(1))
    assert train_main(["--json", "calibrate", "--bundle", str(bundle), "--val", str(tiny_set),
                       "--n", "24", "--samples", "40"]) == 0
    card = json.loads((bundle / "card.json").read_text())
    assert card["training"]["broad_psf_fraction"] == 0.15  # the tiny set's default draw
    assert card["posterior"]["calibrated"] is True and card["posterior"]["orientations"] == 1
    # The choice follows the documented rule: the largest dropout rate whose coverages all stay
    # within the tolerance, else the smallest squared coverage error.
    grid, chosen = card["calibration"]["grid"], card["calibration"]["chosen"]
    within = [r for r in grid if r["worst_error"] <= 0.025]
    expected = (max(within, key=lambda r: r["dropout"]) if within
                else min(grid, key=lambda r: r["score"]))
    assert chosen["dropout"] == expected["dropout"] == card["posterior"]["dropout"]
    assert card["posterior"]["sigma_scale"] == chosen["sigma_scale"]
    table = card["posterior"]["sigma_scale"]  # factors per bin of predicted flux
    assert 1 <= len(table["flux_knots"]) <= 5 and np.all(np.diff(table["flux_knots"]) > 0)
    assert [len(row) for row in table["factors"]] == [len(table["flux_knots"])] * 3
    assert len(card["posterior"]["affine"]) == 3
    assert train_main(["evaluate", "--bundle", str(bundle), "--test", str(tiny_set),
                       "--samples", "50"]) == 0
    report = json.loads((bundle / "report" / "report.json").read_text())
    assert set(report["coverage"]) == {"bt", "re_arcsec", "flux_njy"}
    assert set(report["gampen_flux_prior"]["coverage"]) == {"bt", "re_arcsec", "flux_njy"}
    assert "GaMPEN's flux distribution" in (bundle / "report" / "report.md").read_text()
    for png in ("true_vs_predicted.png", "residuals_vs_predicted.png", "coverage.png"):
        assert (bundle / "report" / png).stat().st_size > 1000
    model = MorphologyModel(bundle)
    assert model.sigma_scale == card["posterior"]["sigma_scale"]


@pytest.mark.slow
def test_second_stage_starts_from_a_bundle_and_keeps_its_history(tiny_set, tmp_path,
                                                                 run_isolated):
    first = run_isolated(train, tiny_set, tiny_set, tmp_path / "one", _small_config(1))
    config = _small_config(1)
    config.init_from = str(first)
    config.lr = 1e-3
    second = load_bundle(run_isolated(train, tiny_set, tiny_set, tmp_path / "two", config))
    training = second.card["training"]
    assert [(h["stage"], h["epoch"]) for h in training["history"]] == [(1, 1), (2, 1)]
    assert training["previous_stages"][0]["lr"] == _small_config(1).lr
    assert training["config"]["init_from"] == str(first)
    changed = [k for k, v in load_bundle(first).tensors.items()
               if not np.array_equal(v, second.tensors[k])]
    assert changed, "the second stage must move the weights"


@pytest.mark.slow
@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_a_head_only_stage_adds_seeing_and_keeps_the_trunk(tiny_set, tmp_path, run_isolated):
    from training.train import PSF_INPUT

    first = run_isolated(train, tiny_set, tiny_set, tmp_path / "one", _small_config(1))
    config = _small_config(1)
    config.psf_input = config.head_only = True
    with pytest.raises(ValueError, match="init_from"):
        train(tiny_set, tiny_set, tmp_path / "alone", config)
    config.init_from = str(first)
    second = load_bundle(run_isolated(train, tiny_set, tiny_set, tmp_path / "two", config))
    start = load_bundle(first)
    assert second.card["hyperparameters"]["psf_input"] == PSF_INPUT
    assert second.card["training"]["config"]["head_only"] is True
    for name, value in start.tensors.items():
        if not name.startswith("head_"):  # the trunk, batch-norm statistics included
            np.testing.assert_array_equal(value, second.tensors[name], err_msg=name)
    wide, narrow = second.tensors["head_hidden.weight"], start.tensors["head_hidden.weight"]
    assert wide.shape[1] == narrow.shape[1] + 2 and np.any(wide[:, -2:] != 0)
    # A conditioned bundle calibrates, and its report has coverage per bin of seeing and of
    # flux, and the figures with the PSF unknown.
    bundle = str(second.path)
    assert train_main(["--json", "calibrate", "--bundle", bundle, "--val", str(tiny_set),
                       "--n", "24", "--samples", "40"]) == 0
    spread = json.loads((second.path / "card.json").read_text())["posterior"]["sigma_scale"]
    assert np.all(np.diff(spread["psf_knots"]) > 0)  # factors per cell of told seeing too
    assert np.shape(spread["psf_flux_factors"]) == (3, len(spread["flux_knots"]),
                                                    len(spread["psf_knots"]))
    assert train_main(["evaluate", "--bundle", bundle, "--test", str(tiny_set),
                       "--samples", "50"]) == 0
    report = json.loads((second.path / "report" / "report.json").read_text())
    for scores in (report, report["psf_unknown"]):
        assert sum(b["n"] for b in scores["coverage_by_seeing"]) == 24
        assert sum(b["n"] for b in scores["coverage_by_flux"]) == 24
        assert sum(b["n"] for b in scores["coverage_by_axis_ratio"]) == 24
    assert report["coverage_by_seeing"][0]["range"] == [0.6, 0.8]
    markdown = (second.path / "report" / "report.md").read_text()
    assert "## PSF unknown" in markdown and "axis ratio of the brighter component" in markdown


def test_affine_correction_undoes_regression_to_the_mean_and_only_when_it_helps():
    from galaxy_inspector.models.bundle import OutputSpec
    from training.calibrate import _fit_affine

    class Model:
        outputs = [OutputSpec("flux_njy", "nJy", "log10", 4.0, 1.0),
                   OutputSpec("re_arcsec", "arcsec", "log10", 0.0, 1.0)]

    rng = np.random.default_rng(0)
    scaled_truth = rng.normal(0.0, 1.0, 4000)
    shrunk = 0.9 * scaled_truth + rng.normal(0.0, 0.01, 4000)  # biased towards the mean
    honest = scaled_truth + rng.normal(0.0, 0.05, 4000)
    mu = np.stack([shrunk, honest], axis=1)[:, None, :]
    truth = np.stack([10.0 ** (scaled_truth + 4.0), 10.0 ** scaled_truth], axis=1)
    (a0, b0), (a1, b1) = _fit_affine(Model(), mu, truth)
    assert b0 == pytest.approx(1 / 0.9, rel=0.01) and abs(a0) < 0.01
    assert (a1, b1) == (0.0, 1.0)


def test_noise_regimes_and_correlated_noise():
    from training.observe import CONDITION_RANGES, draw_conditions, observe

    rng = np.random.default_rng(0)
    hsc = draw_conditions(4000, rng, "hsc")
    lo, hi = CONDITION_RANGES["sky_sigma_njy"]
    assert hsc["sky_sigma_njy"].min() >= lo and hsc["sky_sigma_njy"].max() <= hi
    assert not hsc["noise_corr_px"].any()
    wide = draw_conditions(4000, rng, "wide")
    assert 0.25 < np.mean(wide["sky_sigma_njy"] > hi) < 0.35
    assert 0.28 < np.mean(wide["noise_corr_px"] > 0) < 0.38
    with pytest.raises(ValueError, match="unknown noise regime"):
        draw_conditions(3, rng, "deep")
    # GaMPEN's linear-uniform flux draw: most galaxies bright; the default leaves a third faint.
    lo, hi = CONDITION_RANGES["flux_njy"]
    gampen = draw_conditions(4000, np.random.default_rng(1), flux_prior="uniform")["flux_njy"]
    default = draw_conditions(4000, np.random.default_rng(1))["flux_njy"]
    assert gampen.min() >= lo and gampen.max() <= hi
    assert np.mean(gampen > 1e6) == pytest.approx(0.8, abs=0.03)
    assert np.mean(default < 1e4) == pytest.approx(np.log10(10) / np.log10(5e3), abs=0.03)
    with pytest.raises(ValueError, match="unknown flux prior"):
        draw_conditions(3, rng, flux_prior="schechter")
    blank = torch.zeros(2, 96, 96)
    noisy = observe(blank, [1.0, 1.0], [3.0, 3.0], [10.0, 10.0],
                    torch.Generator().manual_seed(1), noise_corr_px=[0.0, 1.0])
    assert np.allclose(noisy.std((1, 2)).numpy(), 3.0, rtol=0.05)  # same per-pixel sigma
    binned = torch.nn.functional.avg_pool2d(noisy.unsqueeze(1), 2).std((1, 2, 3)).numpy()
    assert binned[0] == pytest.approx(1.5, rel=0.08)  # white: sigma / 2
    assert binned[1] > 2.4  # correlated: binning averages little away


@pytest.mark.slow
def test_warm_start_adds_a_flux_skip_as_the_identity_and_refuses_misfits(tiny_set, tmp_path,
                                                                         run_isolated):
    from training.train import _warm_start

    plain = _small_config(1)
    plain.flux_skip = False
    start = load_bundle(run_isolated(train, tiny_set, tiny_set, tmp_path / "plain", plain))
    skipping = load_bundle(run_isolated(train, tiny_set, tiny_set, tmp_path / "skip",
                                        _small_config(1)))
    net = build_network(skipping.card["architecture"], skipping.card["hyperparameters"]).eval()
    _warm_start(net, start)
    x = torch.randn(3, 1, 64, 64)
    x[..., 28:36, 28:36] += torch.tensor([10.0, 100.0, 1000.0]).reshape(3, 1, 1, 1)
    with torch.no_grad():
        h, _, _ = net.trunk(x)
        assert torch.allclose(net.head(h)[:, 2], h[:, -1])  # flux mean = aperture baseline
    misfit = build_network("gampen-stn-mcdropout-head",
                           {**skipping.card["hyperparameters"], "channels": [8, 8, 8, 8]})
    with pytest.raises(ValueError, match="does not fit"):
        _warm_start(misfit, start)


@pytest.mark.slow
def test_several_simulated_files_make_one_training_set(tiny_set, tmp_path):
    from training.dataset import load_sets

    other = tmp_path / "other.h5"
    simulate(other, n=16, seed=12, workers=1, config=SimulationConfig(stamp_size=64, chunk=16))
    both = load_sets([tiny_set, other])
    assert len(both) == 40 and len(both.table["bt"]) == 40
    assert both.attrs["seed"] == [11, 12]
    np.testing.assert_array_equal(both.images[24:].numpy(), load_set(other).images.numpy())
    assert len(load_sets([tiny_set, other], limit=10)) == 10
    small = tmp_path / "small.h5"
    simulate(small, n=16, seed=13, workers=1, config=SimulationConfig(stamp_size=32, chunk=16))
    with pytest.raises(ValueError, match="another stamp size"):
        load_sets([tiny_set, small])


@pytest.mark.parametrize("tail_dof", [None, [None, 4.0, None]])
def test_calibration_samples_the_posterior_the_app_samples(tiny_bundle, tail_dof):
    # Calibration keeps the head's mean and unit draw apart to try spread factors and tails;
    # put back together with a factor (and a Student-t widening) they must follow the
    # distribution MorphologyModel.predict draws.
    from galaxy_inspector.models.morphology import tail_widening
    from training.calibrate import _corrected, _physical, posterior_pieces

    model = MorphologyModel(tiny_bundle, device="cpu")
    model.affine = np.array([[0.1, 0.9], [0.05, 1.1], [-0.2, 1.0]], dtype=np.float32)
    model.sigma_scale = [0.5, 2.0, 1.5]
    model.tail_dof = tail_dof
    stamps = torch.from_numpy(np.random.default_rng(0).normal(0, 5, (3, 128, 128))
                              .astype(np.float32))
    n = 20000
    mu, draw, _ = posterior_pieces(model, stamps, n, model.dropout, seed=1)
    mu, draw = _corrected(model.affine, mu, draw)
    if tail_dof:
        draw[..., 1] *= tail_widening(4.0, draw[..., 1].shape, np.random.default_rng(3))
    app = model.predict(stamps.numpy(), n_samples=n, seed=2).samples
    for j, spec in enumerate(model.outputs):  # compared where the posterior is Gaussian
        ours = spec.forward(_physical(model, mu, draw, j, model.sigma_scale[j]))
        theirs = spec.forward(app[..., j])
        np.testing.assert_allclose(ours.std(1), theirs.std(1), rtol=0.06, err_msg=spec.name)
        assert np.all(np.abs(ours.mean(1) - theirs.mean(1)) < 0.05 * theirs.std(1)), spec.name
        for q in (0.5, 99.5):  # the tails too
            np.testing.assert_allclose(np.percentile(ours - ours.mean(1, keepdims=True), q, 1),
                                       np.percentile(theirs - theirs.mean(1, keepdims=True), q,
                                                     1), rtol=0.1, err_msg=spec.name)


def test_calibration_gives_heavy_tails_to_a_parameter_whose_residuals_have_them(tiny_bundle):
    # Truths drawn from a Student-t around Gaussian posteriors of the right width: no single
    # spread factor hits 68 and 99.7 % at once; a t draw for that parameter does, and the
    # Gaussian ones stay Gaussian.
    from training.calibrate import TAIL_GRID, _choose_tails

    model = MorphologyModel(tiny_bundle, device="cpu")
    rng = np.random.default_rng(0)
    n, s = 3000, 300
    mu = np.zeros((n, s, 3))
    mu[..., 2] = 0.3 * rng.normal(size=(n, 1))  # a brightness that varies
    draw = rng.normal(size=(n, s, 3))
    # R_e (log10, unbounded) gets the tails; B/T (logit, clipped) and flux do not.
    z = np.stack([0.3 * rng.normal(size=n), rng.standard_t(3.0, n), rng.normal(size=n)], axis=1)
    draw[..., 0] *= 0.3
    truth = np.stack([model.outputs[j].inverse(mu[:, 0, j] + z[:, j]) for j in range(3)], axis=1)
    dofs, widened = _choose_tails(model, mu, draw, truth, mu[:, 0, 2], None,
                                  np.random.default_rng(1))
    assert dofs[1] is not None and dofs[1] <= 6.0 and dofs[1] in TAIL_GRID
    assert dofs[0] in (None, 30.0) and dofs[2] in (None, 30.0)
    np.testing.assert_array_equal(widened[..., 2] == draw[..., 2], dofs[2] is None)


def test_a_realism_test_set_is_scored_per_condition():
    # Each condition (clumps, neighbours or stars, masks, Kolmogorov PSF) gets its own figures
    # and coverage, and "plain" holds the stamps with none of them.
    from training.evaluate import by_realism

    rng = np.random.default_rng(0)
    n = 400
    table = {"knot_flux_fraction": np.where(np.arange(n) % 4 == 0, 0.2, 0.0),
             "n_neighbours": np.where(np.arange(n) % 4 == 1, 2.0, 0.0),
             "n_stars": np.where(np.arange(n) == 2, 1.0, 0.0),
             "masked_fraction": np.zeros(n), "psf_kind": np.where(np.arange(n) % 4 == 3, 1.0, 0.0)}
    truth = np.stack([rng.uniform(0, 1, n), rng.uniform(0.5, 3, n), rng.uniform(1e4, 1e6, n)], 1)
    point = truth.copy()
    point[np.arange(n) % 4 == 1, 0] += rng.normal(0, 0.3, 100)  # neighbours make B/T wrong
    samples = point[:, None, :] + rng.normal(0, 0.01, (n, 50, 3)) * truth[:, None, :]
    rows = {r["condition"]: r for r in by_realism(table, samples, point,
                                                  ["bt", "re_arcsec", "flux_njy"], truth)}
    assert rows["star-forming clumps"]["n"] == 100 and rows["Kolmogorov PSF"]["n"] == 100
    assert rows["neighbours or stars"]["n"] == 101  # a star alone counts
    assert rows["masked pixels"]["n"] == 0 and rows["masked pixels"]["coverage"] == {}
    assert rows["plain"]["n"] == 99
    assert rows["neighbours or stars alone"]["n"] == 101
    table["knot_flux_fraction"][1] = 0.2  # one stamp with neighbours and clumps
    rows = {r["condition"]: r for r in by_realism(table, samples, point,
                                                  ["bt", "re_arcsec", "flux_njy"], truth)}
    assert rows["neighbours or stars"]["n"] == 101
    assert rows["neighbours or stars alone"]["n"] == 100
    assert rows["star-forming clumps alone"]["n"] == 100
    from training.evaluate import _realism_table

    table_text = "\n".join(_realism_table(list(rows.values())))
    assert "| masked pixels | 0 |" in table_text and "| plain | 99 | 0.000 |" in table_text
    assert rows["neighbours or stars"]["figures"]["sigma_bt_residual"] > 0.1
    assert rows["plain"]["figures"]["sigma_bt_residual"] == 0.0
    assert by_realism({"bt": truth[:, 0]}, samples, point, ["bt", "re_arcsec", "flux_njy"],
                      truth) == []
