"""Posterior summaries: HPD intervals, KDE modes, catalogue columns and coverage."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from galaxy_inspector.posterior import LEVELS, coverage, hpd_interval, kde_mode, summarize


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
                    mode_transforms={"re_arcsec": (np.log10, lambda v: 10 ** v)})
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
