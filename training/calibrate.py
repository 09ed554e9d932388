"""Calibrate a morphology bundle's posteriors on the validation set (GaMPEN §5).

Three knobs, all fitted on validation data only. First, per parameter, an affine correction
``y -> a + b y`` of the network's working-space output (truth regressed on prediction), kept
only where it lowers the validation error: it removes the regression towards the mean a finite
training leaves (e.g. faint fluxes high, bright ones low). Then the Monte Carlo dropout rate of
the head, and factors on the spread of the predicted Gaussian (Sigma -> S Sigma S). The
factors depend on the galaxy's predicted flux: the validation galaxies are split into
``SPREAD_BINS`` quantile bins of it, and in each bin every parameter's factor is chosen so
that the coverages of the 68.27, 95.45 and 99.73 % highest-density intervals best match their
levels (least squares); inference interpolates between the bins. One global factor
over-covered bright galaxies (68 % intervals held the truth 80 % of the time when fluxes were
drawn as GaMPEN drew them) and under-covered faint ones. Keying on the network's own
predicted variance instead was tried: bright galaxies stayed 7 points over-covered. Of the
dropout rates whose coverages then all stay within ``TOLERANCE`` of their levels, the largest
wins: it keeps the most epistemic spread, which is what widens posteriors on unfamiliar
inputs; if none qualifies, the rate with the smallest squared coverage error over the bins
wins. Label thresholds (GaMPEN §6.4) are chosen on the same data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from galaxy_inspector.models.morphology import (
    MorphologyModel,
    spread_factors,
    tail_widening,
)
from galaxy_inspector.models.morphology_network import unpack_ldl
from galaxy_inspector.posterior import LEVELS, coverage, summarize
from training.dataset import load_set, psf_in_stamps
from training.progress import Progress
from training.train import fixed_observations, psf_given

__all__ = ["calibrate", "posterior_pieces", "truth_table"]

DROPOUT_GRID = (0.0, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)
CALIBRATION_NOISE_SEED = 2024
TOLERANCE = 0.025  # largest accepted |coverage - level| on validation data
SPREAD_BINS = 5  # spread factors are fitted per quantile bin of predicted flux
SEEING_BINS = 4  # and, for a seeing-conditioned model, per quantile bin of the PSF it is told
MIN_CELL = 20  # galaxies a cell of brightness and seeing needs for factors of its own
#: Tails tried per parameter: Student-t degrees of freedom of the aleatoric draw (None: Gaussian).
TAIL_GRID = (None, 30.0, 10.0, 6.0, 4.0, 3.0)


def truth_table(dataset, conditions, n):
    return np.stack([dataset.table["bt"][:n], dataset.table["re_arcsec"][:n],
                     conditions["flux_njy"][:n]], axis=1)


@torch.inference_mode()
def posterior_pieces(model: MorphologyModel, x: torch.Tensor, n_samples: int, dropout: float,
                     seed: int, batch: int = 64, psf=None):
    """Per galaxy and sample: the head's mean and the unit-scale aleatoric draw (scaled space).

    The pieces of ``MorphologyModel.predict`` kept apart (its trunk views, dropout head and
    brightness), so that spread factors can be tried on the same passes without running the
    network again. Samples cycle through the model's orientations as in ``predict``.
    ``psf``: each galaxy's PSF FWHM as the network is told it (NaN: unknown), if it reads it.
    """
    psf = np.full(len(x), np.nan) if psf is None else np.asarray(psf, dtype=np.float64)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed + 1)
    n_params = len(model.outputs)
    mus, draws, levels = [], [], []
    for i in range(0, len(x), batch):
        rows, s, _ = model.head_inputs(x[i:i + batch].unsqueeze(1), n_samples)
        out = model.network.head(rows, dropout=dropout, sample=True,
                                 psf_fwhm=model.psf_rows(psf[i:i + batch], n_samples))
        mu, log_var, L = unpack_ldl(out, n_params)
        eps = torch.randn(mu.shape, generator=generator)
        draw = (L @ (torch.exp(0.5 * log_var) * eps).unsqueeze(-1)).squeeze(-1)
        mus.append(mu.reshape(-1, n_samples, n_params).numpy())
        draws.append(draw.reshape(-1, n_samples, n_params).numpy())
        # A model without flux (the display model) has no brightness: one level for all.
        levels.append(model.brightness(out, n_samples) if "flux_njy" in model.names
                      else np.zeros(len(out) // n_samples))
    return np.concatenate(mus), np.concatenate(draws), np.concatenate(levels)


def _corrected(affine, mu, draw):
    """Means and unit draws under the working-space correction ``y -> a + b y``, affine (P, 2)."""
    return affine[:, 0] + affine[:, 1] * mu, affine[:, 1] * draw


def _physical(model, mu, draw, j, factor):
    """Samples of parameter ``j``; ``factor`` is one number or one per galaxy."""
    factor = np.reshape(factor, (-1, 1)) if np.ndim(factor) else factor
    return model.outputs[j].inverse(mu[..., j] + factor * draw[..., j])


def _solve_factor(model, mu, draw, truth, j):
    """Spread factor whose coverages best match all three levels (least squares).

    Residuals of real posteriors have heavier tails than a Gaussian, so one factor cannot hit
    68.27, 95.45 and 99.73 % at once; matching the three together keeps every level close.
    """
    def error(log_factor):
        covered = coverage(_physical(model, mu, draw, j, np.exp(log_factor)), truth[:, j])
        return sum((c - level) ** 2 for c, level in zip(covered, LEVELS, strict=True))

    grid = np.linspace(np.log(0.05), np.log(20.0), 31)
    best = grid[int(np.argmin([error(g) for g in grid]))]
    fine = np.linspace(best - 0.2, best + 0.2, 11)
    return float(np.exp(fine[int(np.argmin([error(g) for g in fine]))]))


def _spread_bins(level: np.ndarray) -> list[np.ndarray]:
    """Masks of the ``SPREAD_BINS`` quantile bins of predicted brightness ``level`` (N,).

    With GaMPEN's flux draw in the calibration set (``flux_priors``) three of the five lie
    above 4e5 nJy. Bins of equal width in log flux (two knots in the faint half of the range)
    were tried instead: on validation galaxies that neither calibration was fitted on, R_e's
    68 % intervals still held the truth 64 % of the time below 1e4 nJy and 73 % above 1e6
    (63 and 74 % with quantile bins)."""
    edges = np.quantile(level, np.linspace(0.0, 1.0, SPREAD_BINS + 1))
    bins = np.clip(np.searchsorted(edges, level, side="right") - 1, 0, SPREAD_BINS - 1)
    return [bins == b for b in range(SPREAD_BINS)]


def _flux_bins(level: np.ndarray) -> list[tuple[float, np.ndarray]]:
    """The bins of predicted brightness spread factors are fitted on: each one's knot (its
    median brightness) and mask. A bin whose median does not exceed the last kept one is
    skipped, so knots always increase."""
    kept = []
    for m in _spread_bins(level):
        if m.any() and (not kept or np.median(level[m]) > kept[-1][0]):
            kept.append((float(np.median(level[m])), m))
    return kept


def _fit_spread(model, mu, draw, truth, bins) -> dict:
    """Spread factors per parameter and bin of predicted brightness (``_flux_bins``); at
    inference ``spread_factors`` interpolates between the bins' knots."""
    return {"flux_knots": [k for k, _ in bins],
            "factors": [[_solve_factor(model, mu[m], draw[m], truth[m], j) for _, m in bins]
                        for j in range(truth.shape[1])]}


