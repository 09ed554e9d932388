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

from dataclasses import dataclass

import numpy as np
import torch

from galaxy_inspector.errors import InputError
from galaxy_inspector.models.loaded import LoadedModel
from galaxy_inspector.models.morphology_network import sample_ldl
from galaxy_inspector.models.symmetry import dihedral_views
from galaxy_inspector.posterior import UNBOUNDED, ModeTransform
from galaxy_inspector.seeding import galaxy_seeds

__all__ = ["MorphologyModel", "MorphologyPrediction", "CallSizes", "call_sizes", "pick_device",
           "spread_factors", "seeing_factors", "tail_widening"]

#: Stream of a galaxy's generator that its Student-t widening draws come from.
TAIL_STREAM = 17


def pick_device(device: str | None = None) -> torch.device:
    """CUDA when present (or the device asked for), else the CPU."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def spread_factors(table: dict, level: np.ndarray, psf=None) -> np.ndarray:
    """Spread factors ``(N, P)`` for galaxies at predicted working-space log flux ``level`` (N,).

    ``table`` is a card's ``{"flux_knots": [K values], "factors": [[K values] per parameter]}``
    (a card may instead give one factor per parameter): factors calibrated per bin of predicted
    flux and interpolated linearly in between (constant beyond the outer knots). The network's
    spread needs a smaller correction for bright galaxies than for faint ones: one global
    factor over-covered the first and under-covered the second. A seeing-conditioned model's
    table adds ``psf_knots`` and, for galaxies whose ``psf`` (N,) is known (finite), either
    ``psf_flux_factors`` (per parameter, flux knot and PSF knot; interpolated bilinearly),
    which replace their factors, or (cards calibrated before those) ``psf_factors`` per
    parameter and PSF knot, which multiply them.
    """
    level = np.asarray(level, dtype=np.float64).reshape(-1)
    knots = np.asarray(table["flux_knots"], dtype=np.float64)
    factors = np.stack([np.interp(level, knots, row) for row in table["factors"]], axis=1)
    if "psf_knots" not in table or psf is None:
        return factors
    psf = np.broadcast_to(np.asarray(psf, dtype=np.float64), level.shape)
    if "psf_factors" in table:
        return factors * seeing_factors(table, psf)
    known = np.isfinite(psf)
    cells = np.stack([_interp_each(level, knots, np.stack(
        [np.interp(np.where(known, psf, 0.0), table["psf_knots"], row) for row in by_flux],
        axis=1)) for by_flux in table["psf_flux_factors"]], axis=1)
    return np.where(known[:, None], cells, factors)


def _interp_each(x: np.ndarray, knots, rows: np.ndarray) -> np.ndarray:
    """Row ``i`` of ``rows`` (N, K), given at ``knots`` (K,), interpolated linearly at ``x[i]``
    (constant beyond the outer knots)."""
    knots = np.asarray(knots, dtype=np.float64)
    if len(knots) == 1:
        return rows[:, 0]
    x = np.clip(x, knots[0], knots[-1])
    i = np.clip(np.searchsorted(knots, x, side="right") - 1, 0, len(knots) - 2)
    t = (x - knots[i]) / (knots[i + 1] - knots[i])
    r = np.arange(len(x))
    return (1.0 - t) * rows[r, i] + t * rows[r, i + 1]


def seeing_factors(table: dict, psf: np.ndarray) -> np.ndarray:
    """The factors ``(N, P)`` a table's ``psf_knots``/``psf_factors`` give galaxies told PSF
    FWHMs ``psf`` (N,): interpolated where known, 1 where unknown (NaN)."""
    known = np.isfinite(psf)
    seeing = np.stack([np.interp(np.where(known, psf, 0.0), table["psf_knots"], row)
                       for row in table["psf_factors"]], axis=1)
    return np.where(known[:, None], seeing, 1.0)


def tail_widening(dof: float, shape, rng: np.random.Generator) -> np.ndarray:
    """Draws of ``sqrt(dof / chi2(dof))``: a Gaussian draw times one is Student-t with ``dof``
    degrees of freedom, which calibration may give a parameter whose residuals have heavier
    tails than a Gaussian (card ``posterior.tail_dof``)."""
    return np.sqrt(dof / rng.chisquare(dof, shape))


#: Head rows per call on the CPU. The head's tensors are about 1 kB per row each; at 16,000
#: rows (32 galaxies of 500 samples) every temporary was a fresh 16 MB mapping whose page
#: faults took more time than the arithmetic; at 4,096 the allocator reuses them.
CPU_HEAD_ROWS = 4096
#: Stamps, and stamp views (orientations), per trunk pass on the CPU: the batches catalogues
#: were always made with (the CNN's float32 sums depend on the batch, so rows stay equal).
CPU_TRUNK_STAMPS = 64
CPU_TRUNK_VIEWS = 256
#: Share of the GPU's free memory one call may take (the rest: PyTorch's cache, other work),
#: half of it for the trunk and half for the head.
GPU_MEMORY_SHARE = 0.5
#: Bytes one stamp pixel takes in the trunk at its peak, and one head row per input feature:
#: upper bounds from the float32 tensors alive at once (arsinh planes, STN crop, the largest
#: CNN activations; features, dropout draws and masks, hidden activations), about twice them.
TRUNK_BYTES_PER_PIXEL = 160
HEAD_BYTES_PER_FEATURE = 40
#: Most stamps per trunk pass on a GPU, whatever its memory (beyond it nothing gets faster).
GPU_MAX_TRUNK_STAMPS = 4096


@dataclass(frozen=True)
class CallSizes:
    """How much one call of the network takes: ``galaxies`` stamps per trunk pass (with all
    their views) and ``head_rows`` MC-dropout passes per head call."""

    galaxies: int
    head_rows: int


def call_sizes(device_type: str, free_bytes: int | None, stamp_pixels: int, views: int,
               features: int, batch_size: int | None = None) -> CallSizes:
    """Call sizes on a device: fixed ones on the CPU (``CPU_TRUNK_STAMPS`` and
    ``CPU_TRUNK_VIEWS``, ``CPU_HEAD_ROWS``); on a GPU as many as fit in ``GPU_MEMORY_SHARE`` of
    its ``free_bytes`` (``torch.cuda.mem_get_info``).

    ``stamp_pixels``: pixels of one stamp; ``views``: orientations the trunk reads of each;
    ``features``: the head's input width; ``batch_size`` caps the stamps per trunk pass.
    """
    if device_type != "cuda" or free_bytes is None:
        galaxies, head_rows = min(CPU_TRUNK_STAMPS, CPU_TRUNK_VIEWS // views), CPU_HEAD_ROWS
    else:
        budget = GPU_MEMORY_SHARE * free_bytes / 2
        galaxies = min(GPU_MAX_TRUNK_STAMPS,
                       int(budget // (TRUNK_BYTES_PER_PIXEL * stamp_pixels * views)))
        head_rows = max(CPU_HEAD_ROWS, int(budget // (HEAD_BYTES_PER_FEATURE * features)))
    if batch_size is not None:
        galaxies = min(galaxies, batch_size)
    return CallSizes(max(1, galaxies), head_rows)


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
        # Student-t degrees of freedom of each parameter's aleatoric draw (None: Gaussian).
        self.tail_dof = posterior.get("tail_dof")
        self.orientations = int(posterior.get("orientations", 1))

    def mode_transforms(self) -> dict:
        """``{name: posterior.ModeTransform}``: find each KDE mode in the network's working
        space, where posteriors are smooth (logit B/T, log radius and flux, as trained).

        A logit output is bounded there by its clip, where its samples censored to 0 and 1
        sit: the density is reflected at it, so a posterior piled at a bound has its mode on
        the bound (exactly 0 or 1 once mapped back), not inside.
        """
        out = {}
        for o in self.outputs:
            bounds = UNBOUNDED
            if o.transform == "logit":
                bounds = tuple(sorted(float(o.forward(v)) for v in (0.0, 1.0)))
            out[o.name] = ModeTransform(o.forward, o.inverse, bounds)
        return out

    @property
    def takes_psf(self) -> bool:
        """Whether the network reads the PSF's FWHM (card ``hyperparameters.psf_input``)."""
        return self.network.psf_input is not None

    def predict(self, stamps, n_samples: int | None = None, seed: int = 0,
                return_crops: bool = False, batch_size: int | None = None,
                psf_fwhm=None) -> MorphologyPrediction:
        """Posterior samples for stamps of shape ``(N, H, W)`` (or one ``(H, W)``) in nJy/pixel.

        Stamps must already be on the model's grid (``pixel_scale``, ``stamp_size``), centred on
        the galaxy, with no NaNs: ``galaxy_inspector.preprocessing`` prepares them.
        ``batch_size`` caps the stamps per trunk pass (default: ``call_sizes`` for the device).
        ``psf_fwhm``: the PSF FWHM each stamp was observed with, in arcsec of the model's frame
        (one value or one per stamp; NaN or None: unknown); read only if ``takes_psf``.
        """
        x = np.ascontiguousarray(stamps, dtype=np.float32)
        if x.ndim == 2:
            x = x[None]
        psf = np.asarray(np.nan if psf_fwhm is None else psf_fwhm, dtype=np.float64)
        if psf.ndim > 1 or psf.size not in (1, len(x)):
            raise InputError(f"psf_fwhm must be one value or one per stamp ({len(x)}), got "
                             f"shape {psf.shape}")
        psf = np.broadcast_to(psf.reshape(-1), (len(x),))
        size = self.stamp_size
        if x.ndim != 3 or x.shape[1:] != (size, size):
            raise InputError(f"stamps must be {size}x{size} pixels for model "
                             f"{self.bundle.name!r}, got shape {x.shape}")
        if not np.isfinite(x).all():
            raise InputError("stamps contain NaN or infinite pixels; fill them first")
        n_samples = int(n_samples or self.default_samples)
        if n_samples < 1:
            raise InputError("the number of posterior samples must be at least 1")
        samples = np.empty((len(x), n_samples, len(self.outputs)), dtype=np.float32)
        scales = np.empty(len(x), dtype=np.float32)
        crops = [] if return_crops else None
        free = torch.cuda.mem_get_info(self.device)[0] if self.device.type == "cuda" else None
        sizes = call_sizes(self.device.type, free, size * size, self.orientations,
                           self.network.head_hidden.in_features, batch_size)
        per_head_call = max(1, sizes.head_rows // n_samples)  # galaxies
        with torch.inference_mode():
            for start in range(0, len(x), sizes.galaxies):
                chunk = x[start:start + sizes.galaxies]
                features, s, crop = self._trunk(
                    torch.from_numpy(chunk).to(self.device).unsqueeze(1))
                for first in range(0, len(chunk), per_head_call):
                    part = slice(first, first + per_head_call)
                    where = slice(start + first, start + first + len(chunk[part]))
                    samples[where] = self._sample(features[:, part], chunk[part], n_samples,
                                                  seed, psf[where])
                scales[start:start + len(chunk)] = s.cpu().numpy()
                if return_crops:
                    crops.append(crop[:, 0].cpu().numpy())
        return MorphologyPrediction(
            names=self.names, units=[o.unit for o in self.outputs], samples=samples,
            stn_scale=scales, crops=np.concatenate(crops) if return_crops else None)

    def _sample(self, features: torch.Tensor, stamps: np.ndarray, n_samples: int,
                seed: int, psf: np.ndarray) -> np.ndarray:
        """``(N, n_samples, P)`` posterior samples in physical units from trunk ``features``
        ``(views, N, F)`` of ``stamps`` observed with PSFs ``psf`` (N,): MC-dropout head
        passes and Gaussian draws."""
        n_params = len(self.outputs)
        rows = self._head_rows(features, n_samples)
        seeds = galaxy_seeds(seed, stamps)  # one pass over the pixels for both kinds of draw
        u1, u2, eps = self._draws(seeds, n_samples, self.network.hidden, n_params)
        out = self.network.head(rows, dropout=self.dropout, sample=True, uniforms=(u1, u2),
                                psf_fwhm=self.psf_rows(psf, n_samples))
        scale = self._row_spread(out, n_samples, psf)
        if self.tail_dof and any(d is not None for d in self.tail_dof):
            widen = torch.from_numpy(self._tail_rows(seeds, n_samples)).to(out)
            scale = widen if scale is None else scale * widen
        draw = sample_ldl(out, n_params, scale=scale, eps=eps)
        draw = draw.reshape(len(stamps), n_samples, n_params).cpu().numpy()
        draw = self.affine[:, 0] + self.affine[:, 1] * draw
        samples = np.empty(draw.shape, dtype=np.float32)
        for j, spec in enumerate(self.outputs):
            samples[..., j] = spec.inverse(draw[..., j])
        return samples

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

    def _row_spread(self, out: torch.Tensor, n_samples: int,
                    psf: np.ndarray | None = None) -> torch.Tensor | None:
        """Spread factors per head row, each at its galaxy's predicted brightness (and the PSF
        FWHM it was told, ``psf`` (N,)).

        The brightness is the mean over the galaxy's ``n_samples`` passes (300 in calibration);
        a call with very few samples looks its factor up at a noisier brightness.
        """
        if self.sigma_scale is None:
            return None
        if not isinstance(self.sigma_scale, dict):
            return torch.as_tensor(self.sigma_scale, dtype=out.dtype, device=out.device)
        factors = spread_factors(self.sigma_scale, self.brightness(out, n_samples), psf)
        return torch.as_tensor(np.repeat(factors, n_samples, axis=0), dtype=out.dtype,
                               device=out.device)

    def psf_rows(self, psf_fwhm, n_samples: int) -> torch.Tensor | None:
        """Each galaxy's PSF FWHM repeated for its ``n_samples`` head rows (galaxy-major), or
        None for a network that does not read it."""
        if not self.takes_psf:
            return None
        return torch.from_numpy(np.repeat(np.asarray(psf_fwhm, dtype=np.float64), n_samples))

    def head_inputs(self, x: torch.Tensor, n_samples: int):
        """Trunk features for ``n_samples`` head passes per galaxy of ``x`` (N, 1, H, W).

        Returns the rows (galaxy-major, sample ``j`` reading orientation ``j % orientations``),
        the STN scale averaged over the orientations, and the crop of the stamp as given.
        """
        features, s, crop = self._trunk(x)
        return self._head_rows(features, n_samples), s, crop

    def _trunk(self, x: torch.Tensor):
        """Trunk features ``(views, N, F)`` of the dihedral views of ``x`` (N, 1, H, W), the
        STN scale averaged over the views, and the crop of the stamp as given."""
        n, views = len(x), self.orientations
        h, s, crop = self.network.trunk(dihedral_views(x, views))
        return h.reshape(views, n, -1), s.reshape(views, n).mean(0), crop[:n]

    @staticmethod
    def _head_rows(features: torch.Tensor, n_samples: int) -> torch.Tensor:
        """``n_samples`` head rows per galaxy from ``_trunk`` features, galaxy-major, sample
        ``j`` reading orientation ``j % views``."""
        views, n = features.shape[:2]
        pick = torch.arange(n_samples, device=features.device) % views
        return features[pick].transpose(0, 1).reshape(n * n_samples, -1)

    def _tail_rows(self, seeds: list[int], n_samples: int) -> np.ndarray:
        """Per head row and parameter, the Student-t widening of its draw (1 where Gaussian),
        from each galaxy's own generator (its ``galaxy_seed``, stream ``TAIL_STREAM``)."""
        rows = np.ones((len(seeds), n_samples, len(self.tail_dof)))
        for i, galaxy in enumerate(seeds):
            rng = np.random.default_rng([galaxy, TAIL_STREAM])
            for j, dof in enumerate(self.tail_dof):
                if dof is not None:
                    rows[i, :, j] = tail_widening(dof, n_samples, rng)
        return rows.reshape(-1, len(self.tail_dof))

    def _draws(self, seeds: list[int], n_samples: int, hidden: int, n_params: int):
        """Dropout uniforms and Gaussian draws from each galaxy's seed (``galaxy_seeds``: the
        run's seed and its pixels).

        A galaxy's posterior samples therefore do not depend on which other galaxies share its
        batch, nor on its position in the batch (a resumed or regrouped run gives the same rows).
        """
        u1, u2, eps = [], [], []
        for galaxy in seeds:
            g = torch.Generator().manual_seed(galaxy)
            u1.append(torch.rand(n_samples, hidden, generator=g))
            u2.append(torch.rand(n_samples, hidden, generator=g))
            eps.append(torch.randn(n_samples, n_params, generator=g))
        return tuple(torch.cat(t).to(self.device) for t in (u1, u2, eps))
