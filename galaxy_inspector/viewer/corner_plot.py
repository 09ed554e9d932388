"""Corner plot of posterior samples on a matplotlib Figure (drawing only, no statistics).

The intervals and modes drawn are the ones the engine computed (catalogue columns
``P_mode``, ``P_lo68`` ... ``P_hi997``), so the plot always agrees with the table and the file.
Parameters are named as everywhere else (``wording.parameter_label``), every parameter axis has
labelled ticks, and an exported figure says what it shows (file, position, model, date).

Flux stays in nJy, the unit of the catalogue columns whose values the plot draws: an AB
magnitude axis would be a second, reversed and non-linear scale for the same numbers, and the
posterior's width (a few per cent for a bright galaxy) reads directly in nJy.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import (
    FuncFormatter,
    LogFormatterSciNotation,
    LogLocator,
    MaxNLocator,
    NullLocator,
    ScalarFormatter,
)

from galaxy_inspector import __version__
from galaxy_inspector.errors import InputError
from galaxy_inspector.viewer.wording import format_value, parameter_label

__all__ = ["draw_corner", "draw_marginals", "draw_analysis", "export_analysis",
           "provenance_lines", "LEVEL_SHADES", "EXPORT_SIZE_INCHES"]

#: (column suffix, label, alpha) of the shaded HPD bands, widest first.
LEVEL_SHADES = (("997", "99.73 %", 0.15), ("95", "95.45 %", 0.3), ("68", "68.27 %", 0.5))
COLOUR = "#1f5fa8"
MODE_COLOUR = "#c0392b"
#: An exported figure's size, whatever size the panel's canvas has at the time.
EXPORT_SIZE_INCHES = (7.0, 7.0)
#: Longest file name an exported figure spells out (longer ones lose their middle).
MAX_NAME_CHARS = 44
TICK_FONT = 7


def _bins(values: np.ndarray, log: bool, n: int = 40) -> np.ndarray:
    finite = values[np.isfinite(values)]
    lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    if hi <= lo:
        lo, hi = lo - 0.5 * abs(lo or 1), hi + 0.5 * abs(hi or 1)
    return np.geomspace(lo, hi, n + 1) if log else np.linspace(lo, hi, n + 1)


def _limits(bins: np.ndarray, log: bool) -> tuple[float, float]:
    """The histogram's range with a margin, so a mode on a bound (B/T = 1) is not hidden by
    the frame."""
    lo, hi = (np.log10(bins[[0, -1]]) if log else bins[[0, -1]])
    margin = 0.03 * (hi - lo)
    lo, hi = lo - margin, hi + margin
    return (10.0 ** lo, 10.0 ** hi) if log else (lo, hi)


def _plain_formatter() -> ScalarFormatter:
    """Tick values written out in full (no offset, no 'x1e5' beside the axis)."""
    formatter = ScalarFormatter(useOffset=False)
    formatter.set_scientific(False)
    return formatter


def _set_ticks(axis, lo: float, hi: float, log: bool) -> None:
    """Labelled ticks for a parameter axis spanning [lo, hi]: at least two on any range.

    Linear, or log under a decade (where powers of ten give one tick or none): round values,
    written in full. Log over one to three decades: 1, 2, 5 times powers of ten, written as the
    tables write numbers; over more, powers of ten.
    """
    decades = math.log10(hi / lo) if log else 0.0
    if decades < 1:
        axis.set_major_locator(MaxNLocator(nbins="auto", steps=[1, 2, 5, 10]))
        axis.set_major_formatter(_plain_formatter())
    elif decades < 3:
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(lambda value, _: format_value(value)))
    else:
        axis.set_major_locator(LogLocator())
        axis.set_major_formatter(LogFormatterSciNotation())
    axis.set_minor_locator(NullLocator())


def draw_corner(figure: Figure, samples: np.ndarray, names, labels, summary: dict,
                log_axes=None, provenance=()) -> None:
    """Draw samples ``(S, P)`` as a corner plot on ``figure`` (cleared first).

    Diagonal: 1-D histograms with the 68.27/95.45/99.73 % HPD intervals shaded and the mode
    marked, titled with the mode and 68 % interval; below it: 2-D histograms of each pair; a
    legend of the levels in the empty corner, above it the ``provenance`` lines when given.
    ``labels`` are the parameters' names with units (``wording.parameter_label``) for axes and
    titles; ``summary`` maps column names (``bt_mode``, ``bt_lo68``...) to numbers;
    ``log_axes`` says per parameter whether to draw it on a log axis (the model predicts those
    in log10). The figure's layout is constrained, so no title or label is cut off.
    """
    figure.clear()
    figure.set_layout_engine("constrained")
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
                ax.axis("off")
                continue
            if i == j:
                _draw_marginal(ax, samples[:, i], bins[i], names[i], summary)
                # The last column's title ends at its axes' edge, never past the figure's.
                ax.set_title(_title(labels[i], names[i], summary), fontsize=8,
                             loc="right" if i == n - 1 and n > 1 else "center")
            else:
                ax.hist2d(samples[:, j], samples[:, i], bins=[bins[j], bins[i]], cmap="Blues",
                          cmin=1)
                mx, my = summary.get(f"{names[j]}_mode"), summary.get(f"{names[i]}_mode")
                if mx is not None and my is not None:
                    ax.plot([mx], [my], marker="x", color=MODE_COLOUR, ms=7, mew=2)
                ax.set_yscale("log" if logs[i] else "linear")
                ax.set_ylim(*_limits(bins[i], logs[i]))
                _set_ticks(ax.yaxis, *ax.get_ylim(), logs[i])
            ax.set_xscale("log" if logs[j] else "linear")
            ax.set_xlim(*_limits(bins[j], logs[j]))
            _set_ticks(ax.xaxis, *ax.get_xlim(), logs[j])
            ax.tick_params(labelsize=TICK_FONT, labelbottom=i == n - 1,
                           labelleft=j == 0 and i > 0)
            ax.tick_params(axis="x", labelrotation=45)  # long flux values stay apart
            for tick in ax.get_xticklabels():
                tick.set_horizontalalignment("right")
                tick.set_rotation_mode("anchor")
            if i == n - 1:
                ax.set_xlabel(labels[j])
            if j == 0 and i > 0:
                ax.set_ylabel(labels[i])
    # Legend and provenance sit in the empty upper triangle (the legend below the provenance
    # where there is some) and stay out of the layout, which would shrink their column.
    corner = axes[0, n - 1]
    below = bool(provenance) and n >= 3
    legend = (axes[1, n - 1] if below else corner).legend(
        handles=_legend_handles(), loc="lower right" if provenance and n < 3 else "upper right",
        fontsize=TICK_FONT + 1, frameon=False, title="HPD intervals", title_fontsize=TICK_FONT + 1)
    legend.set_in_layout(False)
    if provenance:
        corner.text(1.0, 1.0, "\n".join(provenance), transform=corner.transAxes, ha="right",
                    va="top", fontsize=TICK_FONT, color="#333333", linespacing=1.4,
                    in_layout=False)


def _legend_handles() -> list:
    """The shaded levels, narrowest first as a reader looks for them, and the mode."""
    handles = [Patch(color=COLOUR, alpha=alpha, lw=0, label=label)
               for _, label, alpha in reversed(LEVEL_SHADES)]
    return [*handles, Line2D([], [], color=MODE_COLOUR, lw=1.5, label="mode (KDE)")]


def draw_marginals(figure: Figure, samples: np.ndarray, names, labels, summary: dict) -> None:
    """One small marginal histogram per column of ``samples`` ``(S, P)``, side by side, with the
    engine's HPD intervals shaded and its mode marked (the physical-property plots)."""
    figure.clear()
    samples = np.asarray(samples, dtype=float)
    n = samples.shape[1]
    axes = figure.subplots(1, n, squeeze=False)[0]
    for j, ax in enumerate(axes):
        bins = _bins(samples[:, j], False, 30)
        _draw_marginal(ax, samples[:, j], bins, names[j], summary)
        _set_ticks(ax.xaxis, bins[0], bins[-1], False)
        ax.set_xlabel(labels[j], fontsize=8)
        ax.tick_params(labelsize=TICK_FONT)
    figure.subplots_adjust(left=0.04, right=0.97, bottom=0.33, top=0.95, wspace=0.15)