def _seeing_bins(psf: np.ndarray) -> list[np.ndarray]:
    """Masks of the ``SEEING_BINS`` quantile bins of the known (finite) PSF FWHMs ``psf``."""
    known = np.isfinite(psf)
    if known.sum() < SEEING_BINS:
        return []
    edges = np.quantile(psf[known], np.linspace(0.0, 1.0, SEEING_BINS + 1))
    bins = np.clip(np.searchsorted(edges, np.where(known, psf, edges[0]), side="right") - 1,
                   0, SEEING_BINS - 1)
    return [known & (bins == b) for b in range(SEEING_BINS)]


def _fit_seeing(model, mu, draw, truth, level, psf) -> dict:
    """Spread factors per bin of brightness, and for the galaxies told the PSF per cell of
    brightness and told seeing (``psf_flux_factors``); galaxies told "unknown" keep the
    brightness factors.

    A network told the PSF may be too sure at one seeing and too unsure at another, and not
    by the same factor at every brightness. Factors per seeing that multiplied those per
    brightness (fitted in turn) were tried first: on validation galaxies with another seeing
    mix than the calibration's, R_e's 68 % intervals then held the truth 63 % of the time
    for the faintest and 73 % for the brightest; with cells, summed squared per-bin coverage
    errors fell from 0.021 to 0.012 (log-uniform fluxes) and 0.015 to 0.012 (GaMPEN's draw).
    A cell with fewer than ``MIN_CELL`` galaxies keeps its brightness bin's factors.
    """
    flux_bins = _flux_bins(level)
    spread = _fit_spread(model, mu, draw, truth, flux_bins)
    kept = [m for m in _seeing_bins(psf) if m.any()]
    if not kept:  # nobody was told the PSF
        return spread

    def cell(j, a, in_flux, in_seeing):
        m = in_flux & in_seeing
        return (_solve_factor(model, mu[m], draw[m], truth[m], j) if m.sum() >= MIN_CELL
                else spread["factors"][j][a])

    spread["psf_knots"] = [float(np.median(psf[m])) for m in kept]
    spread["psf_flux_factors"] = [[[cell(j, a, in_flux, in_seeing) for in_seeing in kept]
                                   for a, (_, in_flux) in enumerate(flux_bins)]
                                  for j in range(truth.shape[1])]
    return spread


