"""Exact truth values for simulated bulge+disk galaxies.

``re_arcsec`` in Galaxy Inspector is the radius of the circle, centred on the galaxy, that
encloses half of the *total untruncated* intrinsic (pre-PSF) light of bulge + disk
(``galaxy_inspector.conventions``).
It is computed from the Sérsic profiles themselves, not from a pixelised image:

* a sheared Sérsic component (GalSim convention: area-preserving shear with axis ratio ``q``)
  becomes isotropic under the unit-Jacobian map ``(x, y) -> (sqrt(q) x, y / sqrt(q))``;
* the circle of radius ``R`` maps to an ellipse with semi-axes ``sqrt(q) R`` and ``R / sqrt(q)``;
* the flux of an isotropic profile inside a star-shaped region is the angular average of its
  cumulative fraction ``F(rho(theta))`` along the boundary, and for a Sérsic profile
  ``F(r) = P(2n, b_n (r / r_e)^(1/n))`` (regularised lower incomplete gamma function).

Position angles do not enter: a centred circle is isotropic.

Star-forming clumps (GalSim ``RandomKnots``) are point sources of the intrinsic light: each adds
its flux to every circle whose radius exceeds its distance from the centre, so the enclosed
flux stays exact (a step where a clump lies) and R_e is that of the drawn realisation.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import brentq
from scipy.special import gammainc, gammaincinv

__all__ = ["sersic_b", "sersic_enclosed_fraction", "circular_half_light_radius"]

# Uniform angles over a quarter turn: the ellipse boundary is symmetric, and the trapezoid rule
# on a smooth periodic integrand converges exponentially.
_THETA = (np.arange(256) + 0.5) * (0.5 * np.pi / 256)


def sersic_b(n):
    """Sérsic ``b_n`` such that the half-light radius encloses exactly half of the flux."""
    return gammaincinv(2.0 * np.asarray(n, dtype=float), 0.5)


def sersic_enclosed_fraction(radius, n, half_light_radius, q=1.0):
    """Fraction of a sheared Sérsic profile's total flux inside a centred circle.

    Parameters
    ----------
    radius : float
        Circle radius (same unit as ``half_light_radius``, typically arcsec).
    n : float
        Sérsic index.
    half_light_radius : float
        Half-light radius of the profile *before* shearing (GalSim's ``half_light_radius``).
    q : float
        Axis ratio b/a of the area-preserving shear, in (0, 1].
    """
    if radius <= 0:
        return 0.0
    sq = np.sqrt(q)
    a_axis, b_axis = sq * radius, radius / sq
    rho = 1.0 / np.sqrt((np.cos(_THETA) / a_axis) ** 2 + (np.sin(_THETA) / b_axis) ** 2)
    x = sersic_b(n) * (rho / half_light_radius) ** (1.0 / n)
    return float(np.mean(gammainc(2.0 * n, x)))


def circular_half_light_radius(components, points=()):
    """Circular half-light radius of a sum of sheared Sérsic components and point sources.

    Parameters
    ----------
    components : sequence of (flux_fraction, n, half_light_radius, q)
        Flux fractions need not be normalised; components with zero flux are ignored.
    points : sequence of (flux, distance)
        Point sources (clumps) in the flux unit of ``components`` and the radius unit, at
        ``distance`` from the centre.

    Returns
    -------
    float
        The radius (unit of the inputs) enclosing half of the total untruncated flux.
    """
    comps = [c for c in components if c[0] > 0]
    if not comps:
        raise ValueError("at least one component must have positive flux")
    point_flux, point_distance = np.asarray(points, dtype=float).reshape(-1, 2).T
    total = sum(c[0] for c in comps) + point_flux.sum()

    def excess(radius):
        inside = sum(w * sersic_enclosed_fraction(radius, n, r, q) for w, n, r, q in comps)
        inside += point_flux[point_distance < radius].sum()
        return inside / total - 0.5

    hi = max(r / np.sqrt(q) for _, _, r, q in comps) * 2.0
    while excess(hi) < 0:
        hi *= 2.0
    lo = min(r * np.sqrt(q) for _, _, r, q in comps) * 0.5
    while excess(lo) > 0:
        lo *= 0.5
    return brentq(excess, lo, hi, xtol=1e-10, rtol=1e-10)
