"""Posterior summaries: HPD intervals, KDE modes, catalogue columns and coverage."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

from galaxy_inspector.models.bundle import OutputSpec
from galaxy_inspector.models.morphology import MorphologyModel
from galaxy_inspector.posterior import (
    LEVELS,
    ModeTransform,
    coverage,
    hpd_interval,
    kde_mode,
    summarize,
)


def test_hpd_of_a_gaussian_is_mean_plus_minus_k_sigma():
    rng = np.random.default_rng(0)
    samples = rng.normal(2.0, 0.5, (4, 200_000))
    for level, k in zip(LEVELS, (1.0, 2.0, 3.0), strict=True):
        lo, hi = hpd_interval(samples, level)
        # The width is well determined; where the shortest window sits wanders a little.
        np.testing.assert_allclose(hi - lo, 2 * k * 0.5, rtol=0.006 * k)
        np.testing.assert_allclose((lo + hi) / 2, 2.0, atol=0.02 * k)


def test_hpd_of_an_exponential_starts_at_zero():
    # The shortest 68 % interval of Exp(1) is [0, -ln(1 - 0.68)], not the central one.
    samples = np.random.default_rng(1).exponential(1.0, (1, 200_000))
    lo, hi = hpd_interval(samples, 0.6827)
    assert lo[0] == pytest.approx(0.0, abs=1e-3)
    assert hi[0] == pytest.approx(-np.log(1 - 0.6827), rel=0.01)


def test_hpd_holds_the_requested_fraction_and_is_shortest():
    x = np.random.default_rng(2).gamma(2.0, 1.0, (1, 5000))
    lo, hi = hpd_interval(x, 0.9)
    inside = np.mean((x >= lo[:, None]) & (x <= hi[:, None]))
    assert inside >= 0.9
    central = np.percentile(x, [5, 95])
    assert hi[0] - lo[0] < central[1] - central[0]


def test_kde_mode_of_skewed_distributions():
    rng = np.random.default_rng(3)
    gamma = rng.gamma(3.0, 1.0, 20_000)  # mode (k - 1) theta = 2
    lognormal = rng.lognormal(0.0, 0.5, 20_000)  # mode exp(mu - s^2) = 0.7788
    modes = kde_mode(np.stack([gamma, lognormal]))
    assert modes[0] == pytest.approx(2.0, abs=0.15)
    # A KDE smooths the peak towards the long tail by about a bandwidth (~0.05 here).
    assert modes[1] == pytest.approx(np.exp(-0.25), abs=0.08)
    # ... and the mode is not the mean or the median of a skewed posterior
    assert modes[0] < np.median(gamma) < gamma.mean()


def test_kde_mode_of_a_bimodal_posterior_is_the_higher_peak():
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.normal(-2.0, 0.3, 6000), rng.normal(3.0, 0.3, 4000)])
    y = np.concatenate([rng.normal(-2.0, 0.3, 3000), rng.normal(3.0, 0.3, 7000)])
    modes = kde_mode(np.stack([rng.permutation(x), rng.permutation(y)]))
    assert modes[0] == pytest.approx(-2.0, abs=0.1)
    assert modes[1] == pytest.approx(3.0, abs=0.1)


def test_kde_mode_of_a_constant_row():
    assert kde_mode(np.full((1, 50), 0.25))[0] == 0.25


def test_kde_mode_matches_scipy_gaussian_kde():
    x = np.random.default_rng(5).gamma(2.0, 1.0, 3000)
    grid = np.linspace(0, 6, 6001)
    reference = grid[np.argmax(stats.gaussian_kde(x)(grid))]
    assert kde_mode(x[None])[0] == pytest.approx(reference, abs=0.1)


def test_summarize_columns_are_consistent():
    rng = np.random.default_rng(6)
    samples = np.stack([rng.beta(2, 5, (3, 500)), rng.lognormal(0, 0.3, (3, 500))], axis=-1)
    out = summarize(samples, ["bt", "re_arcsec"],
                    mode_transforms={"re_arcsec": ModeTransform(np.log10, lambda v: 10 ** v)})
    for p in ("bt", "re_arcsec"):
        expected = {f"{p}_{s}" for s in ("mode", "median", "mean", "lo68", "hi68", "lo95",
                                        "hi95", "lo997", "hi997")}
        assert expected <= set(out)
        assert all(out[k].shape == (3,) for k in expected)
        assert (out[f"{p}_lo997"] <= out[f"{p}_lo95"]).all()
        assert (out[f"{p}_lo95"] <= out[f"{p}_lo68"]).all()
        assert (out[f"{p}_lo68"] <= out[f"{p}_median"]).all()
        assert (out[f"{p}_median"] <= out[f"{p}_hi68"]).all()
        assert (out[f"{p}_hi68"] <= out[f"{p}_hi95"]).all()
        assert (out[f"{p}_hi95"] <= out[f"{p}_hi997"]).all()
    np.testing.assert_allclose(out["bt_mean"], samples[..., 0].mean(1))
    # Mode of a lognormal found in log space: exp(mu) = 1, not the linear-space mode exp(-s^2)
    np.testing.assert_allclose(out["re_arcsec_mode"], 1.0, atol=0.12)


def _piled_at_one(rng, rows=3, n=500):
    """B/T posteriors piled at 1: a half-Gaussian below the bound."""
    return np.clip(1 - np.abs(rng.normal(0, 0.05, (rows, n))), 0, 1)


def _censored(bt):
    """B/T samples as a model's output transform gives them (``OutputSpec.inverse``):
    at or beyond the logit clip [0.01, 0.99] they are the bound."""
    return np.where(bt >= 0.99, 1.0, np.where(bt <= 0.01, 0.0, bt))


def _logit_normal(rng, centre, width, rows=50, n=500):
    """B/T posteriors as a network gives them: Gaussian in logit B/T, censored at the clip."""
    return _censored(1 / (1 + np.exp(-rng.normal(centre, width, (rows, n)))))


def _pile_at_one(rng, rows=50, n=500):
    """A network's posterior piled at 1: logit B/T ~ N(5, 1), two thirds beyond the clip."""
    return _logit_normal(rng, 5.0, 1.0, rows, n)


