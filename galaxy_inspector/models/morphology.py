"""Morphology posteriors from a bundle: a few trunk passes per galaxy, many MC-dropout head samples.

Each posterior sample is one dropout mask of the stochastic head (epistemic part) followed by one
draw from that pass's predicted Gaussian N(mu, L D L^T) (aleatoric part), as in GaMPEN §4.4,
with the calibrated dropout rate and per-parameter spread factors of the bundle's card (which
may depend on the galaxy's predicted brightness, see ``spread_factors``). With
``posterior.orientations`` > 1 in the card the trunk also reads that many dihedral
orientations of the stamp and the samples cycle through them (test-time augmentation: the
posterior becomes a mixture over views, which averages away orientation-dependent errors).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import torch

from galaxy_inspector.errors import InputError
from galaxy_inspector.models.loaded import LoadedModel
from galaxy_inspector.models.morphology_network import sample_ldl
from galaxy_inspector.models.symmetry import dihedral_views

__all__ = ["MorphologyModel", "MorphologyPrediction", "pick_device", "spread_factors"]


def pick_device(device: str | None = None) -> torch.device:
    """CUDA when present (or the device asked for), else the CPU."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def spread_factors(table: dict, level: np.ndarray) -> np.ndarray:
    """Spread factors ``(N, P)`` for galaxies at predicted working-space log flux ``level`` (N,).

    ``table`` is a card's ``{"flux_knots": [K values], "factors": [[K values] per parameter]}``
    (a card may instead give one factor per parameter): factors calibrated per bin of predicted
    flux and interpolated linearly in between (constant beyond the outer knots). The network's
    spread needs a smaller correction for bright galaxies than for faint ones: one global
    factor over-covered the first and under-covered the second.
    """
    level = np.asarray(level, dtype=np.float64).reshape(-1)
    knots = np.asarray(table["flux_knots"], dtype=np.float64)
    return np.stack([np.interp(level, knots, row) for row in table["factors"]], axis=1)


@dataclass
class MorphologyPrediction:
    """Posterior samples for N galaxies.

    Attributes
    ----------
    names, units : list of str
        Parameter names (``bt``, ``re_arcsec``, ``flux_njy``) and units.
    samples : ndarray, shape (N, S, P), float32
        Posterior samples in physical units.
    stn_scale : ndarray, shape (N,)
        Spatial-transformer zoom: the crop the CNN read spans ``stn_scale * stamp_size`` pixels.
    crops : ndarray, shape (N, C, C) or None
        The crops the CNN read (arsinh-scaled pixels), for display.
    """

    names: list
    units: list
    samples: np.ndarray
    stn_scale: np.ndarray
    crops: np.ndarray | None = None


