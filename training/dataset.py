"""Load simulated sets and build training targets; refuse broken files before any training."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch

from galaxy_inspector.models.bundle import OutputSpec

__all__ = ["PARAMETERS", "PRIOR_WEIGHT", "REQUIRED_COLUMNS", "SimulatedSet", "load_set", "load_sets",
           "fit_output_specs", "psf_in_stamps"]

#: Predicted parameters, their units, transforms and descriptions (as in
#: ``galaxy_inspector.conventions``).
PARAMETERS = (
    ("bt", "", "logit", "bulge-to-total flux ratio L_B/L_T"),
    ("re_arcsec", "arcsec", "log10",
     "circular half-light radius of the intrinsic bulge+disk light"),
    ("flux_njy", "nJy", "log10", "total intrinsic flux"),
)
BT_CLIP = (0.01, 0.99)
REQUIRED_COLUMNS = ("images", "bt", "re_arcsec")
#: Real blank-sky patches (nJy per model pixel) a set's galaxies are injected into
#: (``training.adapt``); its column ``background_index`` names each galaxy's.
BACKGROUNDS = "backgrounds"
#: Per-galaxy importance weight of a set whose sizes were partly redrawn
#: (``training.simulate.draw_small``); training multiplies each galaxy's loss by it.
PRIOR_WEIGHT = "prior_weight"


class SimulatedSet:
    """Unit-flux stamps ``images`` (N, H, W) and their structural truth; ``backgrounds``
    (M, H, W) the real sky patches they are observed on, or None (drawn noise)."""

    def __init__(self, images: torch.Tensor, table: dict[str, np.ndarray], attrs: dict,
                 backgrounds: torch.Tensor | None = None):
        self.images = images
        self.table = table
        self.attrs = attrs
        self.backgrounds = backgrounds

    def __len__(self) -> int:
        return len(self.images)


def load_set(path, limit: int | None = None) -> SimulatedSet:
    """Read a set written by ``training.simulate``; ``ValueError`` names what is wrong."""
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"cannot open training set {path}: {exc}") from None
    with f:
        missing = [c for c in REQUIRED_COLUMNS if c not in f]
        if missing:
            raise ValueError(f"training set {path} is missing column(s): {', '.join(missing)}")
        if not f.attrs.get("complete", False):
            raise ValueError(f"training set {path} is incomplete (its simulation was "
                             "interrupted); simulate it again")
        n = len(f["images"]) if limit is None else min(limit, len(f["images"]))
        table = {k: f[k][:n] for k in f if k not in ("images", BACKGROUNDS)}
        backgrounds = (torch.from_numpy(f[BACKGROUNDS][:].astype(np.float32))
                       if BACKGROUNDS in f else None)
        for name in ("bt", "re_arcsec"):
            bad = np.flatnonzero(~np.isfinite(table[name]))
            if bad.size:
                raise ValueError(f"training set {path} has non-finite {name} in rows "
                                 f"{bad[:10].tolist()}{' ...' if bad.size > 10 else ''}")
        weights = table.get(PRIOR_WEIGHT)
        if weights is not None and not (np.all(np.isfinite(weights) & (weights >= 0))
                                        and weights.sum() > 0):
            raise ValueError(f"training set {path} has {PRIOR_WEIGHT} values that are not "
                             "finite and non-negative with a positive sum")
        images = torch.empty((n, *f["images"].shape[1:]), dtype=torch.float32)
        for start in range(0, n, 2048):
            images[start:start + 2048] = torch.from_numpy(f["images"][start:min(n, start + 2048)])
        # Sets simulated before the share of broad PSFs was an option were drawn with 0.15.
        attrs = {"broad_psf_fraction": 0.15, **f.attrs}
    # Masked pixels are NaN in a set simulated with masks (training.observe fills them).
    masked = torch.isnan(images) if attrs.get("masks_fraction", 0.0) else False
    if not (torch.isfinite(images) | masked).all() or (backgrounds is not None
                                             and not torch.isfinite(backgrounds).all()):
        raise ValueError(f"training set {path} has non-finite pixels")
    return SimulatedSet(images, table, attrs, backgrounds)


def load_sets(paths, limit: int | None = None) -> SimulatedSet:
    """One training set from one or several simulated files (e.g. made in separate sessions).

    The files must share pixel scale and stamp size; ``attrs["seed"]`` and
    ``attrs["broad_psf_fraction"]`` become lists, one entry per file. Where one file has
    importance weights (``simulate --small-fraction``), the others get weight 1: each file's
    weighted loss estimates the loss under the same prior, and so does their concatenation.
    """
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if len(paths) == 1:
        return load_set(paths[0], limit)
    sets = [load_set(p) for p in paths]
    if any(s.backgrounds is not None for s in sets):
        raise ValueError("a set injected into real sky patches (adapt) is trained alone, not "
                         "concatenated with others")
    first = sets[0]
    for path, other in zip(paths[1:], sets[1:], strict=True):
        if (other.images.shape[1:] != first.images.shape[1:]
                or other.attrs.get("pixel_scale") != first.attrs.get("pixel_scale")):
            raise ValueError(f"training set {path} has another stamp size or pixel scale "
                             f"than {paths[0]}")
    for one in sets:  # a file drawn from the prior itself has weight 1 (``draw_small``)
        one.table.setdefault(PRIOR_WEIGHT, np.ones(len(one)))
    columns = set.intersection(*(set(s.table) for s in sets))
    table = {k: np.concatenate([s.table[k] for s in sets])[:limit] for k in sorted(columns)}
    attrs = {**first.attrs, "seed": [int(s.attrs.get("seed", -1)) for s in sets],
             "broad_psf_fraction": [float(s.attrs["broad_psf_fraction"]) for s in sets]}
    return SimulatedSet(torch.cat([s.images for s in sets])[:limit], table, attrs)


def psf_in_stamps(dataset, n: int | None = None) -> np.ndarray:
    """FWHM (arcsec) of the PSF in the first ``n`` stamps of a set: the simulator's, widened
    in quadrature by the engine's PSF-matching kernel where a survey set has one
    (``training.adapt``), as ``domain.psf_seen_by_model`` tells a network at inference."""
    n = len(dataset) if n is None else n
    fwhm = np.asarray(dataset.table["psf_fwhm"][:n], dtype=np.float64)
    kernel = dataset.table.get("psf_kernel_fwhm")
    return fwhm if kernel is None else np.hypot(fwhm, np.asarray(kernel[:n], dtype=np.float64))


def fit_output_specs(table: dict[str, np.ndarray], flux_range) -> list[OutputSpec]:
    """Standard scalers for the transformed targets (flux: its log-uniform training law), of
    the prior the galaxies stand for (weighted by ``PRIOR_WEIGHT`` where the set has it)."""
    weights = table.get(PRIOR_WEIGHT)
    specs = []
    for name, unit, transform, description in PARAMETERS:
        if name == "flux_njy":
            lo, hi = np.log10(flux_range)
            mean, std = (lo + hi) / 2.0, (hi - lo) / np.sqrt(12.0)
        else:
            proto = OutputSpec(name, unit, transform, 0.0, 1.0,
                               BT_CLIP if transform == "logit" else None)
            values = proto.forward(table[name])
            mean = float(np.average(values, weights=weights))
            std = float(np.sqrt(np.average((values - mean) ** 2, weights=weights)))
        specs.append(OutputSpec(name, unit, transform, float(mean), float(std),
                                BT_CLIP if transform == "logit" else None, description))
    return specs
