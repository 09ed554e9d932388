"""What every pyqtgraph plot of the app shares: axes that show values as they are."""

from __future__ import annotations

__all__ = ["plain_axes", "AXES"]

AXES = ("left", "bottom", "right", "top")


def plain_axes(plot) -> None:
    """Turn off pyqtgraph's automatic SI prefixes on every axis of ``plot`` (a PlotWidget or
    PlotItem): by default it rescales the tick values and appends a factor to the label
    ("bt_mode (x0.001)" over ticks 240-420), which no astronomer reads as B/T."""
    for name in AXES:
        plot.getAxis(name).enableAutoSIPrefix(False)