def _draw_marginal(ax, values, bins, name, summary) -> None:
    counts, _, _ = ax.hist(values, bins=bins, histtype="step", color=COLOUR, density=True)
    top = counts.max() * 1.1 if counts.size else 1.0
    for suffix, _, alpha in LEVEL_SHADES:
        lo, hi = summary.get(f"{name}_lo{suffix}"), summary.get(f"{name}_hi{suffix}")
        if lo is not None and hi is not None and np.isfinite([lo, hi]).all():
            ax.axvspan(lo, hi, color=COLOUR, alpha=alpha, lw=0)
    mode = summary.get(f"{name}_mode")
    if mode is not None and np.isfinite(mode):
        ax.axvline(mode, color=MODE_COLOUR, lw=1.5)
    ax.set_ylim(0, top)
    ax.set_yticks([])


def _title(label: str, name: str, summary: dict) -> str:
    """'R_e [arcsec] = 0.847' over its 68 % interval (the label alone without a summary)."""
    mode, lo, hi = (summary.get(f"{name}_{k}") for k in ("mode", "lo68", "hi68"))
    if None in (mode, lo, hi):
        return label
    return f"{label} = {format_value(mode)}\n68 %: [{format_value(lo)}, {format_value(hi)}]"


# -- from an engine measurement ----------------------------------------------------------------
def _corner_arguments(analysis) -> tuple:
    m = analysis.measurement
    if m.error or not np.size(m.samples):
        raise InputError(f"there is no posterior to plot: {m.error or 'no samples'}")
    labels = [parameter_label(n, u) for n, u in zip(m.names, m.units, strict=True)]
    return (m.samples, m.names, labels, m.summary,
            [n in analysis.log_parameters for n in m.names])


