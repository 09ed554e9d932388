"""Metrics, tables and plots for the property reports.

Wu & Boada: RMSE and NMAD (1.4826 x median |x - median x|, ``astropy.stats.mad_std``) of the
residuals. Dobbels: the uncertainty-weighted L1, the RMS logarithmic error (dex) and the fraction
within 0.15 dex. Uncertainties: the fraction of test truths inside the 68.27/95.45/99.73 %
intervals.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from astropy.stats import mad_std

from galaxy_inspector.posterior import LEVELS, coverage

__all__ = ["rmse", "nmad", "rmsle", "within_dex", "regression_metrics", "interval_coverage",
           "markdown_table", "write_json", "plot_predictions", "plot_resolution",
           "plot_importances"]


def rmse(residual) -> float:
    return float(np.sqrt(np.mean(np.square(residual))))


def nmad(residual) -> float:
    """Normalised median absolute deviation: a standard deviation that ignores outliers."""
    return float(mad_std(residual))


def rmsle(truth, prediction) -> float:
    """RMS of log10(prediction / truth) in dex (positive quantities)."""
    t, p = np.asarray(truth, float), np.maximum(np.asarray(prediction, float), 1e-12)
    return rmse(np.log10(p) - np.log10(t))


def within_dex(truth, prediction, dex: float = 0.15) -> float:
    t, p = np.asarray(truth, float), np.maximum(np.asarray(prediction, float), 1e-12)
    return float(np.mean(np.abs(np.log10(p / t)) <= dex))


def regression_metrics(truth, prediction, log_space: bool = False) -> dict:
    """RMSE, NMAD and bias, in dex for ``log_space`` targets (residual of log10 values)."""
    t, p = np.asarray(truth, float), np.asarray(prediction, float)
    r = (np.log10(np.maximum(p, 1e-12)) - np.log10(t)) if log_space else p - t
    return {"rmse": round(rmse(r), 4), "nmad": round(nmad(r), 4),
            "bias": round(float(np.median(r)), 4), "n": int(len(r))}


def interval_coverage(samples, truth) -> dict:
    """``{level: fraction}`` of ``truth`` (N,) inside the HPD intervals of ``samples`` (N, S),
    rounded for the report."""
    return {f"{level:.4f}": round(float(c), 4)
            for level, c in zip(LEVELS, coverage(samples, truth), strict=True)}


def markdown_table(header, rows) -> str:
    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path, obj) -> None:
    Path(path).write_text(json.dumps(obj, indent=2, default=float) + "\n")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_predictions(path, truth: dict, prediction: dict, units: dict, title: str) -> None:
    """Predicted against true value per target, with the one-to-one line and RMSE/NMAD."""
    plt = _pyplot()
    names = list(truth)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        t, p = np.asarray(truth[name]), np.asarray(prediction[name])
        lo, hi = np.percentile(np.concatenate([t, p]), [0.5, 99.5])
        ax.hexbin(t, p, gridsize=40, extent=(lo, hi, lo, hi), mincnt=1, cmap="Greys", bins="log")
        ax.plot([lo, hi], [lo, hi], "r-", lw=1)
        ax.set_xlabel(f"true {name} [{units.get(name, '')}]")
        ax.set_ylabel(f"predicted {name}")
        ax.set_title(f"RMSE {rmse(p - t):.3f}  NMAD {nmad(p - t):.3f}", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_resolution(path, rows, target: str, baselines: dict) -> None:
    """RMSE and NMAD against image side (pixels), with baselines as horizontal lines."""
    plt = _pyplot()
    sizes = [r["size"] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.8))
    ax.plot(sizes, [r["rmse"] for r in rows], "o-", color="tab:red", label="CNN RMSE")
    ax.plot(sizes, [r["nmad"] for r in rows], "s--", color="tab:purple", label="CNN NMAD")
    for (name, value), style in zip(baselines.items(), (":", "-.", "--", "-"), strict=False):
        ax.axhline(value, ls=style, color="k", lw=1, label=name)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("image side [pixels] (same field of view)")
    ax.set_ylabel(f"{target} scatter")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_importances(path, importances, title: str, top: int = 25) -> None:
    """Horizontal bar chart of permutation importances (increase of validation L1)."""
    plt = _pyplot()
    items = importances[:top][::-1]
    fig, ax = plt.subplots(figsize=(5.5, 0.22 * len(items) + 1.2))
    ax.barh([n for n, _ in items], [v for _, v in items], color="tab:green")
    ax.set_xlabel("increase of validation L1 when permuted")
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
