"""How a property bundle predicts: the one path from stamps to predictive samples.

``PropertyModel.predict`` (the app) and the training pipelines' evaluation both call these
functions, so the test figures a training run reports are computed exactly as the app computes a
catalogue row:

* ``network_passes`` — the pixel scaling, then the CNN over the 8 dihedral views of each stamp
  (test-time augmentation): per-view means and log-sigmas (clipped to ``LOG_SIGMA_RANGE``) and
  the penultimate-layer features averaged over the views;
* ``NetworkPasses.gaussian`` — the views combined: the mean of the means, and a variance that is
  the mean predicted variance plus the spread of the means;
* ``gaussian_prediction`` (Wu & Boada) — draws from that Gaussian, its sigma times the card's
  calibrated factor, mapped back to physical units;
* ``build_gbm_features`` then ``gbm_prediction`` (Dobbels) — the CNN features, luminosity
  statistics, distance and colours fed to the LightGBM point model and the conformalised quantile
  models; draws from the quantile grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from galaxy_inspector.io.calibration import AB_ZERO_POINT_NJY
from galaxy_inspector.models.symmetry import dihedral
from galaxy_inspector.physical_properties.scaling import (
    LUMINOSITY_STATISTICS,
    luminosity_distance_mpc,
    luminosity_statistics,
    scale_stamps,
)
from galaxy_inspector.posterior import summarize

__all__ = ["N_VIEWS", "LOG_SIGMA_RANGE", "QUANTILE_LEVELS", "NetworkPasses", "PropertyPrediction",
           "dihedral_passes", "network_passes", "gaussian_prediction", "photometry_features",
           "build_gbm_features", "gbm_prediction", "apply_conformal", "gbm_tensor_name"]

#: Dihedral views of a square stamp read by test-time augmentation.
N_VIEWS = 8
#: Bounds of the predicted log standard deviations (as in training's loss).
LOG_SIGMA_RANGE = (-7.0, 5.0)
#: Quantiles of the LightGBM interval models: the edges of the 68.27/95.45/99.73 % intervals.
QUANTILE_LEVELS = (0.00135, 0.02275, 0.15865, 0.84135, 0.97725, 0.99865)
BATCH = 128  # stamps per forward pass


@dataclass
class PropertyPrediction:
    """Predictions for N galaxies.

    Attributes
    ----------
    names, units : list of str
    point : ndarray (N, P)
        The model's point estimate in physical units (CNN: TTA mean mapped back; GBM: the
        uncertainty-weighted L1 model).
    samples : ndarray (N, S, P) float32
        Draws from the predictive distribution in physical units.
    """

    names: list
    units: list
    point: np.ndarray
    samples: np.ndarray

    def catalogue_columns(self) -> dict:
        """``NAME_mode, _median, _mean, _lo68, _hi68, _lo95, _hi95, _lo997, _hi997`` arrays."""
        return summarize(self.samples, self.names)


@dataclass
class NetworkPasses:
    """The CNN's outputs for N stamps over their dihedral views.

    Attributes
    ----------
    scaled : ndarray (N, C, H, W) float32
        The stamps as the CNN read them (the card's pixel scaling).
    scaling_value : ndarray (N,)
        Dobbels' adaptive-log ``a`` per stamp (NaN for other scalings).
    means, log_sigmas : ndarray (N, views, T) float32
        Per-view outputs in the standard-scaled target space (auxiliary targets included).
    features : ndarray (N, hidden) float32
        Penultimate-layer features averaged over the views.
    """

    scaled: np.ndarray
    scaling_value: np.ndarray
    means: np.ndarray
    log_sigmas: np.ndarray
    features: np.ndarray

    def gaussian(self) -> tuple[np.ndarray, np.ndarray]:
        """``(mu, sigma)`` (N, T) of the views combined: the mean of the means, and
        ``sigma^2`` = the mean predicted variance + the spread of the means."""
        mu = self.means.mean(axis=1)
        sigma = np.sqrt(np.exp(2 * self.log_sigmas).mean(axis=1) + self.means.var(axis=1))
        return mu, sigma


@torch.no_grad()
def dihedral_passes(network, scaled, views: int = N_VIEWS):
    """``(means, log_sigmas, features)`` of scaled stamps ``(N, C, H, W)`` under the first
    ``views`` dihedral transforms (8 = full test-time augmentation), on the network's device.

    The network must be in evaluation mode; features are averaged over the views.
    """
    device = next(network.parameters()).device
    n_t = network.n_targets
    means = np.empty((len(scaled), views, n_t), np.float32)
    log_sigmas = np.empty_like(means)
    features = np.zeros((len(scaled), network.hidden.out_features), np.float32)
    for i in range(0, len(scaled), BATCH):
        xb = torch.as_tensor(np.asarray(scaled[i:i + BATCH], dtype=np.float32)).to(device)
        for t in range(views):
            h = network.features(dihedral(xb, t))
            out = network.out(h).cpu().numpy()
            features[i:i + BATCH] += h.cpu().numpy()
            means[i:i + BATCH, t] = out[:, :n_t]
            log_sigmas[i:i + BATCH, t] = np.clip(out[:, n_t:], *LOG_SIGMA_RANGE)
    return means, log_sigmas, features / views


def network_passes(network, stamps, preprocessing: dict) -> NetworkPasses:
    """Scale stamps ``(N, C, H, W)`` as the card's ``preprocessing`` says and run the CNN over
    their 8 dihedral views. Stamps are scaled a batch at a time (memory stays bounded for a
    training set; every scaling is per stamp, so the values do not depend on the batching)."""
    n = len(stamps)
    scaled = np.empty(np.shape(stamps), np.float32)
    scaling_value = np.empty(n)
    for i in range(0, n, BATCH):
        scaled[i:i + BATCH], scaling_value[i:i + BATCH] = scale_stamps(stamps[i:i + BATCH],
                                                                       preprocessing)
    means, log_sigmas, features = dihedral_passes(network, scaled)
    return NetworkPasses(scaled, scaling_value, means, log_sigmas, features)


def _units(outputs) -> list[str]:
    return [o.unit for o in outputs]


def _per_galaxy_draws(seed, n: int, draw) -> np.ndarray:
    """``draw(generator, count)`` for ``n`` galaxies: with one seed per galaxy (a sequence, as
    the app passes) each galaxy has its own generator, so its draws do not depend on the
    galaxies beside it; one int seeds a single generator for them all (training's evaluation
    of a whole set)."""
    if np.ndim(seed) == 0:
        return draw(np.random.default_rng(seed), n)
    if len(seed) != n:
        raise ValueError(f"{len(seed)} seeds for {n} galaxies")
    return np.concatenate([draw(np.random.default_rng(s), 1) for s in seed]
                          or [draw(np.random.default_rng(0), 0)])


def gaussian_prediction(passes: NetworkPasses, outputs, sigma_scale, n_samples: int,
                        seed) -> PropertyPrediction:
    """Wu & Boada: ``n_samples`` draws per galaxy from the TTA Gaussian of ``passes`` with its
    sigma times ``sigma_scale`` (one factor per output, fitted on validation data; None: 1),
    mapped back to physical units by ``outputs`` (``OutputSpec``s, one per network target).
    ``seed``: an int, or one per galaxy (``_per_galaxy_draws``)."""
    mu, sigma = passes.gaussian()
    if sigma_scale is not None:
        sigma = sigma * np.asarray(sigma_scale)
    normal = _per_galaxy_draws(seed, len(mu), lambda rng, k: rng.standard_normal(
        (k, n_samples, mu.shape[1])))
    draws = mu[:, None, :] + sigma[:, None, :] * normal
    samples = np.empty(draws.shape, dtype=np.float32)
    point = np.empty(mu.shape)
    for j, spec in enumerate(outputs):
        samples[..., j] = spec.inverse(draws[..., j])
        point[:, j] = spec.inverse(mu[:, j])
    return PropertyPrediction([o.name for o in outputs], _units(outputs), point, samples)


def gbm_tensor_name(target: str, model: str) -> str:
    """Name of a LightGBM model in a bundle: ``model`` is ``point`` or ``q<level>``."""
    return f"gbm.{target}.{model}"


def apply_conformal(q: np.ndarray, offsets) -> np.ndarray:
    """Widen each symmetric pair of quantiles (99.73, 95.45, 68.27 %) by its validation offset,
    then sort so the quantiles never cross."""
    q = np.array(q, dtype=np.float64)
    if offsets is not None:
        for k, off in enumerate(offsets):  # pairs (0, 5), (1, 4), (2, 3)
            q[:, k] -= off
            q[:, 5 - k] += off
    return np.sort(q, axis=1)


def photometry_features(photometry: dict, columns, redshift) -> tuple[np.ndarray, list]:
    """Catalogue magnitudes -> luminosities (when redshift is known) and adjacent colours.

    As Dobbels' colour features (L_g, L_i, g - i): for magnitude columns m_1..m_k, the
    luminosity proxy ``10^(-0.4 (m - AB_ZERO_POINT_NJY)) 4 pi D_L^2`` (nJy Mpc^2) and colours
    m_j - m_{j+1}.
    """
    if not columns:
        return np.empty((len(np.atleast_1d(redshift)), 0)), []
    mags = np.stack([np.asarray(photometry[c], dtype=np.float64) for c in columns], axis=1)
    z = np.asarray(redshift, dtype=np.float64)
    area = np.full(len(mags), np.nan)
    finite = np.isfinite(z)
    area[finite] = 4 * np.pi * luminosity_distance_mpc(z[finite]) ** 2
    lum = 10 ** (-0.4 * (mags - AB_ZERO_POINT_NJY)) * area[:, None]
    colours = mags[:, :-1] - mags[:, 1:]
    names = ([f"lum_{c}" for c in columns]
             + [f"{a}-{b}" for a, b in zip(columns[:-1], columns[1:], strict=True)])
    return np.concatenate([lum, colours], axis=1), names


def build_gbm_features(raw, scaled, scaling_value, cnn_feats, redshift, photometry,
                       spec: dict) -> tuple[np.ndarray, list, list]:
    """The LightGBM feature matrix of Dobbels' pipeline and each column's name and group.

    ``spec`` (from the card): ``cnn_keep`` (indices of live CNN features), ``luminosity_band``
    (channel of ``raw`` whose statistics are used), ``pixel_scale`` (arcsec), ``photometry``
    (magnitude columns). Groups: ``cnn``, ``luminosity``, ``distance``, ``colour``.
    """
    band = int(spec.get("luminosity_band", 0))
    n = len(raw)
    z = np.broadcast_to(np.asarray(redshift if redshift is not None else np.nan, float), (n,))
    lum = luminosity_statistics(raw[:, band], scaled[:, band], scaling_value, z,
                                float(spec["pixel_scale"]))
    names = list(LUMINOSITY_STATISTICS)
    groups = ["distance" if s in ("redshift", "pixel_kpc") else "luminosity" for s in names]
    blocks = [lum]
    keep = list(spec.get("cnn_keep", []))
    if keep:
        blocks.insert(0, np.asarray(cnn_feats, dtype=np.float64)[:, keep])
        names = [f"cnn_{k}" for k in keep] + names
        groups = ["cnn"] * len(keep) + groups
    phot_cols = list(spec.get("photometry", []))
    if phot_cols:
        phot, phot_names = photometry_features(photometry, phot_cols, z)
        blocks.append(phot)
        names += phot_names
        groups += ["colour"] * len(phot_names)
    return np.concatenate(blocks, axis=1), names, groups


def gbm_prediction(boosters: dict, outputs, features, offsets: dict, n_samples: int,
                   seed) -> PropertyPrediction:
    """Dobbels: point and ``n_samples`` draws per galaxy from the LightGBM models.

    ``boosters`` maps ``gbm_tensor_name(target, model)`` to LightGBM boosters, ``offsets`` a
    target to its conformal offsets. Draws are uniform in probability between the outer
    quantiles and interpolated on the conformalised quantile grid, whose median is the point
    model's prediction kept inside the 68 % interval. ``seed``: an int, or one per galaxy
    (``_per_galaxy_draws``).
    """
    n = len(features)
    samples = np.empty((n, n_samples, len(outputs)), dtype=np.float32)
    point = np.empty((n, len(outputs)))
    levels = np.array(QUANTILE_LEVELS)
    grid_levels = np.concatenate([levels[:3], [0.5], levels[3:]])
    u = _per_galaxy_draws(seed, n, lambda rng, k: rng.uniform(levels[0], levels[-1],
                                                              size=(k, n_samples)))
    for j, spec in enumerate(outputs):
        point[:, j] = boosters[gbm_tensor_name(spec.name, "point")].predict(features)
        q = np.stack([boosters[gbm_tensor_name(spec.name, f"q{lv}")].predict(features)
                      for lv in QUANTILE_LEVELS], axis=1)
        q = apply_conformal(q, offsets.get(spec.name))
        median = np.clip(point[:, j], q[:, 2], q[:, 3])
        grid = np.concatenate([q[:, :3], median[:, None], q[:, 3:]], axis=1)
        for i in range(n):
            samples[i, :, j] = np.interp(u[i], grid_levels, grid[i])
    return PropertyPrediction([o.name for o in outputs], _units(outputs), point, samples)