def draw_analysis(figure: Figure, analysis) -> None:
    """The corner plot of an engine measurement (``tasks.GalaxyAnalysis``)."""
    draw_corner(figure, *_corner_arguments(analysis))


def provenance_lines(analysis, pixel_origin: int = 0, when: datetime | None = None) -> list[str]:
    """What an exported figure says about itself: the file (HDU, plane), the galaxy's position
    (pixels in the ``pixel_origin`` the user chose, saying which; RA/Dec when there is a WCS),
    the model (name, weights SHA-256) and app version, and when it was made (UTC)."""
    name = Path(analysis.source).name or "(no file)"
    if len(name) > MAX_NAME_CHARS:
        half = (MAX_NAME_CHARS - 1) // 2
        name = f"{name[:half]}…{name[-half:]}"
    where = [f"HDU {analysis.hdu}"] if analysis.hdu >= 0 else []
    if getattr(analysis, "plane", 0):
        where.append(f"plane {analysis.plane}")
    stamp = analysis.measurement.stamp
    lines = [name + (f" ({', '.join(where)})" if where else ""),
             f"x = {stamp.x + pixel_origin:.1f}, y = {stamp.y + pixel_origin:.1f} "
             f"({pixel_origin}-based pixels)"]
    if math.isfinite(stamp.ra):
        lines.append(f"RA = {stamp.ra:.6f}°, Dec = {stamp.dec:+.6f}°")
    sha = f", weights {analysis.model_sha256[:12]}" if analysis.model_sha256 else ""
    lines.append(f"model {analysis.model_name}{sha}")
    when = when or datetime.now(timezone.utc)
    lines.append(f"Galaxy Inspector {__version__}, {when:%Y-%m-%d %H:%M} UTC")
    return lines


def export_analysis(path, analysis, pixel_origin: int = 0, dpi: int = 150) -> Figure:
    """Save the corner plot of ``analysis`` with its provenance to ``path`` (the format follows
    the suffix: .png, .pdf, .svg) at ``EXPORT_SIZE_INCHES``, not the panel's current size;
    the bounding box is fitted to every artist, so nothing is cut off. Returns the figure."""
    figure = Figure(figsize=EXPORT_SIZE_INCHES)
    draw_corner(figure, *_corner_arguments(analysis),
                provenance=provenance_lines(analysis, pixel_origin))
    figure.savefig(path, dpi=dpi, bbox_inches="tight", pad_inches=0.15)
    return figure
