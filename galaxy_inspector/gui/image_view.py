"""The sky image view: pyqtgraph image with zoom/pan, DS9 right-drag contrast/bias, crop box,
and a mask overlay (magenta over the pixels the file marks unusable, toggled by
``mask_overlay_action``). A display image (JPEG/PNG) is drawn as it is, in colour, with no stretch
and no contrast/bias: it was stretched when it was made.

View coordinates are the 0-based pixel coordinates of ``galaxy_inspector.conventions``: integer
values at pixel centres, row 0 at the bottom (FITS/DS9 orientation, so north is up for the usual
north-up, east-left images). The widget only draws what ``ViewerState`` holds and reports the
user's gestures as signals; it computes nothing about galaxies.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QAction, QPen
from PySide6.QtWidgets import QGraphicsRectItem, QVBoxLayout, QWidget

from galaxy_inspector.gui.pixel_axis import PixelAxis
from galaxy_inspector.viewer.display import (
    DISPLAY_IMAGE_LEVELS,
    display_image_rgb,
    display_levels,
    lupton_composite,
    mask_overlay,
    normalize,
)
from galaxy_inspector.viewer.state import COMPOSITE_BAND, ViewerState

#: Longest side drawn, in image pixels: a larger image is shown subsampled (every k-th pixel,
#: ``SkyImage.preview``), so that a 20000-pixel field opens without holding its whole plane.
DISPLAY_MAX_SIDE = 4096

__all__ = ["SkyImageView", "ContrastBiasViewBox"]


class ContrastBiasViewBox(pg.ViewBox):
    """A ViewBox where right-drag sets contrast/bias (DS9 habit) instead of zooming.

    Left-drag pans, the wheel zooms, a left click is reported by the scene.
    """

    contrast_bias_dragged = Signal(float, float)

    def mouseDragEvent(self, ev, axis=None):  # noqa: N802 (Qt naming)
        if ev.button() != Qt.MouseButton.RightButton:
            super().mouseDragEvent(ev, axis)
            return
        ev.accept()
        rect = self.boundingRect()
        pos = ev.pos()
        x_frac = min(max((pos.x() - rect.left()) / max(rect.width(), 1.0), 0.0), 1.0)
        y_frac = min(max((pos.y() - rect.top()) / max(rect.height(), 1.0), 0.0), 1.0)
        # Up = more contrast (x 1/8 .. 8); right = brighter (bias from 1 down to 0), as in DS9.
        contrast = 2.0 ** ((0.5 - y_frac) * 6.0)
        bias = 1.0 - x_frac
        self.contrast_bias_dragged.emit(contrast, bias)


class SkyImageView(QWidget):
    """Shows ``state``'s image; emits ``clicked(x, y)`` and ``hovered(x, y)`` in pixel
    coordinates, and ``pointer_left()`` when the pointer leaves the image (nothing is under it)."""

    clicked = Signal(float, float)
    hovered = Signal(float, float)
    pointer_left = Signal()

    def __init__(self, state: ViewerState, parent=None):
        super().__init__(parent)
        self.state = state
        self.view_box = ContrastBiasViewBox()
        self.view_box.setAspectLocked(True)
        self.view_box.setMenuEnabled(False)
        self.plot = pg.PlotWidget(viewBox=self.view_box, axisItems={
            "bottom": PixelAxis("bottom", "x", state), "left": PixelAxis("left", "y", state)})
        self.plot.setBackground("k")
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.view_box.addItem(self.image_item)
        self.mask_item = pg.ImageItem(axisOrder="row-major")
        self.mask_item.setZValue(5)
        self.view_box.addItem(self.mask_item)
        self.mask_overlay_action = QAction("Show &masked pixels", self)
        self.mask_overlay_action.setCheckable(True)
        self.mask_overlay_action.setChecked(True)
        self.mask_overlay_action.setToolTip(
            "Colour the pixels the file's mask marks unusable (bad, saturated, cosmic ray, no "
            "data) in magenta. Display limits never use them, shown or not.")
        self.mask_overlay_action.toggled.connect(lambda _on: self._show_mask())
        self.crop_box = QGraphicsRectItem()
        pen = QPen(Qt.GlobalColor.cyan)
        pen.setCosmetic(True)
        pen.setWidth(2)
        self.crop_box.setPen(pen)
        self.crop_box.setZValue(10)
        self.crop_box.hide()
        self.view_box.addItem(self.crop_box)
        self.stamp_box = QGraphicsRectItem()
        dashed = QPen(Qt.GlobalColor.yellow)
        dashed.setCosmetic(True)
        dashed.setStyle(Qt.PenStyle.DashLine)
        self.stamp_box.setPen(dashed)
        self.stamp_box.setZValue(9)
        self.stamp_box.hide()
        self.view_box.addItem(self.stamp_box)
        self.marker = pg.ScatterPlotItem(size=14, symbol="+", pen=pg.mkPen("m", width=2),
                                         brush=None)
        self.marker.setZValue(11)
        self.view_box.addItem(self.marker)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot)
        self._normalized = None
        self._mask = None
        self.plot.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.plot.scene().sigMouseClicked.connect(self._on_mouse_clicked)
        self.view_box.contrast_bias_dragged.connect(self._on_contrast_bias)
        for name in ("images", "band", "stretch", "interval"):
            state.add_callback(name, lambda _value: self.refresh_image())
        for name in ("contrast", "bias"):
            state.add_callback(name, lambda _value: self._apply_levels())
        state.add_callback("position", self._show_position)
        state.add_callback("analysis", self._show_analysis)

    # -- drawing -------------------------------------------------------------------------
    def refresh_image(self) -> None:
        """Redraw the image from the state (new file, band, stretch or limits)."""
        images = self.state.images
        if not images:
            self.image_item.clear()
            self._normalized = self._mask = None
            self._show_mask()
            return
        s = self.state
        shown = images if s.band == COMPOSITE_BAND and s.can_composite() else (s.image,)
        planes = [im.preview(DISPLAY_MAX_SIDE) for im in shown]
        self._mask = _union([im.preview(DISPLAY_MAX_SIDE, "mask") for im in shown])
        if s.image.is_display_image:
            self._normalized = display_image_rgb(*planes) if len(planes) == 3 else planes[0]
        elif len(planes) > 1:
            # Planes are ordered blue to red in a file (g, r, i): red channel = last plane.
            red, green, blue = (planes[k] for k in (-1, len(planes) // 2, 0))
            self._normalized = lupton_composite(red, green, blue,
                                                mask=self._mask).astype(np.float32) / 255.0
        else:
            self._normalized = normalize(planes[0], s.stretch, s.interval, mask=self._mask)
        first = self.image_item.image is None or self.image_item.image.shape[:2] != \
            self._normalized.shape[:2]
        self.image_item.setImage(self._normalized, autoLevels=False)
        ny, nx = s.image.shape  # a subsampled preview is stretched over the whole image
        self.image_item.setRect(QRectF(-0.5, -0.5, nx, ny))
        self._apply_levels()
        self._show_mask()
        if first:
            self.view_box.autoRange(padding=0.02)

    def _apply_levels(self) -> None:
        if self._normalized is None:
            return
        if self.state.image.is_display_image:
            lo, hi = DISPLAY_IMAGE_LEVELS
        else:
            lo, hi = display_levels(self.state.contrast, self.state.bias)
        if self._normalized.ndim == 3:
            self.image_item.setLevels([[lo, hi]] * 3)
        else:
            self.image_item.setLevels((lo, hi))

    def _show_mask(self) -> None:
        """Draw the mask overlay when it is switched on and the image shown has masked pixels."""
        self.mask_overlay_action.setEnabled(self._mask is not None)
        if self._mask is None or not self.mask_overlay_action.isChecked() or \
                not self._mask.any():
            self.mask_item.hide()
            return
        self.mask_item.setImage(mask_overlay(self._mask), autoLevels=False, levels=(0, 255))
        ny, nx = self.state.image.shape
        self.mask_item.setRect(QRectF(-0.5, -0.5, nx, ny))
        self.mask_item.show()

    def _show_position(self, position) -> None:
        if position is None:
            self.marker.clear()
            self.crop_box.hide()
            self.stamp_box.hide()
            return
        self.marker.setData([position[0]], [position[1]])

    def _show_analysis(self, analysis) -> None:
        """Draw the STN crop (solid) and the stamp (dashed) the engine reports, in image pixels.
        A refused measurement has a stamp but no crop: the network read nothing."""
        refused = analysis is not None and bool(analysis.measurement.error)
        for item, key in ((self.crop_box, "crop_box"), (self.stamp_box, "stamp_box")):
            box = getattr(analysis, key, None) if analysis is not None else None
            if refused and item is self.crop_box:
                box = None
            if box is None or not all(math.isfinite(v) for v in box):
                item.hide()
                continue
            x0, y0, x1, y1 = box
            item.setRect(QRectF(QPointF(x0, y0), QPointF(x1, y1)))
            item.show()

    # -- gestures ------------------------------------------------------------------------
    def _on_mouse_moved(self, scene_pos) -> None:
        if self.state.image is None:
            return
        p = self.view_box.mapSceneToView(scene_pos)
        self.hovered.emit(p.x(), p.y())

    def leaveEvent(self, event):  # noqa: N802 (Qt naming)
        self.pointer_left.emit()
        super().leaveEvent(event)

    def _on_mouse_clicked(self, event) -> None:
        if event.button() != Qt.MouseButton.LeftButton or self.state.image is None:
            return
        if event.double():
            return
        p = self.view_box.mapSceneToView(event.scenePos())
        ny, nx = self.state.image.shape
        if -0.5 <= p.x() < nx - 0.5 and -0.5 <= p.y() < ny - 0.5:
            self.clicked.emit(p.x(), p.y())

    def _on_contrast_bias(self, contrast: float, bias: float) -> None:
        if self.state.image is None or self.state.image.is_display_image:
            return  # a display image is shown at its own levels
        self.state.contrast = contrast
        self.state.bias = bias

    def click_at(self, x: float, y: float) -> None:
        """Act as if the user clicked pixel (x, y): used by ``--screenshot`` and tests."""
        self.clicked.emit(float(x), float(y))


def _union(masks) -> np.ndarray | None:
    """Pixels masked in any of the planes shown (None when none of them has a mask)."""
    masks = [m for m in masks if m is not None]
    return np.logical_or.reduce(masks) if masks else None
