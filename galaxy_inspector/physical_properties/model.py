"""Physical-property predictions from a property bundle (Wu & Boada CNN or Dobbels CNN+LightGBM).

Two methods, named by the card's ``method``:

* ``cnn`` — a residual CNN reads the scaled stamps under the 8 dihedral transforms (test-time
  augmentation); the prediction is a Gaussian in the standard-scaled target space whose mean is the
  TTA mean and whose variance is the mean predicted variance plus the TTA spread, times a factor
  per target fitted on validation data so that 68.27 % intervals hold 68.27 % of the truths.
* ``cnn+gbm`` — the CNN's penultimate-layer features (TTA-averaged), Dobbels' luminosity
  statistics, redshift, pixel size in kpc and optional catalogue photometry feed LightGBM models:
  a point model trained with the uncertainty-weighted L1 loss and quantile models whose intervals
  were widened (conformalised) on validation data. LightGBM models are stored as their text format
  inside the safetensors file (as uint8 arrays, so the card's SHA-256 covers them); nothing is
  unpickled.

Both return posterior-like samples so the catalogue gets the same ``NAME_mode/median/mean/lo68/
hi68/lo95/hi95/lo997/hi997`` columns as the morphology models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from galaxy_inspector.errors import BundleError, InputError
from galaxy_inspector.models.bundle import Bundle, load_bundle, load_weights
from galaxy_inspector.models.registry import build_network
from galaxy_inspector.models.symmetry import dihedral
from galaxy_inspector.physical_properties.scaling import (
    LUMINOSITY_STATISTICS,
    luminosity_distance_mpc,
    luminosity_statistics,
    scale_stamps,
)
from galaxy_inspector.posterior import summarize

__all__ = ["PropertyModel", "PropertyPrediction", "QUANTILE_LEVELS", "build_gbm_features",
           "photometry_features", "apply_conformal", "gbm_tensor_name", "booster_from_tensor",
           "booster_to_tensor"]

#: Quantiles of the LightGBM interval models: the edges of the 68.27/95.45/99.73 % intervals.
QUANTILE_LEVELS = (0.00135, 0.02275, 0.15865, 0.84135, 0.97725, 0.99865)


def gbm_tensor_name(target: str, model: str) -> str:
    return f"gbm.{target}.{model}"


def booster_to_tensor(booster) -> np.ndarray:
    """LightGBM text model as a uint8 array (no pickle anywhere)."""
    return np.frombuffer(booster.model_to_string().encode("utf-8"), dtype=np.uint8).copy()


def booster_from_tensor(array):
    import lightgbm as lgb

    return lgb.Booster(model_str=np.asarray(array, dtype=np.uint8).tobytes().decode("utf-8"))


def photometry_features(photometry: dict, columns, redshift) -> tuple[np.ndarray, list]:
    """Catalogue magnitudes -> luminosities (when redshift is known) and adjacent colours.

    As Dobbels' colour features (L_g, L_i, g - i): for magnitude columns m_1..m_k, the
    luminosity proxy ``10^(-0.4 (m - 31.4)) 4 pi D_L^2`` (nJy Mpc^2) and colours m_j - m_{j+1}.
    """
    if not columns:
        return np.empty((len(np.atleast_1d(redshift)), 0)), []
    mags = np.stack([np.asarray(photometry[c], dtype=np.float64) for c in columns], axis=1)
    z = np.asarray(redshift, dtype=np.float64)
    area = np.full(len(mags), np.nan)
    finite = np.isfinite(z)
    area[finite] = 4 * np.pi * luminosity_distance_mpc(z[finite]) ** 2
    lum = 10 ** (-0.4 * (mags - 31.4)) * area[:, None]
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


class PropertyModel:
    """A loaded property bundle ready for inference.

    Parameters
    ----------
    bundle : Bundle, str or path
        A loaded bundle, a bundle folder, or the name of a shipped bundle.
    device : str, optional
        Torch device; default CPU (the CNN is small).
    """

    def __init__(self, bundle, device: str | None = None):
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        card = self.bundle.card
        if card["task"] != "properties":
            raise BundleError(f"bundle {self.bundle.name!r} is a {card['task']!r} model, not a "
                              "physical-properties model")
        self.method = card.get("method")
        if self.method not in ("cnn", "cnn+gbm"):
            raise BundleError(f"property bundle {self.bundle.name!r} has unknown method "
                              f"{self.method!r} (known: cnn, cnn+gbm)")
        self.device = torch.device(device or "cpu")
        try:
            self.network = build_network(card["architecture"], card["hyperparameters"])
        except (ValueError, TypeError) as exc:
            raise BundleError(f"bundle {self.bundle.name!r}: {exc}") from None
        state = {k[len("cnn."):]: v for k, v in self.bundle.tensors.items()
                 if k.startswith("cnn.")}
        load_weights(self.network, state, self.bundle)
        self.network.to(self.device).eval()
        self.outputs = self.bundle.outputs
        self.preprocessing = self.bundle.input["preprocessing"]
        self.uncertainty = card.get("uncertainty", {})
        self.gbm_spec = card.get("gbm", {})
        self._boosters = {}
        if self.method == "cnn+gbm":
            for out in self.outputs:
                for model in ["point", *[f"q{q}" for q in QUANTILE_LEVELS]]:
                    key = gbm_tensor_name(out.name, model)
                    if key not in self.bundle.tensors:
                        raise BundleError(f"bundle {self.bundle.name!r} lacks LightGBM model "
                                          f"{key!r}")
                    self._boosters[key] = booster_from_tensor(self.bundle.tensors[key])

    @property
    def names(self) -> list[str]:
        return [o.name for o in self.outputs]

    @property
    def bands(self) -> list[str]:
        return list(self.bundle.input["bands"])

    @property
    def pixel_scale(self) -> float:
        return float(self.bundle.input["pixel_scale_arcsec"])

    @property
    def stamp_size(self) -> int:
        return int(self.bundle.input["stamp_size"])

    @property
    def needs_redshift(self) -> bool:
        return bool(self.bundle.input.get("needs_redshift", False))

    @property
    def photometry_columns(self) -> list[str]:
        return list(self.bundle.input.get("photometry", []))

    def _check(self, stamps):
        x = np.asarray(stamps, dtype=np.float32)
        n_bands, size = len(self.bands), self.stamp_size
        if x.ndim == 3 and n_bands == 1:
            x = x[:, None]
        if x.ndim != 4 or x.shape[1:] != (n_bands, size, size):
            raise InputError(f"stamps must have shape (N, {n_bands}, {size}, {size}) (bands "
                             f"{', '.join(self.bands)}) for model {self.bundle.name!r}, got "
                             f"{x.shape}")
        if not np.isfinite(x).all():
            raise InputError("stamps contain NaN or infinite pixels; fill them first")
        return x

    @torch.no_grad()
    def _cnn(self, scaled, batch=128):
        n_t = self.network.n_targets
        means = np.empty((len(scaled), 8, n_t), np.float32)
        log_sig = np.empty_like(means)
        feats = np.zeros((len(scaled), self.network.hidden.out_features), np.float32)
        for i in range(0, len(scaled), batch):
            xb = torch.from_numpy(scaled[i:i + batch]).to(self.device)
            for t in range(8):
                h = self.network.features(dihedral(xb, t))
                out = self.network.out(h).cpu().numpy()
                feats[i:i + batch] += h.cpu().numpy()
                means[i:i + batch, t] = out[:, :n_t]
                log_sig[i:i + batch, t] = np.clip(out[:, n_t:], -7.0, 5.0)
        return means, log_sig, feats / 8.0

    def predict(self, stamps, redshift=None, photometry: dict | None = None,
                n_samples: int = 500, seed: int = 0) -> PropertyPrediction:
        """Predictions for stamps ``(N, C, H, W)`` on the model's grid and in its unit.

        Parameters
        ----------
        stamps : array (N, C, H, W) (or (N, H, W) for one band)
            Bands in the card's order, ``stamp_size`` pixels at ``pixel_scale``, galaxy centred:
            nJy per pixel for ``kind = "flux"`` bundles, 0-255 for ``kind = "display"``.
        redshift : array (N,), optional
            Required when ``needs_redshift`` (Dobbels' GBM); NaN entries are refused.
        photometry : dict column -> array (N,), optional
            Catalogue magnitudes named in ``photometry_columns``.
        n_samples : int
            Draws from each galaxy's predictive distribution.
        """
        x = self._check(stamps)
        n = len(x)
        if self.needs_redshift:
            if redshift is None:
                raise InputError(f"model {self.bundle.name!r} needs a redshift per galaxy "
                                 "(give a redshift column)")
            redshift = np.broadcast_to(np.asarray(redshift, dtype=np.float64), (n,))
            if not np.isfinite(redshift).all():
                raise InputError(f"model {self.bundle.name!r} needs a finite redshift for "
                                 "every galaxy")
        missing = [c for c in self.photometry_columns if photometry is None or c not in photometry]
        if missing:
            raise InputError(f"model {self.bundle.name!r} needs catalogue photometry column(s) "
                             f"{', '.join(missing)}")
        if n_samples < 1:
            raise InputError("the number of samples must be at least 1")
        scaled, scaling_value = scale_stamps(x, self.preprocessing)
        means, log_sig, feats = self._cnn(np.ascontiguousarray(scaled, dtype=np.float32))
        rng = np.random.default_rng(seed)
        if self.method == "cnn":
            return self._cnn_prediction(means, log_sig, n_samples, rng)
        features, _, _ = build_gbm_features(x, scaled, scaling_value, feats, redshift,
                                            photometry, self.gbm_spec)
        return self._gbm_prediction(features, n_samples, rng)

    def _cnn_prediction(self, means, log_sig, n_samples, rng) -> PropertyPrediction:
        mu = means.mean(axis=1)
        sigma = np.sqrt(np.exp(2 * log_sig).mean(axis=1) + means.var(axis=1))
        sigma = sigma * np.asarray(self.uncertainty.get("sigma_scale", [1.0] * mu.shape[1]))
        draws = mu[:, None, :] + sigma[:, None, :] * rng.standard_normal(
            (len(mu), n_samples, mu.shape[1]))
        samples = np.empty(draws.shape, dtype=np.float32)
        point = np.empty(mu.shape)
        for j, spec in enumerate(self.outputs):
            samples[..., j] = spec.inverse(draws[..., j])
            point[:, j] = spec.inverse(mu[:, j])
        return PropertyPrediction(self.names, [o.unit for o in self.outputs], point, samples)

    def _gbm_prediction(self, features, n_samples, rng) -> PropertyPrediction:
        n = len(features)
        offsets = self.uncertainty.get("conformal_offsets", {})
        samples = np.empty((n, n_samples, len(self.outputs)), dtype=np.float32)
        point = np.empty((n, len(self.outputs)))
        levels = np.array(QUANTILE_LEVELS)
        u = rng.uniform(levels[0], levels[-1], size=(n, n_samples))
        for j, spec in enumerate(self.outputs):
            point[:, j] = self._boosters[gbm_tensor_name(spec.name, "point")].predict(features)
            q = np.stack([self._boosters[gbm_tensor_name(spec.name, f"q{lv}")].predict(features)
                          for lv in QUANTILE_LEVELS], axis=1)
            q = apply_conformal(q, offsets.get(spec.name))
            # Median from the weighted-L1 model, kept inside the 68 % interval.
            median = np.clip(point[:, j], q[:, 2], q[:, 3])
            grid = np.concatenate([q[:, :3], median[:, None], q[:, 3:]], axis=1)
            grid_levels = np.concatenate([levels[:3], [0.5], levels[3:]])
            for i in range(n):
                samples[i, :, j] = np.interp(u[i], grid_levels, grid[i])
        return PropertyPrediction(self.names, [o.unit for o in self.outputs], point, samples)


def apply_conformal(q: np.ndarray, offsets) -> np.ndarray:
    """Widen each symmetric pair of quantiles (99.73, 95.45, 68.27 %) by its validation offset,
    then sort so the quantiles never cross."""
    q = np.array(q, dtype=np.float64)
    if offsets is not None:
        for k, off in enumerate(offsets):  # pairs (0, 5), (1, 4), (2, 3)
            q[:, k] -= off
            q[:, 5 - k] += off
    return np.sort(q, axis=1)