def _binned_coverage(model, mu, draw, truth, level, factors, psf=None) -> list:
    """Per bin of predicted brightness (and of told seeing): coverage per level (rows) and
    parameter (columns)."""
    masks = _spread_bins(level) + (_seeing_bins(psf) if psf is not None else [])
    return [_coverage_table(model, mu[m], draw[m], truth[m], factors[m]) for m in masks
            if m.any()]


def _coverage_table(model, mu, draw, truth, factors) -> list[list[float]]:
    """Coverage per level (rows) and parameter (columns) with per-galaxy ``factors`` (N, P)."""
    return np.stack([coverage(_physical(model, mu, draw, j, factors[:, j]), truth[:, j])
                     for j in range(truth.shape[1])], axis=1).tolist()


def _fitted(model, p, mu, draw, truth, level, psf, tail_dof=None) -> dict:
    """Spread factors for the posterior pieces at dropout rate ``p`` (draws already widened
    for ``tail_dof``), its coverages, per bin too, and score."""
    spread = (_fit_seeing(model, mu, draw, truth, level, psf) if psf is not None
              else _fit_spread(model, mu, draw, truth, _flux_bins(level)))
    factors = spread_factors(spread, level, psf)
    cov = _coverage_table(model, mu, draw, truth, factors)
    # The score (which decides when no rate is within tolerance overall) sums the squared
    # coverage errors per bin, so being calibrated only on average does not help it.
    by_bin = _binned_coverage(model, mu, draw, truth, level, factors, psf)
    return {"dropout": p, "sigma_scale": spread, "tail_dof": tail_dof, "coverage": cov,
            "coverage_by_bin": by_bin, "score": _squared_errors(by_bin),
            "worst_error": _worst_error(cov)}


def _choose_tails(model, mu, draw, truth, level, psf, rng) -> tuple[list, np.ndarray]:
    """Per parameter, the tail of ``TAIL_GRID`` whose fitted spread factors leave the smallest
    squared coverage errors over the bins: the degrees of freedom (None: Gaussian) and the
    draws widened with them."""
    tried = {dof: draw if dof is None else draw * tail_widening(dof, draw.shape, rng)
             for dof in TAIL_GRID}
    errors = {dof: _parameter_errors(_fitted(model, 0.0, mu, d, truth, level,
                                             psf)["coverage_by_bin"])
              for dof, d in tried.items()}
    dofs = [min(TAIL_GRID, key=lambda dof: errors[dof][j]) for j in range(truth.shape[1])]
    return dofs, np.stack([tried[dof][..., j] for j, dof in enumerate(dofs)], axis=-1)


def _squared_errors(by_bin) -> float:
    """Squared coverage errors summed over bins (tables: levels x parameters) and levels."""
    return float(np.sum(_parameter_errors(by_bin)))


def _parameter_errors(by_bin) -> np.ndarray:
    """Per parameter, squared coverage errors summed over the bins and levels."""
    tables = np.asarray(by_bin, dtype=np.float64)  # (bins, levels, parameters)
    return ((tables - np.asarray(LEVELS)[None, :, None]) ** 2).sum(axis=(0, 1))


