"""The posterior panel: corner plot, summary table, label, flags in words, the crop the network
saw, the physical-property predictions, and exports. It shows what the engine measured; it
computes nothing itself: a measurement the engine refused (``Measurement.error``) shows the
reason instead of a posterior. What has nothing to show (plot, crop, table before a galaxy is
measured, or when it was refused) is hidden, and the heading scrolled into view, so the hint
or the reason is what one sees.
"""

from __future__ import annotations

import html
import math
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from matplotlib.figure import Figure
from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QBoxLayout,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from galaxy_inspector import __version__
from galaxy_inspector.catalogue import RowOrigin, measurement_table, single_row, write_table
from galaxy_inspector.catalogue.schema import flag_attributes
from galaxy_inspector.errors import GalaxyInspectorError, first_line, user_message
from galaxy_inspector.flags import FLAG_DESCRIPTIONS, Flag
from galaxy_inspector.gui.file_filters import FIGURE_FILTER, ROW_FILTER
from galaxy_inspector.gui.plots import ScrollingCanvas
from galaxy_inspector.gui.property_section import FittedTable, PropertySection
from galaxy_inspector.posterior import LEVEL_SUFFIXES, LEVELS
from galaxy_inspector.viewer.corner_plot import draw_analysis, export_analysis
from galaxy_inspector.viewer.wording import format_value, parameter_label, psf_in_words

__all__ = ["PosteriorPanel", "measurement_row", "measurement_attrs"]


def measurement_row(analysis) -> dict:
    """The galaxy's catalogue row (the columns and values ``--batch`` writes for it), then the
    provenance a catalogue keeps in its attributes: ``model``, ``property_models`` and
    ``demo_models``."""
    path = Path(analysis.source)
    origin = RowOrigin(id=path.name or "galaxy", source=analysis.source,
                       input_key=str(path.resolve()) if analysis.source else "",
                       hdu=analysis.hdu, redshift=analysis.redshift)
    row = single_row(origin, analysis.measurement)
    properties = analysis.measurement.properties
    row["model"] = analysis.model_name
    if properties:
        row["property_models"] = ", ".join(properties)
        row["demo_models"] = ", ".join(name for name, p in properties.items() if p.demo)
    return row


#: What an exported row says about its pixel numbers, whatever origin the window showed.
PIXEL_CONVENTION = ("x, y and crop_x0..crop_y1 are 0-based pixel coordinates (numpy/astropy, "
                    "integers at pixel centres); FITS/DS9 pixel numbers are these + 1")


def measurement_attrs(analysis) -> dict:
    """What a catalogue's root attributes would say about the galaxy's row (its export's
    provenance): app version, time, the models (the morphology model with its SHA-256) and the
    meaning of each flag bit."""
    properties = analysis.measurement.properties
    return {"app_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "model_name": analysis.model_name, "model_sha256": analysis.model_sha256,
            "model_names": ", ".join([analysis.model_name, *properties]),
            "demo_models": ", ".join(name for name, p in properties.items() if p.demo),
            "model_reads_psf": analysis.measurement.psf_told is not None,
            **flag_attributes()}


#: Panel width (pixels) under which the crop is shown below the corner plot.
STACK_BELOW = 560
#: What the panel says before a galaxy is shown: in the main window one clicks the image, in
#: the catalogue browser one selects a row.
HINTS = {False: "Click a galaxy in the image to measure it.",
         True: "Select a row of the table to see its galaxy's posterior."}