def test_the_mode_of_a_posterior_piled_at_a_bound_is_the_bound():
    """Over many galaxies: a KDE mode of 500 samples scatters by ~0.2 sigma even for a
    Gaussian, so single rows of the half-Gaussian fall within 0.01 of the bound three times in
    four; the plain KDE leaks past the bound and puts the typical mode inside."""
    rng = np.random.default_rng(11)
    piled = _piled_at_one(rng, rows=200)
    modes = kde_mode(piled, bounds=(0.0, 1.0))
    assert np.median(modes) == pytest.approx(1.0, abs=0.001)
    assert np.mean(modes > 0.99) > 0.65 and modes.min() > 0.95 and modes.max() <= 1.0
    assert np.median(kde_mode(1 - piled, bounds=(0.0, 1.0))) == pytest.approx(0.0, abs=0.001)
    assert np.median(kde_mode(piled)) < 0.985
    # What a model gives: censored at its logit clip, a point mass at the bound.
    np.testing.assert_array_equal(kde_mode(_pile_at_one(rng), bounds=(0.0, 1.0)), 1.0)


def test_an_interior_posterior_keeps_its_mode_within_bounds():
    x = np.clip(np.random.default_rng(12).normal(0.5, 0.05, (1, 500)), 0, 1)
    grid = np.linspace(0.3, 0.7, 4001)
    reference = grid[np.argmax(stats.gaussian_kde(x[0])(grid))]
    assert kde_mode(x, bounds=(0.0, 1.0))[0] == pytest.approx(reference, abs=0.002)
    assert kde_mode(x, bounds=(0.0, 1.0))[0] == kde_mode(x)[0]


#: The shipped model's outputs (its card's clip and scalers), for the model's mode transforms.
SHIPPED_OUTPUTS = [OutputSpec("bt", "", "logit", -0.005, 2.76, clip=(0.01, 0.99)),
                   OutputSpec("re_arcsec", "arcsec", "log10", 0.255, 0.321)]