def _worst_error(cov) -> float:
    """Largest |coverage - level| of a coverage table (levels x parameters)."""
    return float(np.max(np.abs(np.asarray(cov) - np.asarray(LEVELS)[:, None])))


def _chosen(results: list[dict]) -> dict:
    """The rule: the largest dropout rate with every coverage within ``TOLERANCE``, else the
    smallest score."""
    within = [r for r in results if r["worst_error"] <= TOLERANCE]
    return (max(within, key=lambda r: r["dropout"]) if within
            else min(results, key=lambda r: r["score"]))


def _choose_threshold(predicted, truth_flag, candidates, below: bool):
    """Threshold on the predicted value that maximises label accuracy (F1) on validation."""
    best = (-1.0, None, None)
    for t in candidates:
        labelled = predicted <= t if below else predicted >= t
        tp = np.sum(labelled & truth_flag)
        precision = tp / max(labelled.sum(), 1)
        recall = tp / max(truth_flag.sum(), 1)
        f1 = 2 * precision * recall / max(precision + recall, 1e-12)
        if f1 > best[0]:
            best = (f1, float(t), {"precision": float(precision), "recall": float(recall),
                                   "f1": float(f1)})
    return best[1], best[2]


def _fit_affine(model, mu, truth):
    """Per parameter ``(a, b)`` with truth ~ a + b * predicted mean, or ``(0, 1)`` if no gain."""
    affine = []
    for j, spec in enumerate(model.outputs):
        pred, target = mu[:, :, j].mean(1), spec.forward(truth[:, j])
        b, a = np.polyfit(pred, target, 1)
        before = np.median(np.abs(target - pred))
        after = np.median(np.abs(target - (a + b * pred)))
        affine.append([float(a), float(b)] if after < 0.98 * before else [0.0, 1.0])
    return affine


def calibrate(bundle_dir, val_path, n_galaxies=4000, n_samples=300, orientations=1,
              progress=None, flux_priors=("log-uniform",)) -> dict:
    """Fit dropout rate, spread factors and label thresholds; write them into the card.

    ``orientations`` (1-8) dihedral views of each stamp are read at inference (test-time
    augmentation); everything is calibrated with that many. ``flux_priors``: the validation
    galaxies are observed once per flux draw named (``observe.draw_conditions``), so that
    "uniform" (GaMPEN's, 80 % brighter than 10^6 nJy) adds bright galaxies to the bins of
    brightness that a log-uniform draw leaves thin.
    """
    if not 1 <= orientations <= 8:
        raise ValueError(f"orientations must be 1-8, got {orientations}")
    progress = progress or Progress()
    bundle_dir = Path(bundle_dir)
    model = MorphologyModel(bundle_dir, device="cpu")
    model.orientations = orientations
    val = load_set(val_path, n_galaxies)
    observed = [fixed_observations(val, seed=CALIBRATION_NOISE_SEED, flux_prior=prior)
                for prior in flux_priors]
    x = torch.cat([x for x, _ in observed])
    truth = np.concatenate([truth_table(val, cond, len(val)) for _, cond in observed])
    # A seeing-conditioned network is told the PSF as in training: for most stamps, not all.
    known = val.table.get("psf_known")
    psf = (psf_given(np.tile(psf_in_stamps(val), len(flux_priors)),
                     np.random.default_rng([CALIBRATION_NOISE_SEED, 7]),
                     known=None if known is None else np.tile(known, len(flux_priors)))
           if model.takes_psf else None)
    mu0, _, _ = posterior_pieces(model, x, orientations, 0.0, seed=CALIBRATION_NOISE_SEED,
                                 psf=psf)
    affine = np.array(_fit_affine(model, mu0, truth))
    model.affine = affine.astype(np.float32)  # brightness levels below use the new correction
    progress.emit("affine", parameters=model.names, affine=affine.tolist())

    def pieces(p, seed):
        """Corrected means and aleatoric draws per galaxy and sample; each brightness."""
        mu, draw, level = posterior_pieces(model, x, n_samples, p, seed=seed, psf=psf)
        return (*_corrected(affine, mu, draw), level)

    results = []
    for p in DROPOUT_GRID:
        mu, draw, level = pieces(p, CALIBRATION_NOISE_SEED)
        r = _fitted(model, p, mu, draw, truth, level, psf)
        results.append(r)
        progress.emit("calibrate", dropout=p,
                      factors=[[round(f, 3) for f in row] for row in r["sigma_scale"]["factors"]],
                      coverage=[[round(c, 4) for c in row] for row in r["coverage"]],
                      score=r["score"])
    # Heavier tails than a Gaussian's, per parameter, at the rate the rule chooses: one
    # spread factor cannot make 68.27 % intervals narrower and 99.73 % ones wider at once.
    best = _chosen(results)
    mu, draw, level = pieces(best["dropout"], CALIBRATION_NOISE_SEED)
    dofs, draw = _choose_tails(model, mu, draw, truth, level, psf,
                               np.random.default_rng([CALIBRATION_NOISE_SEED, 17]))
    tailed = _fitted(model, best["dropout"], mu, draw, truth, level, psf, tail_dof=dofs)
    progress.emit("tails", dropout=best["dropout"], tail_dof=dofs, score=tailed["score"],
                  gaussian_score=best["score"])
    if (any(d is not None for d in dofs) and tailed["score"] < best["score"]
            and tailed["worst_error"] <= max(best["worst_error"], TOLERANCE)):
        results[results.index(best)] = tailed
    bins = (f"{SPREAD_BINS} bins of predicted flux"
            + (f" and {SEEING_BINS} of told seeing, with factors per cell of both for galaxies "
               "told the PSF" if psf is not None else ""))
    rule = (f"largest dropout rate with every coverage within {TOLERANCE:.3f} of its level "
            f"(else the best summed over {bins}), spread factors fitted to all three levels "
            "per bin")
    return finish_calibration(bundle_dir, model, x.numpy(), truth, results, affine,
                              orientations, n_samples, rule, progress, psf=psf)


