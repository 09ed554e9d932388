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
hi68/lo95/hi95/lo997/hi997`` columns as the morphology models. The prediction itself (TTA,
combination of the views, draws) is ``physical_properties.predict``, which training's evaluation
calls too; this module checks the inputs against the card and feeds them through it.
"""

from __future__ import annotations

import numpy as np
import torch

from galaxy_inspector.errors import BundleError, InputError
from galaxy_inspector.models.loaded import LoadedModel
from galaxy_inspector.physical_properties.gbm_text import verify_models
from galaxy_inspector.physical_properties.predict import (
    QUANTILE_LEVELS,
    PropertyPrediction,
    build_gbm_features,
    gaussian_prediction,
    gbm_prediction,
    gbm_tensor_name,
    network_passes,
)
from galaxy_inspector.physical_properties.scaling import LUMINOSITY_STATISTICS
from galaxy_inspector.seeding import galaxy_seeds

__all__ = ["PropertyModel", "booster_from_tensor", "booster_to_tensor", "gbm_feature_count"]


def booster_to_tensor(booster) -> np.ndarray:
    """LightGBM text model as a uint8 array (no pickle anywhere)."""
    return np.frombuffer(booster.model_to_string().encode("utf-8"), dtype=np.uint8).copy()


def booster_from_tensor(array):
    """The LightGBM model stored in ``array``; its text must have passed
    ``gbm_text.verify_models`` (LightGBM crashes the process on a garbled one)."""
    import lightgbm as lgb

    return lgb.Booster(model_str=np.asarray(array, dtype=np.uint8).tobytes().decode("utf-8"))


def gbm_feature_count(spec: dict) -> int:
    """Columns of ``build_gbm_features`` for a card's ``gbm`` spec: the kept CNN features, the
    luminosity statistics, and per photometry column a luminosity plus the adjacent colours."""
    n_phot = len(spec.get("photometry", []))
    return (len(spec.get("cnn_keep", [])) + len(LUMINOSITY_STATISTICS)
            + (2 * n_phot - 1 if n_phot else 0))


def _read_boosters(bundle, names) -> dict:
    """``{name: Booster}`` of the bundle's LightGBM tensors ``names``, verified first in Python
    and in a child process (``gbm_text``), so that a garbled model is a ``BundleError``."""
    texts = {}
    for name in names:
        if name not in bundle.tensors:
            raise BundleError(f"bundle {bundle.name!r} lacks LightGBM model {name!r}")
        try:
            texts[name] = np.asarray(bundle.tensors[name], dtype=np.uint8).tobytes().decode()
        except (UnicodeDecodeError, ValueError):
            raise BundleError(f"the LightGBM models of bundle {bundle.name!r} cannot be read: "
                              f"{name} is not text") from None
    try:
        verify_models(texts, gbm_feature_count(bundle.card["gbm"]))
    except ValueError as exc:
        raise BundleError(f"the LightGBM models of bundle {bundle.name!r} cannot be read: "
                          f"{exc}") from None
    return {name: booster_from_tensor(bundle.tensors[name]) for name in names}


class PropertyModel(LoadedModel):
    """A loaded property bundle ready for inference (``bundle`` as for ``LoadedModel``);
    ``device`` is a torch device name, by default the CPU (the CNN is small)."""

    TASK = "properties"
    KIND = "physical-properties model"

    def __init__(self, bundle, device: str | None = None):
        super().__init__(bundle, torch.device(device or "cpu"), weights_prefix="cnn.")
        card = self.bundle.card
        self.method = card.get("method")
        if self.method not in ("cnn", "cnn+gbm"):
            raise BundleError(f"property bundle {self.bundle.name!r} has unknown method "
                              f"{self.method!r} (known: cnn, cnn+gbm)")
        self.preprocessing = self.bundle.input["preprocessing"]
        self.uncertainty = card.get("uncertainty", {})
        self.gbm_spec = card.get("gbm", {})
        self._boosters = {}
        if self.method == "cnn+gbm":
            self._boosters = _read_boosters(self.bundle, [
                gbm_tensor_name(out.name, model) for out in self.outputs
                for model in ["point", *[f"q{q}" for q in QUANTILE_LEVELS]]])

    @property
    def bands(self) -> list[str]:
        return list(self.bundle.input["bands"])

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
        seed : int
            The run's seed; each galaxy's draws are seeded by it and the galaxy's stamp
            (``seeding.galaxy_seeds``, as training's evaluation seeds them too).
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
        passes = network_passes(self.network, x, self.preprocessing)
        seeds = galaxy_seeds(seed, x)  # each galaxy's draws independent of its batch
        if self.method == "cnn":
            return gaussian_prediction(passes, self.outputs, self.uncertainty.get("sigma_scale"),
                                       n_samples, seeds)
        features, _, _ = build_gbm_features(x, passes.scaled, passes.scaling_value,
                                            passes.features, redshift, photometry,
                                            self.gbm_spec)
        return gbm_prediction(self._boosters, self.outputs, features,
                              self.uncertainty.get("conformal_offsets", {}), n_samples, seeds)