def _model_modes(bt: np.ndarray) -> dict:
    """``summarize`` with a model's mode transforms, for B/T samples (N, S) beside R_e."""
    transforms = MorphologyModel.mode_transforms(SimpleNamespace(outputs=SHIPPED_OUTPUTS))
    radius = np.random.default_rng(0).lognormal(0, 0.1, bt.shape)
    return summarize(np.stack([bt, radius], axis=-1), ["bt", "re_arcsec"], transforms)


def test_the_models_mode_of_a_pile_is_the_bound_and_obeys_the_bounds_of_the_intervals():
    """Mode and intervals obey the same rule: in [0, 1], on a bound for a pile, and nothing
    clipped to the logit clip [0.01, 0.99]."""
    rng = np.random.default_rng(13)
    piled = _pile_at_one(rng)
    for samples, bound in ((piled, 1.0), (1 - piled, 0.0)):
        out = _model_modes(samples)
        np.testing.assert_array_equal(out["bt_mode"], bound)
        hpd_end = out["bt_hi68"] if bound else out["bt_lo68"]
        assert (np.abs(hpd_end - bound) < 0.01).all()
    interior = np.clip(rng.normal(0.5, 0.05, (50, 500)), 0, 1)
    modes = _model_modes(interior)["bt_mode"]
    # Found in logit B/T, whose Jacobian moves a Gaussian's peak by a fifth of its width.
    assert np.median(modes) == pytest.approx(0.5, abs=0.015)
    spread = np.concatenate([_censored(rng.uniform(0, 1, (50, 500))), piled], axis=0)
    modes = _model_modes(spread)["bt_mode"]
    assert ((modes == 0) | (modes == 1) | ((modes >= 0.01) & (modes <= 0.99))).all()


def test_the_catalogue_row_carries_the_bounded_mode(tiny_bundle_factory, monkeypatch):
    from galaxy_inspector.catalogue.rows import RowOrigin, single_row
    from galaxy_inspector.engine import load_model, measure_stamps, stamp_for
    from galaxy_inspector.io import SkyImage

    model = load_model(tiny_bundle_factory())
    real_predict = model.predict

    def piled_predict(*args, **kwargs):
        prediction = real_predict(*args, **kwargs)
        n, s, _ = prediction.samples.shape
        prediction.samples[..., 0] = _pile_at_one(np.random.default_rng(14), n, s)
        return prediction

    monkeypatch.setattr(model, "predict", piled_predict)
    yy, xx = np.indices((150, 150))
    image = 3e4 * np.exp(-np.hypot(yy - 74.5, xx - 74.5) * 0.168 / 0.5) / 300
    image += np.random.default_rng(0).normal(0, 2.0, image.shape)
    (m,) = measure_stamps([stamp_for(SkyImage.from_array(image, 0.168), 74.5, 74.5, model)],
                          model, n_samples=400)
    row = single_row(RowOrigin(id="piled", source="piled.fits"), m)
    assert row["bt_mode"] == row["bt_hi68"] == 1.0 and row["bt_lo95"] < 1.0


def _beside_a_broad_peak(rng, at_zero, rows=100, n=500):
    """B/T posteriors with a fraction ``at_zero`` censored at 0 beside a broad interior peak at
    0.3 (logit B/T ~ N(logit 0.3, 0.6): B/T 0.2-0.42 within one sigma)."""
    interior = 1 / (1 + np.exp(-rng.normal(np.log(0.3 / 0.7), 0.6, (rows, n))))
    return np.where(np.arange(n) < round(at_zero * n), 0.0, interior)


def test_a_bound_is_the_mode_only_if_it_holds_more_than_the_interior_peak_nearby():
    """The posterior is a point mass at each bound beside an interior density: 15 % at 0
    beside a broad peak holding 85 % does not make 0 the mode, 60 % does, and without
    samples on a bound the mode is the plain KDE's."""
    rng = np.random.default_rng(15)
    some = _model_modes(_beside_a_broad_peak(rng, 0.15))["bt_mode"]
    assert np.median(some) == pytest.approx(0.3, abs=0.02) and (some > 0.2).all()
    most = _model_modes(_beside_a_broad_peak(rng, 0.60))["bt_mode"]
    np.testing.assert_array_equal(most, 0.0)
    none = _beside_a_broad_peak(rng, 0.0)
    transform = MorphologyModel.mode_transforms(SimpleNamespace(outputs=SHIPPED_OUTPUTS))["bt"]
    np.testing.assert_allclose(_model_modes(none)["bt_mode"],
                               transform.inverse(kde_mode(transform.forward(none))), rtol=1e-12)
    # The same rule in the samples' own units, and at the upper bound.
    assert np.median(kde_mode(1 - _beside_a_broad_peak(rng, 0.15), bounds=(0.0, 1.0))) == \
        pytest.approx(0.7, abs=0.03)
    np.testing.assert_array_equal(kde_mode(1 - _beside_a_broad_peak(rng, 0.6),
                                           bounds=(0.0, 1.0)), 1.0)


