"""Image axes numbered in the pixel origin the user chose (``ViewerState.pixel_origin``).

The view's coordinates stay 0-based (``galaxy_inspector.conventions``); only the numbers on the
axes move: with the FITS/DS9 choice the tick at view coordinate 99 reads 100, and ticks fall on
round numbers of the origin shown. Plain numbers, never pyqtgraph's SI prefixes ("x1e3").
"""

from __future__ import annotations

import pyqtgraph as pg

__all__ = ["PixelAxis"]


class PixelAxis(pg.AxisItem):
    """An axis of pixel ``name`` ("x" or "y") that follows ``state.pixel_origin``."""

    def __init__(self, orientation: str, name: str, state):
        super().__init__(orientation)
        self.enableAutoSIPrefix(False)
        self.name = name
        self.origin = state.pixel_origin
        self._label()
        state.add_callback("pixel_origin", self.set_origin)

    def set_origin(self, origin: int) -> None:
        self.origin = origin
        self._label()
        self.picture = None  # the ticks are drawn again with the new numbers
        self.update()

    def _label(self) -> None:
        self.setLabel(f"{self.name} (pixel, {self.origin}-based)")

    def tickValues(self, minVal, maxVal, size):  # noqa: N802, N803 (pyqtgraph naming)
        o = self.origin
        return [(spacing, [v - o for v in values])
                for spacing, values in super().tickValues(minVal + o, maxVal + o, size)]

    def tickStrings(self, values, scale, spacing):  # noqa: N802 (pyqtgraph naming)
        return super().tickStrings([v + self.origin for v in values], scale, spacing)