class PosteriorPanel(QWidget):
    """Shows one galaxy's posterior (``show_analysis``) or a hint when there is none.
    ``in_catalogue``: it shows catalogue rows (the catalogue browser), not clicks."""

    def __init__(self, parent=None, in_catalogue: bool = False):
        super().__init__(parent)
        self.analysis = None
        self.pixel_origin = 0  # how the header numbers pixels (ViewerState.pixel_origin)
        self.hint = HINTS[in_catalogue]
        self.heading = QLabel(self.hint)
        self.heading.setWordWrap(True)
        self.heading.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.heading.setTextFormat(Qt.TextFormat.RichText)
        # The size hint (figsize x dpi) is what the scroll area gives the canvas when space is
        # short; 300 px keeps the tables below it in view.
        self.figure = Figure(figsize=(4.6, 300 / 90), dpi=90, layout=None)
        self.canvas = ScrollingCanvas(self.figure)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.canvas.setMinimumHeight(300)
        self.crop_view = pg.GraphicsLayoutWidget()
        self.crop_view.setFixedSize(150, 150)
        crop_box = self.crop_view.addViewBox(lockAspect=True, enableMouse=False)
        self.crop_item = pg.ImageItem(axisOrder="row-major")
        crop_box.addItem(self.crop_item)
        self.crop_caption = QLabel()
        self.crop_caption.setWordWrap(True)
        self.table = FittedTable(0, 3 + len(LEVELS))  # as high as its rows, however they wrap
        self.table.setHorizontalHeaderLabels(
            ["parameter", "mode", "median"] + [f"{100 * lv:.2f} % HPD" for lv in LEVELS])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.flags_text = QLabel()
        self.flags_text.setWordWrap(True)
        self.flags_text.setTextFormat(Qt.TextFormat.RichText)
        self.export_figure_button = QPushButton("Export figure…")
        self.export_row_button = QPushButton("Export row…")
        self.export_figure_button.clicked.connect(self._ask_export_figure)
        self.export_row_button.clicked.connect(self._ask_export_row)

        self.crop_panel = crop_panel = QWidget()
        crop_column = QVBoxLayout(crop_panel)
        crop_column.setContentsMargins(0, 0, 0, 0)
        crop_column.addWidget(QLabel("<b>What the network saw</b>"))
        crop_column.addWidget(self.crop_view)
        crop_column.addWidget(self.crop_caption)
        crop_column.addStretch(1)
        top = QBoxLayout(QBoxLayout.Direction.LeftToRight)
        top.addWidget(self.canvas, 1)
        top.addWidget(crop_panel)
        self._top = top
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.export_figure_button)
        buttons.addWidget(self.export_row_button)
        self.properties = PropertySection(in_catalogue=in_catalogue)
        content = QWidget()
        inner = QVBoxLayout(content)
        inner.setContentsMargins(0, 0, 0, 0)
        inner.addWidget(self.heading)
        inner.addLayout(top, 1)
        inner.addWidget(self.table)
        inner.addWidget(self.flags_text)
        inner.addWidget(self.properties)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll.setWidget(content)
        self._content = content
        layout = QVBoxLayout(self)
        layout.addWidget(self.scroll, 1)
        layout.addLayout(buttons)
        self.show_analysis(None)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt naming)
        """As wide as the content wants (a scroll area alone would ask for little)."""
        hint = super().sizeHint()
        width = (self._content.sizeHint().width()
                 + self.scroll.verticalScrollBar().sizeHint().width()
                 + self.layout().contentsMargins().left() + self.layout().contentsMargins().right())
        return QSize(max(hint.width(), width), hint.height())

    def resizeEvent(self, event):  # noqa: N802 (Qt naming)
        """Below ``STACK_BELOW`` pixels, the crop goes under the corner plot instead of
        beside it, so a narrow panel still shows the plot at its width."""
        super().resizeEvent(event)
        direction = (QBoxLayout.Direction.TopToBottom if self.width() < STACK_BELOW
                     else QBoxLayout.Direction.LeftToRight)
        if direction != self._top.direction():
            self._top.setDirection(direction)
            self._content.updateGeometry()  # the scroll area asks the new minimum height

    # -- showing -------------------------------------------------------------------------
    def set_pixel_origin(self, origin: int) -> None:
        """Number the header's pixel position from ``origin`` (0 astropy, 1 FITS/DS9)."""
        self.pixel_origin = origin
        if self.analysis is not None:
            self._show_heading(self.analysis)

    def show_analysis(self, analysis) -> None:
        """Show an engine measurement (``tasks.GalaxyAnalysis``), or clear the panel."""
        self.analysis = analysis
        has = analysis is not None
        self.export_figure_button.setEnabled(has)
        self.export_row_button.setEnabled(has)
        measured = has and not analysis.measurement.error
        for widget in (self.canvas, self.crop_panel, self.table):
            widget.setVisible(measured)
        if not measured:
            self.scroll.verticalScrollBar().setValue(0)  # the hint or the reason in view
        if not has:
            self.heading.setText(self.hint)
            self.figure.clear()
            self.canvas.draw_idle()
            self.table.setRowCount(0)
            self.flags_text.setText("")
            self.crop_item.clear()
            self.crop_caption.setText("")
            self.properties.show_properties(None)
            return
        m = analysis.measurement
        self._show_heading(analysis)
        if m.error:
            self.figure.clear()
        else:
            draw_analysis(self.figure, analysis)
        self.canvas.draw_idle()
        self._show_table(m)
        self._show_flags(m)
        self._show_crop(m)
        self.properties.show_properties(getattr(m, "properties", None),
                                        getattr(analysis, "redshift", None))

    def _show_heading(self, analysis) -> None:
        m = analysis.measurement
        s, o = m.stamp, self.pixel_origin
        where = f"x={s.x + o:.1f}, y={s.y + o:.1f} ({o}-based)"
        if analysis.plane:
            where = f"plane {analysis.plane}, {where}"
        if math.isfinite(s.ra):
            where += f", RA={s.ra:.6f}°, Dec={s.dec:+.6f}°"
        if m.error:
            verdict = f"<span style='color:#b00020'>Not measured: {html.escape(m.error)}</span>"
        else:
            label = html.escape(m.label) if m.label else "no qualitative label"
            verdict = (f"Label: <b>{label}</b> &nbsp; S/N within 2 R_e: "
                       f"{format_value(m.snr)}")
        self.heading.setText(
            f"<b>{html.escape(Path(analysis.source).name)}</b> — {where}<br>"
            f"{verdict} &nbsp; model: {html.escape(analysis.model_name)}")

    def _show_table(self, m) -> None:
        self.table.setRowCount(len(m.names))
        for r, (name, unit) in enumerate(zip(m.names, m.units, strict=True)):
            cells = [parameter_label(name, unit), format_value(m.summary.get(f"{name}_mode")),
                     format_value(m.summary.get(f"{name}_median"))]
            for suffix in LEVEL_SUFFIXES:
                lo, hi = m.summary.get(f"{name}_lo{suffix}"), m.summary.get(f"{name}_hi{suffix}")
                cells.append(f"[{format_value(lo)}, {format_value(hi)}]")
            for c, text in enumerate(cells):
                self.table.setItem(r, c, QTableWidgetItem(text))
        self.table.fit_height()

    def _show_flags(self, m) -> None:
        lines = [f"<b>Calibration:</b> {html.escape(m.stamp.calibration)}",
                 f"<b>PSF:</b> {html.escape(psf_in_words(m))}"]
        set_flags = [f for f in Flag if m.flags & f]
        if not set_flags:
            lines.append("<b>Flags:</b> none — nothing unusual was found.")
        else:
            lines.append("<b>Flags:</b>")
            lines += [f"&nbsp;• <b>{f.name}</b>: {html.escape(FLAG_DESCRIPTIONS[f])}"
                      for f in set_flags]
        self.flags_text.setText("<br>".join(lines))

    def _show_crop(self, m) -> None:
        self.crop_view.setVisible(m.crop is not None)
        if m.crop is None:
            self.crop_item.clear()
            self.crop_caption.setText("" if not math.isfinite(m.stn_scale) else
                                      f"STN scale {m.stn_scale:.2f} (cyan box in the image); "
                                      "the crop itself is not stored in catalogues.")
            return
        crop = np.asarray(m.crop, dtype=np.float32)
        lo, hi = np.percentile(crop, [1, 99.5])
        self.crop_item.setImage(crop, levels=(lo, hi if hi > lo else lo + 1))
        side = int(m.stamp.data.shape[0])
        read = f"{m.stn_scale * side:.0f}"
        field = (f"the central {read} of {side} stamp pixels" if m.stn_scale <= 1 else
                 f"a {read}-pixel field, zoomed out past the {side}-pixel stamp")
        binned = ""
        if m.stamp.binning > 1:
            binned = (f" The galaxy is larger than the model's training sizes, so its stamp "
                      f"was binned {format_value(m.stamp.binning)}×: each stamp pixel spans "
                      f"{format_value(m.stamp.model_scale)}″, the model saw the galaxy "
                      f"{format_value(m.stamp.binning)} times smaller, and R_e is scaled back.")
        self.crop_caption.setText(f"STN scale {m.stn_scale:.2f}: the network read {field} "
                                  f"(cyan box in the image).{binned}")

    # -- exporting -----------------------------------------------------------------------
    def export_figure(self, path: str) -> None:
        """Save the corner plot with its provenance; the format follows the suffix (.png,
        .pdf, .svg)."""
        export_analysis(path, self.analysis, self.pixel_origin)

    def export_row(self, path: str) -> None:
        """Save the galaxy's row as a one-row table, with units, descriptions and provenance
        like a catalogue export, and its pixel convention (``PIXCONV``: 0-based, as in
        catalogues); the format follows the suffix (a key of EXPORT_FORMATS)."""
        table = measurement_table(measurement_row(self.analysis), self.analysis.measurement,
                                  measurement_attrs(self.analysis))
        table.meta["PIXCONV"] = PIXEL_CONVENTION  # whatever origin the window showed
        write_table(table, path)

    def _ask_export_figure(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export posterior figure",
                                              "posterior.png", FIGURE_FILTER)
        if path:
            self._guarded(self.export_figure, path)

    def _ask_export_row(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export galaxy row", "galaxy.csv",
                                              ROW_FILTER)
        if path:
            self._guarded(self.export_row, path)

    def _guarded(self, func, path) -> None:
        from PySide6.QtWidgets import QMessageBox

        try:
            func(path)
        except (OSError, ValueError) as exc:  # ours (one line already), or matplotlib's
            message = (user_message(exc) if isinstance(exc, GalaxyInspectorError)
                       else f"cannot write {path}: {first_line(exc)}")
            QMessageBox.warning(self, "Export failed", message)
