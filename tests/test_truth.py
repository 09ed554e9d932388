"""R_e truth (training/truth.py) against its definition, by independent numerical integration."""

from __future__ import annotations

import galsim
import numpy as np
import pytest
from scipy import integrate, optimize, special

from training.truth import circular_half_light_radius, sersic_b, sersic_enclosed_fraction


@pytest.mark.parametrize("n", [0.5, 1.0, 2.5, 4.0, 6.0])
@pytest.mark.parametrize("r_hl", [0.1, 1.3, 5.0])
def test_round_single_sersic_re_is_its_half_light_radius(n, r_hl):
    assert circular_half_light_radius([(1.0, n, r_hl, 1.0)]) == pytest.approx(r_hl, rel=1e-8)


def test_sersic_b_puts_half_the_flux_inside_r_hl():
    n = np.array([0.8, 1.0, 4.0, 5.0])
    assert np.allclose(special.gammainc(2 * n, sersic_b(n)), 0.5)
    assert sersic_b(4.0) == pytest.approx(7.669, abs=1e-3)  # the classic de Vaucouleurs value


def _profile(x, y, n, r_hl, q):
    """Surface brightness of a Sérsic sheared to axis ratio q (area-preserving), any norm."""
    # Inverse of the unit-Jacobian shear: an ellipse with semi-axes r/sqrt(q) (x) and r*sqrt(q) (y).
    r = np.sqrt(x * x * q + y * y / q)
    return np.exp(-sersic_b(n) * (r / r_hl) ** (1.0 / n))


def _numerical_fraction(radius, components):
    """Flux inside a centred circle / total, by 2-D quadrature in polar coordinates."""
    inside = total = 0.0
    for w, n, r_hl, q in components:
        def f(r, phi, n=n, r_hl=r_hl, q=q):
            return _profile(r * np.cos(phi), r * np.sin(phi), n, r_hl, q) * r
        # A quarter turn suffices (the ellipse is symmetric); the cusp of n=4 needs tight tolerances.
        flux_in, _ = integrate.dblquad(f, 0.0, np.pi / 2, 0.0, radius, epsabs=0, epsrel=1e-9)
        # Total flux of the (area-preserving) sheared profile = that of the round one.
        flux_all, _ = integrate.quad(lambda r, n=n, r_hl=r_hl: _profile(r, 0.0, n, r_hl, 1.0) * r,
                                     0.0, np.inf, epsabs=0, epsrel=1e-11, limit=400)
        inside += w * flux_in / (np.pi / 2 * flux_all)
        total += w
    return inside / total


@pytest.mark.parametrize("components", [
    [(1.0, 1.0, 1.2, 0.3)],                              # flattened exponential disk
    [(1.0, 4.0, 0.7, 0.5)],                              # flattened de Vaucouleurs bulge
    [(0.6, 1.0, 1.5, 0.5), (0.4, 4.0, 0.4, 0.8)],        # bulge + disk
    [(0.15, 0.8, 3.0, 0.25), (0.85, 5.0, 0.2, 0.95)],    # compact bulge, huge thin disk
])
def test_re_matches_independent_2d_integration(components):
    re = circular_half_light_radius(components)
    numerical = optimize.brentq(lambda r: _numerical_fraction(r, components) - 0.5,
                                0.5 * re, 2.0 * re, rtol=1e-7)
    assert re == pytest.approx(numerical, rel=1e-3)


def test_enclosed_fraction_of_sheared_profile_matches_quadrature():
    value = sersic_enclosed_fraction(0.9, 1.0, 1.2, q=0.3)
    assert value == pytest.approx(_numerical_fraction(0.9, [(1.0, 1.0, 1.2, 0.3)]), abs=1e-6)
    assert sersic_enclosed_fraction(0.0, 1.0, 1.2) == 0.0


def test_flattening_moves_re_inside_hlr_of_the_unsheared_profile():
    # A circle of radius r_hl misses light along the stretched major axis of a sheared disk.
    assert circular_half_light_radius([(1.0, 1.0, 1.0, 0.3)]) > 1.0


def test_identical_components_give_their_radius_whatever_the_weights():
    comps = [(0.3, 1.0, 0.8, 0.6), (0.7, 1.0, 0.8, 0.6)]
    assert circular_half_light_radius(comps) == pytest.approx(
        circular_half_light_radius([(1.0, 1.0, 0.8, 0.6)]), rel=1e-9)


def test_zero_flux_components_are_ignored_and_all_zero_is_an_error():
    assert circular_half_light_radius([(0.0, 4.0, 3.0, 0.5), (1.0, 1.0, 1.0, 1.0)]) == \
        pytest.approx(1.0, rel=1e-8)
    with pytest.raises(ValueError):
        circular_half_light_radius([(0.0, 1.0, 1.0, 1.0)])


def test_simulated_truth_matches_galsim_profile_flux_inside_re():
    """GalSim's own profile (drawn finely, no PSF) holds half its flux inside the truth R_e."""
    from training.simulate import draw_parameters, intrinsic_profile

    rng = np.random.default_rng(3)
    p = draw_parameters(rng)
    while p["components"] != 2 or p["re_arcsec"] > 2.0:
        p = draw_parameters(rng)
    scale = p["re_arcsec"] / 40.0
    size = 512
    # Exact-ish: high-accuracy parameters so the check is limited by pixels, not by GalSim.
    gsp = galsim.GSParams(folding_threshold=1e-4, maxk_threshold=1e-4)
    obj = intrinsic_profile(p).withGSParams(gsp)
    image = obj.drawImage(nx=size, ny=size, scale=scale, method="no_pixel").array
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2.0
    inside = image[np.hypot(xx, yy) * scale <= p["re_arcsec"]].sum()
    assert inside == pytest.approx(0.5, abs=5e-3)
