"""What real stamps hold besides one smooth bulge+disk: the draws behind the realism options
of ``training.simulate`` (``galaxy-inspector-train simulate --realism``, docs/design.md
"Simulated training sets").

* **knots**: star-forming clumps, GalSim ``RandomKnots`` sampled from the disk's own (sheared)
  profile, so the clumps follow the disk and their half-light radius is the disk's; 5-50 of
  them carry 0-30 % of the disk's flux. They are part of the target's intrinsic light and of
  its truth (``training.truth``).
* **PSF variety**: Moffat with beta 2-5 or Kolmogorov (half each), ellipticity components of
  sigma 0.05; the FWHM keeps its draw (``broad_psf_fraction``).
* **neighbours**: 1 + Poisson(1) other sources in the stamp, 70 % galaxies (single Sérsic,
  n 0.5-4, half-light radius 0.2-2", 3-300 % of the target's flux), 30 % stars (3-3000 %),
  at least max(2", 1.5 R_e) from the target, seen through the same PSF, not in the truth.
* **masks**: pixels stored as NaN, which ``training.observe`` fills with sky noise the way the
  app fills masked pixels (``preprocessing.make_stamp``): a saturated star's core and bleed
  trail (the star's light drawn around them), a bad column, or a strip off the image's edge;
  none within ``MASK_CLEARANCE_PX`` of the target.
* **psf_known**: whether the stamp's PSF FWHM counts as known (for a network conditioned on
  seeing, which learns an "unknown" value from the rest).

Each option draws from its own random stream (``streams``), so turning one on changes neither
the galaxies nor another option's draws, and with all options off nothing is drawn at all.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["OPTION_COLUMNS", "PSF_KINDS", "PRESET", "streams", "draw_knots", "draw_psf_variety",
           "draw_neighbours", "draw_masks", "draw_psf_known", "mask_pixels"]

PSF_KINDS = ("moffat", "kolmogorov")  # the ``psf_kind`` column's codes
#: ``SimulationConfig`` values ``--realism`` sets (each option given on its own wins).
PRESET = {"knots_fraction": 0.5, "psf_variety": True, "neighbours_fraction": 0.5,
          "masks_fraction": 0.2, "psf_known_fraction": 0.7}
#: The columns each option adds to the file (nothing without it: the default file is unchanged).
OPTION_COLUMNS = {
    "knots_fraction": ("knot_flux_fraction", "knot_npoints", "knot_seed"),
    "psf_variety": ("psf_kind",),
    "neighbours_fraction": ("n_neighbours", "n_stars", "neighbour_flux"),
    "masks_fraction": ("masked_fraction",),
    "psf_known_fraction": ("psf_known",),
}
KNOT_FLUX_FRACTION = (0.0, 0.3)  # of the disk's flux
KNOT_NPOINTS = (5, 50)
MOFFAT_BETA = (2.0, 5.0)
PSF_ELLIPTICITY_SIGMA = 0.05
NEIGHBOUR_FLUX_RATIO = (0.03, 3.0)  # galaxies, of the target's flux (log-uniform)
STAR_FLUX_RATIO = (0.03, 30.0)
SATURATED_FLUX_RATIO = (30.0, 3000.0)
NEIGHBOUR_HLR_ARCSEC = (0.2, 2.0)
#: Pixels around the target's centre no mask reaches: the target stays measurable.
MASK_CLEARANCE_PX = 8


def streams(seed: int, start: int) -> list[np.random.Generator]:
    """One generator per option for the chunk of galaxies from ``start`` (beside the
    galaxies' own ``[seed, start]``)."""
    return [np.random.default_rng([seed, start, k]) for k in range(1, len(OPTION_COLUMNS) + 1)]


def _log_uniform(rng, lo_hi) -> float:
    return float(10.0 ** rng.uniform(*np.log10(lo_hi)))


def draw_knots(p: dict, rng: np.random.Generator, fraction: float) -> None:
    """Clumps in the disk of ``fraction`` of the galaxies that have one."""
    clumpy = p["bt"] < 1.0 and rng.uniform() < fraction
    p["knot_flux_fraction"] = rng.uniform(*KNOT_FLUX_FRACTION) if clumpy else 0.0
    p["knot_npoints"] = int(rng.integers(KNOT_NPOINTS[0], KNOT_NPOINTS[1] + 1)) if clumpy else 0
    p["knot_seed"] = int(rng.integers(1, 2 ** 31)) if clumpy else 0


def draw_psf_variety(p: dict, rng: np.random.Generator) -> None:
    """Moffat of any beta in 2-5 or Kolmogorov, with a few per cent of ellipticity."""
    kolmogorov = rng.uniform() < 0.5
    p["psf_kind"] = PSF_KINDS.index("kolmogorov" if kolmogorov else "moffat")
    beta = rng.uniform(*MOFFAT_BETA)
    p["psf_beta"] = math.nan if kolmogorov else beta
    p["psf_e1"], p["psf_e2"] = rng.normal(0.0, PSF_ELLIPTICITY_SIGMA, 2)


def _position(rng, half_side: float, min_distance: float, tries: int = 20):
    """A position (arcsec from the target) uniform over the stamp, ``min_distance`` away."""
    for _ in range(tries):
        x, y = rng.uniform(-half_side, half_side, 2)
        if math.hypot(x, y) >= min_distance:
            return float(x), float(y)
    return None


def draw_neighbours(p: dict, rng: np.random.Generator, fraction: float,
                    half_side_arcsec: float) -> None:
    """Other galaxies and stars in ``fraction`` of the stamps (``p["neighbours"]``: tuples
    ``(flux, x, y, n, hlr, q, pa)``, arcsec from the target, ``hlr`` 0 for a star)."""
    sources = p.setdefault("neighbours", [])
    count = 1 + rng.poisson(1.0) if rng.uniform() < fraction else 0
    min_distance = max(2.0, 1.5 * p["re_arcsec"])
    for _ in range(count):
        star = rng.uniform() < 0.3
        at = _position(rng, half_side_arcsec, min_distance)
        if at is None:
            continue
        if star:
            sources.append((_log_uniform(rng, STAR_FLUX_RATIO), *at, 0.0, 0.0, 1.0, 0.0))
        else:
            sources.append((_log_uniform(rng, NEIGHBOUR_FLUX_RATIO), *at,
                            round(rng.uniform(0.5, 4.0) / 0.5) * 0.5,  # GalSim reuses tables
                            _log_uniform(rng, NEIGHBOUR_HLR_ARCSEC), rng.uniform(0.3, 1.0),
                            rng.uniform(-90.0, 90.0)))
    p["n_neighbours"] = sum(1 for s in sources if s[4] > 0)
    p["n_stars"] = len(sources) - p["n_neighbours"]
    p["neighbour_flux"] = float(sum(s[0] for s in sources))


def draw_masks(p: dict, rng: np.random.Generator, fraction: float, stamp_size: int,
               pixel_scale: float) -> None:
    """Masked regions in ``fraction`` of the stamps (``p["masks"]``, stamp pixels: ``("disk",
    x, y, r)`` or ``("box", x0, x1, y0, y1)``, bounds inclusive); a saturated star also joins
    ``p["neighbours"]``."""
    masks = p["masks"] = []
    if rng.uniform() >= fraction:
        return
    centre = (stamp_size - 1) / 2.0
    tx, ty = centre + p["dx"], centre + p["dy"]
    half = stamp_size / 2.0
    kinds = rng.choice(3, size=2 if rng.uniform() < 0.3 else 1, replace=False)
    for kind in kinds:
        if kind == 0:  # saturated star: core and bleed trail along the CCD columns
            for _ in range(20):  # in the stamp, its trail clear of the target
                sx, sy = rng.uniform(0.0, stamp_size - 1.0, 2)
                if abs(sx - tx) >= MASK_CLEARANCE_PX + 4 and math.hypot(sx - tx, sy - ty) > 20:
                    break
            else:
                continue
            p.setdefault("neighbours", []).append(
                (_log_uniform(rng, SATURATED_FLUX_RATIO), (sx - tx) * pixel_scale,
                 (sy - ty) * pixel_scale, 0.0, 0.0, 1.0, 0.0))
            core = rng.uniform(1.0, 3.0) * p["psf_fwhm"] / pixel_scale
            width, length = rng.uniform(0.5, 1.5), rng.uniform(2.0, 6.0) * core
            masks += [("disk", sx, sy, core),
                      ("box", sx - width, sx + width, sy - length, sy + length)]
        elif kind == 1:  # bad column, whole or in part
            x0 = float(round(tx + rng.choice((-1.0, 1.0)) * rng.uniform(MASK_CLEARANCE_PX, half)))
            x0 = min(max(x0, 0.0), stamp_size - 1.0)
            y0 = rng.uniform(-0.5, stamp_size - 10.5)
            y1 = y0 + rng.uniform(10.0, stamp_size - 0.5 - y0)  # at least 10 px long
            if rng.uniform() < 0.5:
                y0, y1 = -0.5, stamp_size - 0.5
            masks.append(("box", x0, x0 + float(rng.integers(0, 2)), y0, y1))  # 1-2 px wide
        else:  # the stamp runs off the image: a strip along one side
            width = rng.uniform(4.0, min(32.0, half - MASK_CLEARANCE_PX - 1.0))
            edge = int(rng.integers(4))
            far, near = stamp_size - 0.5, -0.5
            masks.append([("box", near, near + width, near, far),
                          ("box", far - width, far, near, far),
                          ("box", near, far, near, near + width),
                          ("box", near, far, far - width, far)][edge])


def mask_pixels(p: dict, stamp_size: int) -> np.ndarray | None:
    """The stamp's masked pixels (``None`` when there are none)."""
    if not p.get("masks"):
        return None
    yy, xx = np.mgrid[:stamp_size, :stamp_size]
    masked = np.zeros((stamp_size, stamp_size), bool)
    for shape in p["masks"]:
        if shape[0] == "disk":
            _, x, y, r = shape
            masked |= np.hypot(xx - x, yy - y) <= r
        else:
            _, x0, x1, y0, y1 = shape
            masked |= (xx >= x0) & (xx <= x1) & (yy >= y0) & (yy <= y1)
    centre = (stamp_size - 1) / 2.0
    clear = np.hypot(xx - centre - p["dx"], yy - centre - p["dy"]) < MASK_CLEARANCE_PX
    return masked & ~clear


def draw_psf_known(p: dict, rng: np.random.Generator, fraction: float) -> None:
    """Whether the stamp's PSF FWHM is given to the network (1) or left unknown (0)."""
    p["psf_known"] = float(rng.uniform() < fraction)
