"""Summaries of posterior samples: KDE mode, median, mean and highest-density intervals.

Everything is vectorised over galaxies: arrays of samples have shape ``(N, S)`` (N galaxies, S
samples) or ``(N, S, P)`` for P parameters.

Bounds (``kde_mode``, ``ModeTransform``): a model's B/T samples are censored at its logit clip
(``OutputSpec.inverse``: a value at or beyond the clip is exactly 0 or 1, as for a
one-component galaxy), so they lie in {0} ∪ [0.01, 0.99] ∪ {1} for the shipped clip. The
median and the interval ends are samples, so they obey that rule by construction; the mode is
found in the network's working space (logit B/T, log radius and flux, where the posteriors are
smooth) within the clip, where the censored samples sit as a point mass beside the reflected
density of the others: a posterior piled at a bound has its mode on it, which maps back to
exactly 0 or 1, and a few censored samples beside a broad peak inside do not (``kde_mode``). So
mode and intervals obey the same bounds, and none of them is clipped to [0.01, 0.99].
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["LEVELS", "LEVEL_SUFFIXES", "SUMMARY_STATS", "UNBOUNDED", "ModeTransform",
           "summary_keys", "hpd_interval", "kde_mode", "summarize", "coverage"]

UNBOUNDED = (-math.inf, math.inf)


def _same(values):
    return values


@dataclass(frozen=True)
class ModeTransform:
    """Where a parameter's KDE mode is found: on the scale ``forward`` maps samples to
    (``inverse`` maps the mode back), within ``bounds`` on that scale, where the density is
    reflected (``MorphologyModel.mode_transforms`` gives each output's)."""

    forward: Callable = _same
    inverse: Callable = _same
    bounds: tuple[float, float] = UNBOUNDED


#: Credible levels of the catalogue's intervals (1, 2, 3 sigma of a Gaussian).
LEVELS = (0.6827, 0.9545, 0.9973)
LEVEL_SUFFIXES = ("68", "95", "997")
#: What ``summarize`` gives per parameter, in catalogue column order: ``P_mode``, ``P_median``...
SUMMARY_STATS = ("mode", "median", "mean") + tuple(f"{side}{s}" for s in LEVEL_SUFFIXES
                                                   for side in ("lo", "hi"))


def summary_keys(name: str) -> list[str]:
    """The keys ``summarize`` gives parameter ``name`` (``name_mode`` ... ``name_hi997``); they
    are also its catalogue columns."""
    return [f"{name}_{stat}" for stat in SUMMARY_STATS]


def hpd_interval(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Shortest interval holding ``level`` of the samples, per galaxy.

    For a unimodal posterior this is the highest-posterior-density interval. Hand-written
    rather than ``arviz.hdi``: one sort and one vectorised search over all galaxies at once,
    measured 2.3x faster, and it spares the app a dependency.

    Parameters
    ----------
    samples : array_like, shape (N, S)
        S posterior samples of one parameter for each of N galaxies, in the parameter's units.
    level : float
        Credible level in (0, 1], e.g. 0.6827.

    Returns
    -------
    lo, hi : ndarray, shape (N,)
        Interval ends in the samples' units; both are samples, so the interval holds at least
        ``ceil(level * S)`` of them.
    """
    return _shortest_interval(np.sort(np.asarray(samples, dtype=np.float64), axis=-1), level)


def _shortest_interval(s: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """``hpd_interval`` of samples already sorted along the last axis (sort once, many levels)."""
    n = s.shape[-1]
    k = min(n, max(1, int(np.ceil(level * n))))
    widths = s[..., k - 1:] - s[..., :n - k + 1]
    best = np.argmin(widths, axis=-1)[..., None]
    lo = np.take_along_axis(s, best, axis=-1)[..., 0]
    hi = np.take_along_axis(s, best + k - 1, axis=-1)[..., 0]
    return lo, hi


def kde_mode(samples: np.ndarray, grid_size: int = 512,
             bounds: tuple[float, float] = UNBOUNDED) -> np.ndarray:
    """Mode of a posterior as a Gaussian kernel density estimate, per galaxy, within ``bounds``.

    A binned KDE: samples are histogrammed on a fine per-row grid, smoothed by FFT with a
    Gaussian of the normal-reference bandwidth with Silverman's robust spread,
    ``1.06 min(sd, IQR / 1.34) S^(-1/5)`` for S samples (Scott's ``sd S^(-1/5)`` where that is
    zero, e.g. when most samples are equal), and the grid point of highest density is refined
    by a parabola.
    Hand-written rather than ``scipy.stats.gaussian_kde``, which evaluates every sample at every
    grid point galaxy by galaxy: this is measured 145-185x faster on 500-sample posteriors.

    A finite bound within reach of the kernel is handled by reflection (the samples mirrored
    about it are added to the density, the standard boundary correction): a plain KDE leaks
    density past the bound and puts the mode of a posterior piled at the bound inside the
    range, while the reflected density of such a pile peaks at the bound itself.

    Samples on a bound (at or beyond it: B/T's censored at its logit clip) are a point mass
    there, not density: a KDE would squeeze them into a spike half a kernel wide that beats a
    broad interior peak holding several times their mass. So the posterior is taken as a
    point mass at each bound beside a continuous interior, the KDE above of the other samples
    (with their own bandwidth h), and the mode is the candidate, the interior peak or a bound
    holding samples, with the most samples within h of it: the most probable value at the
    KDE's resolution. An interior peak within h of such a bound is part of the pile there,
    whose mode is the bound. Beside a Gaussian interior peak, a bound holding over about 20 %
    of 500 samples wins; without samples on a bound this is the plain reflected KDE's mode.

    Parameters
    ----------
    samples : array_like, shape (N, S)
        S samples of one parameter for each of N galaxies, within ``bounds``.
    grid_size : int
        Points of the density grid between the padded extremes of each galaxy's interior
        samples (the padding stops at the bounds).
    bounds : (float, float)
        Lower and upper limit of the parameter (``-inf``/``inf``: unbounded on that side).

    Returns
    -------
    ndarray, shape (N,)
        The mode in the samples' units, within ``bounds`` (the common value where all samples
        are equal).
    """
    x = np.asarray(samples, dtype=np.float64)
    on_bounds = (x <= bounds[0], x >= bounds[1])
    interior = ~(on_bounds[0] | on_bounds[1])
    peak, bw = _interior_peak(x, interior, grid_size, bounds)
    held = [on.any(axis=1) for on in on_bounds]
    for bound, holds in zip(bounds, held, strict=True):
        peak = np.where(holds & (np.abs(peak - bound) <= bw), bound, peak)

    def samples_within_bw(value):
        return np.sum(np.abs(x - np.broadcast_to(value, peak.shape)[:, None]) <= bw[:, None],
                      axis=1)

    # The interior peak wins ties; a row without interior samples is on a bound.
    mode, best = peak, np.where(interior.any(axis=1), samples_within_bw(peak), -1)
    for bound, holds in zip(bounds, held, strict=True):
        mass = np.where(holds, samples_within_bw(bound), -1)
        mode, best = np.where(mass > best, bound, mode), np.maximum(mass, best)
    return mode


def _interior_peak(x: np.ndarray, interior: np.ndarray, grid_size: int,
                   bounds: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """``kde_mode``'s reflected KDE of the ``interior`` samples of each row: its peak and its
    bandwidth (rows without interior samples get a meaningless peak)."""
    n_rows = x.shape[0]
    lower, upper = bounds
    count = interior.sum(axis=1)
    n = np.maximum(count, 1)
    # The interior samples first in each row (the others pushed to the end as inf).
    s = np.sort(np.where(interior, x, np.inf), axis=1)
    s[count == 0] = 0.0
    lo, hi = s[:, 0], np.take_along_axis(s, (n - 1)[:, None], axis=1)[:, 0]
    span = hi - lo
    mean = np.where(interior, x, 0.0).sum(axis=1) / n
    sd = np.sqrt(np.where(interior, (x - mean[:, None]) ** 2, 0.0).sum(axis=1) / n)
    q25, q75 = (_sorted_percentile(s, n, q) for q in (0.25, 0.75))
    bw = 1.06 * np.minimum(sd, (q75 - q25) / 1.34) * n ** -0.2
    bw = np.where(bw > 0, bw, np.maximum(sd, 1e-12) * n ** -0.2)
    pad = 3.0 * bw
    # Rows whose padded range reaches a bound start (end) their grid exactly on it.
    reflect_lo, reflect_hi = lo - pad <= lower, hi + pad >= upper
    lo_g = np.where(reflect_lo, lower, lo - pad)
    hi_g = np.where(reflect_hi, upper, hi + pad)
    g = grid_size
    step = np.maximum((hi_g - lo_g) / (g - 1), 1e-300)
    idx = np.clip(np.rint((np.where(interior, x, lo_g[:, None]) - lo_g[:, None])
                          / step[:, None]).astype(int), 0, g - 1)
    hist = np.bincount((idx + g * np.arange(n_rows)[:, None]).ravel(),
                       weights=interior.ravel(), minlength=n_rows * g).reshape(n_rows, g)
    # The grid between its mirror images about its first and last points, where some row
    # reaches a bound: bin j of the grid is at left + j, its reflections at left - j and
    # left + 2g - 2 - j.
    left, right = g * bool(reflect_lo.any()), g * bool(reflect_hi.any())
    extended = np.zeros((n_rows, left + g + right))
    extended[:, left:left + g] = hist
    if left:
        extended[:, 1:g + 1] += reflect_lo[:, None] * hist[:, ::-1]
    if right:
        extended[:, left + g - 1:left + 2 * g - 1] += reflect_hi[:, None] * hist[:, ::-1]
    # Gaussian smoothing in Fourier space (kernel width in grid units per row), zero-padded
    # so nothing wraps around.
    n_fft = 2 * extended.shape[1]
    freqs = np.fft.rfftfreq(n_fft)
    sigma_px = (bw / step)[:, None]
    kernel = np.exp(-2.0 * (np.pi * freqs[None, :] * sigma_px) ** 2)
    dens = np.fft.irfft(np.fft.rfft(extended, n=n_fft, axis=1) * kernel, axis=1)
    dens = dens[:, left:left + g]
    i = np.argmax(dens, axis=1)
    r = np.arange(n_rows)
    inner = np.clip(i, 1, g - 2)
    y0, y1, y2 = dens[r, inner - 1], dens[r, inner], dens[r, inner + 1]
    denom = y0 - 2 * y1 + y2
    # Refined between grid points; a peak on the grid's end (a bound) stays on it.
    refine = (i == inner) & (denom < 0)
    shift = np.where(refine, 0.5 * (y0 - y2) / np.where(refine, denom, 1.0), 0.0)
    peak = lo_g + (i + np.clip(shift, -0.5, 0.5)) * step
    return np.where(span > 0, np.clip(peak, lower, upper), lo), bw


def _sorted_percentile(s: np.ndarray, n: np.ndarray, q: float) -> np.ndarray:
    """The ``q`` quantile (linear interpolation, as ``np.percentile``) of the first ``n[k]``
    values of each row ``k`` of the row-sorted ``s``."""
    position = q * (n - 1)
    below = np.floor(position).astype(int)
    above = np.minimum(below + 1, n - 1)
    a = np.take_along_axis(s, below[:, None], axis=1)[:, 0]
    b = np.take_along_axis(s, above[:, None], axis=1)[:, 0]
    return a + (b - a) * (position - below)


def summarize(samples: np.ndarray, names, mode_transforms=None) -> dict[str, np.ndarray]:
    """The catalogue's summary of posterior samples: mode, median, mean and HPD intervals.

    Parameters
    ----------
    samples : array_like, shape (N, S, P)
        S posterior samples of P parameters for N galaxies, in physical units (e.g. ``bt``
        dimensionless, ``re_arcsec`` in arcsec, ``flux_njy`` in nJy).
    names : sequence of str
        The P parameter names, in the order of the last axis.
    mode_transforms : dict, optional
        Name -> ``ModeTransform``: the scale that parameter's KDE mode is found on and its
        bounds there (``MorphologyModel.mode_transforms`` gives a bundle's); others are
        unbounded, in the samples' units.

    Returns
    -------
    dict of str to ndarray, shape (N,)
        ``P_mode``, ``P_median``, ``P_mean``, ``P_lo68``, ``P_hi68``, ``P_lo95``, ``P_hi95``,
        ``P_lo997``, ``P_hi997`` (``summary_keys(P)``) for each name P, in P's units.
    """
    samples = np.asarray(samples)
    out = {}
    for j, name in enumerate(names):
        s = samples[..., j].astype(np.float64)
        scale = (mode_transforms or {}).get(name, ModeTransform())
        out[f"{name}_mode"] = scale.inverse(kde_mode(scale.forward(s), bounds=scale.bounds))
        out[f"{name}_median"] = np.median(s, axis=1)
        out[f"{name}_mean"] = s.mean(axis=1)
        s = np.sort(s, axis=1)
        for level, suffix in zip(LEVELS, LEVEL_SUFFIXES, strict=True):
            lo, hi = _shortest_interval(s, level)
            out[f"{name}_lo{suffix}"] = lo
            out[f"{name}_hi{suffix}"] = hi
    return out


def coverage(samples: np.ndarray, truth: np.ndarray, levels=LEVELS) -> np.ndarray:
    """Fraction of galaxies whose true value lies in their HPD interval, per level and parameter.

    This is how training calibrates and reports posteriors, so those figures are about the same
    intervals the catalogue's ``_lo``/``_hi`` columns hold.

    Parameters
    ----------
    samples : array_like, shape (N, S, P) or (N, S)
        Posterior samples of P parameters (or of one) for N galaxies.
    truth : array_like, shape (N, P) or (N,)
        The true values, in the samples' units.
    levels : sequence of float
        Credible levels (default ``LEVELS``: 68.27, 95.45, 99.73 %).

    Returns
    -------
    ndarray, shape (len(levels), P) or (len(levels),)
        Fractions in [0, 1]; interval ends count as inside.
    """
    samples = np.asarray(samples)
    truth = np.asarray(truth, dtype=np.float64)
    one_parameter = samples.ndim == 2
    if one_parameter:
        samples, truth = samples[..., None], truth[:, None]
    result = np.empty((len(levels), samples.shape[-1]))
    for j in range(samples.shape[-1]):
        s = np.sort(samples[..., j].astype(np.float64), axis=-1)
        for i, level in enumerate(levels):
            lo, hi = _shortest_interval(s, level)
            result[i, j] = np.mean((truth[:, j] >= lo) & (truth[:, j] <= hi))
    return result[:, 0] if one_parameter else result
