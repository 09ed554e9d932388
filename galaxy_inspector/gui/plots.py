"""What every plot of the app shares: pyqtgraph axes that show values as they are, and a
Matplotlib canvas that lets the panel around it scroll."""

from __future__ import annotations

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg

__all__ = ["plain_axes", "AXES", "ScrollingCanvas"]

AXES = ("left", "bottom", "right", "top")


def plain_axes(plot) -> None:
    """Turn off pyqtgraph's automatic SI prefixes on every axis of ``plot`` (a PlotWidget or
    PlotItem): by default it rescales the tick values and appends a factor to the label
    ("bt_mode (x0.001)" over ticks 240-420), which no astronomer reads as B/T."""
    for name in AXES:
        plot.getAxis(name).enableAutoSIPrefix(False)


class ScrollingCanvas(FigureCanvasQTAgg):
    """A Matplotlib canvas that passes the mouse wheel on to the scroll area it sits in.
    Matplotlib's canvas keeps every wheel event (for figures that zoom on scroll), so a panel
    stopped scrolling whenever the pointer was over its plots; ours have nothing to scroll."""

    def wheelEvent(self, event):  # noqa: N802 (Qt naming)
        event.ignore()
