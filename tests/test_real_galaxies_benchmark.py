"""The real-galaxy benchmark's own fitter (benchmarks/galaxy_fitters.py) recovers GalSim truths.

The benchmark judges the tool against these fits, so they must get simulated galaxies right:
a PSF-convolved Sérsic and a bulge+disk drawn with GalSim at the training's default accuracy,
with noise and a neighbour to mask, fitted back to R_e within 5 %.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import galsim
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import galaxy_fitters as fitters  # noqa: E402

SCALE = 0.168
PSF = galsim.Moffat(beta=3.0, fwhm=0.9)


def _window(galaxy, seed, neighbour=True):
    """A noisy 81x81 image of ``galaxy`` (plus a bright star off-centre) as a Window."""
    n = 81
    scene = galaxy
    if neighbour:
        scene = galaxy + galsim.Gaussian(sigma=0.05, flux=0.6 * galaxy.flux).shift(4.0, 3.0)
    image = galsim.Convolve(scene, PSF).drawImage(nx=n, ny=n, scale=SCALE).array
    rng = np.random.default_rng(seed)
    sky_sigma = 2.0
    variance = sky_sigma ** 2 + np.clip(image, 0, None) / 50.0
    data = image + rng.normal(size=image.shape) * np.sqrt(variance)
    bad = np.zeros(data.shape, bool)
    return fitters.cut_window(data, variance, bad, (n - 1) / 2, (n - 1) / 2, n // 2, SCALE,
                              PSF)


def test_circular_half_light_radius_of_round_and_flattened_profiles():
    # Round: the circle holding half the light is the profile's half-light radius at any n.
    for n in (1.0, 4.0, 6.0):
        round_profile = fitters.sersic_profile(1.0, 1.5, n, 1.0)
        assert fitters.circular_half_light_radius(round_profile, 1.5) == pytest.approx(
            1.5, rel=2e-3)
    # Flattened: between the minor and major half-light axes, and smaller than the major.
    flat = fitters.sersic_profile(1.0, 2.0, 1.0, 0.3)
    r = fitters.circular_half_light_radius(flat, 2.0)
    assert 2.0 * 0.3 < r < 2.0


@pytest.mark.slow
def test_sersic_fit_recovers_a_galsim_truth():
    truth = fitters.sersic_profile(2.0e4, 1.2, 2.5, 0.7, 30.0)
    true_re = fitters.circular_half_light_radius(truth, 1.2)
    window = _window(truth, seed=1)
    assert window.mask.any(), "the neighbour was not masked"
    fit = fitters.fit_sersic(window)
    assert fit.re_arcsec == pytest.approx(true_re, rel=0.05)
    assert fit.flux == pytest.approx(2.0e4, rel=0.05)
    assert fit.n == pytest.approx(2.5, abs=0.5)


@pytest.mark.slow
def test_bulge_disk_fit_recovers_a_galsim_truth():
    bulge = galsim.DeVaucouleurs(half_light_radius=0.4, flux=0.3 * 3.0e4)
    disk = galsim.Exponential(half_light_radius=1.5, flux=0.7 * 3.0e4).shear(q=0.6,
                                                                           beta=20 * galsim.degrees)
    truth = bulge + disk
    true_re = fitters.circular_half_light_radius(truth, 1.5)
    fit = fitters.fit_bulge_disk(_window(truth, seed=2))
    assert fit.re_arcsec == pytest.approx(true_re, rel=0.05)
    assert fit.flux == pytest.approx(3.0e4, rel=0.05)
    assert fit.bt == pytest.approx(0.3, abs=0.1)
    assert math.isnan(fit.n)


def test_curve_of_growth_of_an_isolated_galaxy():
    truth = fitters.sersic_profile(2.0e4, 1.0, 1.0, 1.0)
    growth = fitters.curve_of_growth(window := _window(truth, seed=3, neighbour=False),
                                     *window.centre)
    assert growth.converged
    # Twice the Petrosian radius holds about 99 % of an exponential's light; r50 is PSF-
    # broadened (0.9" FWHM on a 1" galaxy), so it is larger than the intrinsic R_e.
    assert growth.flux == pytest.approx(2.0e4, rel=0.05)
    assert 1.0 < growth.r50_arcsec < 1.3