class MorphologyModel(LoadedModel):
    """A loaded morphology bundle ready for inference (``bundle`` as for ``LoadedModel``);
    ``device`` is ``"cuda"``, ``"cpu"``..., by default CUDA when available."""

    TASK = "morphology"
    KIND = "morphology model"

    def __init__(self, bundle, device: str | None = None):
        super().__init__(bundle, pick_device(device))
        card = self.bundle.card
        posterior = card.get("posterior", {})
        self.dropout = float(posterior.get("dropout", self.network.dropout))
        self.sigma_scale = posterior.get("sigma_scale")
        # Working-space correction y -> a + b y per parameter, fitted on validation data.
        self.affine = np.asarray(posterior.get("affine", [[0.0, 1.0]] * len(self.outputs)),
                                 dtype=np.float32)
        self.default_samples = int(posterior.get("n_samples", 500))
        self.orientations = int(posterior.get("orientations", 1))

    def mode_transforms(self) -> dict:
        """``{name: (forward, inverse)}``: find each KDE mode in the network's working space.

        Posteriors are smooth there (logit B/T, log radius and flux, as trained), and the
        censoring of B/T at its bounds carries over to the mode.
        """
        return {o.name: (o.forward, o.inverse) for o in self.outputs}

    def predict(self, stamps, n_samples: int | None = None, seed: int = 0,
                return_crops: bool = False, batch_size: int = 64) -> MorphologyPrediction:
        """Posterior samples for stamps of shape ``(N, H, W)`` (or one ``(H, W)``) in nJy/pixel.

        Stamps must already be on the model's grid (``pixel_scale``, ``stamp_size``), centred on
        the galaxy, with no NaNs: ``galaxy_inspector.preprocessing`` prepares them.
        """
        x = np.ascontiguousarray(stamps, dtype=np.float32)
        if x.ndim == 2:
            x = x[None]
        size = self.stamp_size
        if x.ndim != 3 or x.shape[1:] != (size, size):
            raise InputError(f"stamps must be {size}x{size} pixels for model "
                             f"{self.bundle.name!r}, got shape {x.shape}")
        if not np.isfinite(x).all():
            raise InputError("stamps contain NaN or infinite pixels; fill them first")
        n_samples = int(n_samples or self.default_samples)
        if n_samples < 1:
            raise InputError("the number of posterior samples must be at least 1")
        n_params = len(self.outputs)
        samples = np.empty((len(x), n_samples, n_params), dtype=np.float32)
        scales = np.empty(len(x), dtype=np.float32)
        crops = [] if return_crops else None
        # Head rows (and trunk views) per call are capped so memory is flat in the number of
        # samples.
        per_call = max(1, min(batch_size, 32768 // n_samples, 256 // self.orientations))
        with torch.inference_mode():
            for start in range(0, len(x), per_call):
                chunk = x[start:start + per_call]
                xb = torch.from_numpy(chunk).to(self.device).unsqueeze(1)
                rows, s, crop = self.head_inputs(xb, n_samples)
                u1, u2, eps = self._draws(chunk, seed, n_samples,
                                          self.network.head_hidden.in_features, n_params)
                out = self.network.head(rows, dropout=self.dropout, sample=True,
                                        uniforms=(u1, u2))
                draw = sample_ldl(out, n_params, scale=self._row_spread(out, n_samples), eps=eps)
                draw = draw.reshape(len(xb), n_samples, n_params).cpu().numpy()
                draw = self.affine[:, 0] + self.affine[:, 1] * draw
                for j, spec in enumerate(self.outputs):
                    samples[start:start + len(xb), :, j] = spec.inverse(draw[..., j])
                scales[start:start + len(xb)] = s.cpu().numpy()
                if return_crops:
                    crops.append(crop[:, 0].cpu().numpy())
        return MorphologyPrediction(
            names=self.names, units=[o.unit for o in self.outputs], samples=samples,
            stn_scale=scales, crops=np.concatenate(crops) if return_crops else None)

    def brightness(self, out: torch.Tensor | np.ndarray, n_samples: int) -> np.ndarray:
        """Each galaxy's predicted log flux in working space, affine-corrected: shape (N,).

        ``out`` holds the head's raw outputs (means first), one row per pass, galaxy-major;
        the passes of a galaxy are averaged.
        """
        j = self.names.index("flux_njy")
        if not isinstance(out, torch.Tensor):
            out = torch.as_tensor(np.asarray(out))
        # Reduce on the device: only one number per galaxy crosses to the host.
        mean = out[..., j].reshape(-1, n_samples).mean(1).detach().cpu().numpy()
        return self.affine[j, 0] + self.affine[j, 1] * mean

    def _row_spread(self, out: torch.Tensor, n_samples: int) -> torch.Tensor | None:
        """Spread factors per head row, each at its galaxy's predicted brightness.

        The brightness is the mean over the galaxy's ``n_samples`` passes (300 in calibration);
        a call with very few samples looks its factor up at a noisier brightness.
        """
        if self.sigma_scale is None:
            return None
        if not isinstance(self.sigma_scale, dict):
            return torch.as_tensor(self.sigma_scale, dtype=out.dtype, device=out.device)
        factors = spread_factors(self.sigma_scale, self.brightness(out, n_samples))
        return torch.as_tensor(np.repeat(factors, n_samples, axis=0), dtype=out.dtype,
                               device=out.device)

    def head_inputs(self, x: torch.Tensor, n_samples: int):
        """Trunk features for ``n_samples`` head passes per galaxy of ``x`` (N, 1, H, W).

        Returns the rows (galaxy-major, sample ``j`` reading orientation ``j % orientations``),
        the STN scale averaged over the orientations, and the crop of the stamp as given.
        """
        n, views = len(x), self.orientations
        h, s, crop = self.network.trunk(dihedral_views(x, views))
        pick = torch.arange(n_samples, device=h.device) % views
        rows = h.reshape(views, n, -1)[pick].transpose(0, 1).reshape(n * n_samples, -1)
        return rows, s.reshape(views, n).mean(0), crop[:n]

    def _draws(self, stamps: np.ndarray, seed: int, n_samples: int, hidden: int, n_params: int):
        """Dropout uniforms and Gaussian draws, seeded per galaxy by ``seed`` and its pixels.

        A galaxy's posterior samples therefore do not depend on which other galaxies share its
        batch, nor on its position in the batch (a resumed or regrouped run gives the same rows).
        """
        u1, u2, eps = [], [], []
        for stamp in stamps:
            key = (int(seed) * 1_000_003 + zlib.crc32(stamp.tobytes())) % (2 ** 63)
            g = torch.Generator().manual_seed(key)
            u1.append(torch.rand(n_samples, hidden, generator=g))
            u2.append(torch.rand(n_samples, hidden, generator=g))
            eps.append(torch.randn(n_samples, n_params, generator=g))
        return tuple(torch.cat(t).to(self.device) for t in (u1, u2, eps))