def test_a_pile_and_the_interior_peak_beside_it_are_one_peak_on_the_bound():
    """logit B/T ~ N(clip, 0.5): half beyond the clip, the rest densest just inside it, within
    a bandwidth of the pile (whose window then holds it: the mode would be B/T 0.989 in one
    row in seven); and posteriors wholly on the bounds."""
    rng = np.random.default_rng(16)
    for centre, bound in ((4.6, 1.0), (-4.6, 0.0)):
        modes = _model_modes(_logit_normal(rng, centre, 0.5))["bt_mode"]
        np.testing.assert_array_equal(modes, bound)
    on_bounds = np.where(np.arange(500) < 150, 0.0, np.ones((3, 500)))
    np.testing.assert_array_equal(kde_mode(on_bounds, bounds=(0.0, 1.0)), 1.0)
    np.testing.assert_array_equal(kde_mode(1 - on_bounds, bounds=(0.0, 1.0)), 0.0)


def _gaussian_posteriors(n, width_ratio, rng, n_samples=400):
    """Truth ~ N(centre, 1); posterior samples ~ N(centre, width_ratio)."""
    centre = rng.normal(0, 3, (n, 1))
    truth = centre + rng.normal(0, 1.0, (n, 1))
    samples = centre[:, None, :] + width_ratio * rng.normal(0, 1.0, (n, n_samples, 1))
    return samples, truth


def test_coverage_of_calibrated_gaussians_matches_the_levels():
    samples, truth = _gaussian_posteriors(4000, 1.0, np.random.default_rng(7))
    cov = coverage(samples, truth)
    assert cov.shape == (3, 1)
    np.testing.assert_allclose(cov[:, 0], LEVELS, atol=0.025)


def test_coverage_exposes_over_and_under_confidence():
    rng = np.random.default_rng(8)
    over = coverage(*_gaussian_posteriors(3000, 0.5, rng))[:, 0]
    under = coverage(*_gaussian_posteriors(3000, 2.0, rng))[:, 0]
    assert over[0] == pytest.approx(0.383, abs=0.03)  # P(|z| < 0.5)
    assert under[0] == pytest.approx(0.954, abs=0.02)  # P(|z| < 2)


def test_coverage_counts_interval_ends_and_takes_one_parameter_or_several():
    # Samples 0..99 per galaxy: the 68.27 % HPD interval holds 69 of them, e.g. [0, 68].
    samples = np.tile(np.arange(100.0), (3, 1))
    lo, hi = hpd_interval(samples, 0.6827)
    truth = np.array([lo[0], hi[0], hi[0] + 0.5])  # both ends inside, just beyond outside
    one = coverage(samples, truth, levels=(0.6827,))
    assert one.shape == (1,) and one[0] == pytest.approx(2 / 3)
    both = coverage(np.stack([samples, samples], axis=-1), np.stack([truth, truth], axis=1),
                    levels=(0.6827, 0.9973))
    assert both.shape == (2, 2)
    np.testing.assert_array_equal(both[0], [2 / 3, 2 / 3])
    np.testing.assert_array_equal(both[1], [1.0, 1.0])


def test_summary_intervals_are_the_hpd_intervals():
    samples = np.random.default_rng(3).gamma(2.0, 1.0, (20, 300, 1))
    out = summarize(samples, ["x"])
    for level, suffix in zip(LEVELS, ("68", "95", "997"), strict=True):
        lo, hi = hpd_interval(samples[..., 0], level)
        np.testing.assert_array_equal(out[f"x_lo{suffix}"], lo)
        np.testing.assert_array_equal(out[f"x_hi{suffix}"], hi)