def finish_calibration(bundle_dir, model: MorphologyModel, stamps: np.ndarray, truth, results,
                       affine, orientations: int, n_samples: int, rule: str,
                       progress: Progress, psf=None) -> dict:
    """Choose among the ``results`` of a dropout grid (the largest rate with every coverage
    within ``TOLERANCE``, else the best score), choose the label thresholds on the posteriors
    the app computes with it (``psf``: the FWHMs it is told), and write both into the bundle's
    card (the flux and the display models' calibrations end alike)."""
    best = _chosen(results)
    model.dropout, model.sigma_scale = best["dropout"], best["sigma_scale"]
    model.tail_dof = best.get("tail_dof")
    samples = model.predict(stamps, n_samples=n_samples, seed=7, psf_fwhm=psf).samples
    summary = summarize(samples, model.names, model.mode_transforms())
    bt_mode, re_mode = summary["bt_mode"], summary["re_arcsec_mode"]
    grid = np.round(np.arange(0.02, 0.99, 0.01), 2)
    disk_t, disk_acc = _choose_threshold(bt_mode, truth[:, 0] <= 0.1, grid[grid <= 0.3], True)
    bulge_t, bulge_acc = _choose_threshold(bt_mode, truth[:, 0] >= 0.85, grid[grid >= 0.6], False)
    re_t, re_acc = _choose_threshold(re_mode, truth[:, 1] < 1.0,
                                     np.round(np.arange(0.5, 1.5, 0.02), 2), True)
    card_path = Path(bundle_dir) / "card.json"
    card = json.loads(card_path.read_text())
    card["posterior"] = {"dropout": best["dropout"], "sigma_scale": best["sigma_scale"],
                         "affine": affine.tolist(), "n_samples": 500,
                         "orientations": orientations, "calibrated": True}
    if best.get("tail_dof"):
        card["posterior"]["tail_dof"] = best["tail_dof"]
    card["labels"] = {"bt_disk_max": disk_t, "bt_bulge_min": bulge_t, "re_small_arcsec": re_t,
                      "definitions": {"highly disk-dominated": "true B/T <= 0.1",
                                      "highly bulge-dominated": "true B/T >= 0.85",
                                      "R_e < 1 arcsec": "true R_e < 1 arcsec"},
                      "validation_accuracy": {"highly disk-dominated": disk_acc,
                                              "highly bulge-dominated": bulge_acc,
                                              "R_e < 1 arcsec": re_acc}}
    card["calibration"] = {"validation_galaxies": len(stamps), "samples_per_galaxy": n_samples,
                           "rule": rule, "levels": list(LEVELS), "parameters": model.names,
                           "grid": results, "chosen": best}
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    progress.emit("calibrated", dropout=best["dropout"], sigma_scale=best["sigma_scale"],
                  labels=[disk_t, bulge_t, re_t])
    return card
