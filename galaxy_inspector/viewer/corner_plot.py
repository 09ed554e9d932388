"""Corner plot of posterior samples on a matplotlib Figure (drawing only, no statistics).

The intervals and modes drawn are the ones the engine computed (catalogue columns
``P_mode``, ``P_lo68`` ... ``P_hi997``), so the plot always agrees with the table and the file.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

__all__ = ["draw_corner", "draw_marginals", "LEVEL_SHADES"]

#: (column suffix, label, alpha) of the shaded HPD bands, widest first.
LEVEL_SHADES = (("997", "99.73 %", 0.15), ("95", "95.45 %", 0.3), ("68", "68.27 %", 0.5))
COLOUR = "#1f5fa8"
MODE_COLOUR = "#c0392b"


def _bins(values: np.ndarray, log: bool, n: int = 40) -> np.ndarray:
    finite = values[np.isfinite(values)]
    lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    if hi <= lo:
        lo, hi = lo - 0.5 * abs(lo or 1), hi + 0.5 * abs(hi or 1)
    return np.geomspace(lo, hi, n + 1) if log else np.linspace(lo, hi, n + 1)


def draw_corner(figure: Figure, samples: np.ndarray, names, labels, summary: dict,
                log_axes=None) -> None:
    """Draw samples ``(S, P)`` as a corner plot on ``figure`` (cleared first).

    Diagonal: 1-D histograms with the 68.27/95.45/99.73 % HPD intervals shaded and the mode
    marked; below it: 2-D histograms of each pair. ``labels`` are axis titles with units;
    ``summary`` maps column names (``bt_mode``, ``bt_lo68``...) to numbers; ``log_axes`` says
    per parameter whether to draw it on a log axis (the model predicts those in log10).
    """
    figure.clear()
    samples = np.asarray(samples, dtype=float)
    n = samples.shape[1]
    logs = [bool(v) for v in (log_axes or [False] * n)]
    logs = [log and bool(np.nanmin(samples[:, j]) > 0) for j, log in enumerate(logs)]
    bins = [_bins(samples[:, j], logs[j]) for j in range(n)]
    axes = figure.subplots(n, n, squeeze=False)
    for i in range(n):
        for j in range(n):
            ax = axes[i, j]
            if j > i:
                ax.set_visible(False)
                continue
            if i == j:
                _draw_marginal(ax, samples[:, i], bins[i], names[i], summary)
            else:
                ax.hist2d(samples[:, j], samples[:, i], bins=[bins[j], bins[i]], cmap="Blues",
                          cmin=1)
                mx, my = summary.get(f"{names[j]}_mode"), summary.get(f"{names[i]}_mode")
                if mx is not None and my is not None:
                    ax.plot([mx], [my], marker="x", color=MODE_COLOUR, ms=7, mew=2)
                ax.set_yscale("log" if logs[i] else "linear")
            ax.set_xscale("log" if logs[j] else "linear")
            ax.set_xlim(bins[j][0], bins[j][-1])
            if i == n - 1:
                ax.set_xlabel(labels[j])
            else:
                ax.tick_params(labelbottom=False)
            if j == 0 and i > 0:
                ax.set_ylabel(labels[i])
            elif i != j:
                ax.tick_params(labelleft=False)
            ax.tick_params(labelsize=7)
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.yaxis.set_minor_formatter(NullFormatter())
    figure.subplots_adjust(left=0.13, bottom=0.13, right=0.97, top=0.9, wspace=0.08,
                           hspace=0.25)


def draw_marginals(figure: Figure, samples: np.ndarray, names, labels, summary: dict) -> None:
    """One small marginal histogram per column of ``samples`` ``(S, P)``, side by side, with the
    engine's HPD intervals shaded and its mode marked (the physical-property plots)."""
    figure.clear()
    samples = np.asarray(samples, dtype=float)
    n = samples.shape[1]
    axes = figure.subplots(1, n, squeeze=False)[0]
    for j, ax in enumerate(axes):
        _draw_marginal(ax, samples[:, j], _bins(samples[:, j], False, 30), names[j], summary)
        ax.set_xlabel(labels[j], fontsize=8)
        ax.tick_params(labelsize=7)
    figure.subplots_adjust(left=0.04, right=0.97, bottom=0.33, top=0.74, wspace=0.15)


def _draw_marginal(ax, values, bins, name, summary) -> None:
    counts, edges, _ = ax.hist(values, bins=bins, histtype="step", color=COLOUR, density=True)
    top = counts.max() * 1.1 if counts.size else 1.0
    for suffix, label, alpha in LEVEL_SHADES:
        lo, hi = summary.get(f"{name}_lo{suffix}"), summary.get(f"{name}_hi{suffix}")
        if lo is not None and hi is not None and np.isfinite([lo, hi]).all():
            ax.axvspan(lo, hi, color=COLOUR, alpha=alpha, lw=0, label=f"{label} HPD")
    mode = summary.get(f"{name}_mode")
    if mode is not None and np.isfinite(mode):
        ax.axvline(mode, color=MODE_COLOUR, lw=1.5, label="mode")
    ax.set_ylim(0, top)
    ax.set_yticks([])
    ax.set_title(_title(name, summary), fontsize=8)


def _title(name, summary) -> str:
    mode, lo, hi = (summary.get(f"{name}_{k}") for k in ("mode", "lo68", "hi68"))
    if None in (mode, lo, hi):
        return name
    return f"{name} = {mode:.3g}\n68 %: [{lo:.3g}, {hi:.3g}]"
