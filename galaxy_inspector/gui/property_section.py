"""The "Physical properties" section of the posterior panel: for each active property model its
predictions (mode, median, 68.27/95.45 % intervals with units, a small marginal plot), its name,
the demo warning, or why it could not predict this galaxy. It shows what the engine returned
(``physical_properties.measure.PropertyMeasurement``); it computes nothing itself.
"""

from __future__ import annotations

import html

import numpy as np
from matplotlib.figure import Figure
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHeaderView,
    QLabel,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from galaxy_inspector.gui.plots import ScrollingCanvas
from galaxy_inspector.viewer.corner_plot import draw_marginals
from galaxy_inspector.viewer.model_cards import DEMO_COLOUR, DEMO_LABEL
from galaxy_inspector.viewer.wording import format_value, property_label, reason_in_words

__all__ = ["PropertySection", "PropertyBlock", "SECTION_TITLE", "FittedTable"]

SECTION_TITLE = "Physical properties"
#: Interval levels shown in the table (the export row has all three).
SHOWN_LEVELS = (("68", "68.27 %"), ("95", "95.45 %"))
ERROR_STYLE = "color: #b00020"


class PropertyBlock(QWidget):
    """One property model's result: heading (name, demo warning), then the table and marginal
    plots, or the reason it has no prediction for this galaxy."""

    def __init__(self, prediction, parent=None, in_catalogue: bool = False):
        super().__init__(parent)
        self.prediction = prediction
        p = prediction
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 4)
        heading = f"<b>{html.escape(p.model)}</b>"
        if p.demo:
            heading += (f"<br><span style='color:{DEMO_COLOUR}'><b>⚠ {DEMO_LABEL}</b>: "
                        "synthetic labels, so these numbers are not measurements of this "
                        "galaxy</span>")
        self.heading = QLabel(heading)
        self.heading.setWordWrap(True)
        self.heading.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(self.heading)
        self.reason = QLabel()
        self.reason.setWordWrap(True)
        self.reason.setTextFormat(Qt.TextFormat.RichText)
        self.reason.setStyleSheet(ERROR_STYLE)
        self.table = None
        self.canvas = None
        self.figure = None
        layout.addWidget(self.reason)  # in the layout either way, so it is never a lone window
        if p.error:
            self.reason.setText(f"Not predicted: {reason_in_words(p.error, in_catalogue)}")
            return
        self.reason.hide()
        self.table = self._make_table(p)
        layout.addWidget(self.table)
        if p.samples is not None and np.size(p.samples):
            self.figure = Figure(figsize=(4.6, 1.25), dpi=90)
            self.canvas = ScrollingCanvas(self.figure)
            self.canvas.setFixedHeight(118)
            self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
            samples = np.asarray(p.samples, dtype=float).reshape(len(p.samples), -1)
            draw_marginals(self.figure, samples, p.names,
                           [property_label(n, u) for n, u in zip(p.names, p.units, strict=True)],
                           p.summary)
            layout.addWidget(self.canvas)

    @staticmethod
    def _make_table(p) -> QTableWidget:
        table = FittedTable(len(p.names), 3 + len(SHOWN_LEVELS))
        table.setHorizontalHeaderLabels(["property", "mode", "median"]
                                        + [f"{label} HPD" for _, label in SHOWN_LEVELS])
        table.verticalHeader().setVisible(False)
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        for r, (name, unit) in enumerate(zip(p.names, p.units, strict=True)):
            cells = [property_label(name, unit), format_value(p.summary.get(f"{name}_mode")),
                     format_value(p.summary.get(f"{name}_median"))]
            for suffix, _ in SHOWN_LEVELS:
                lo, hi = p.summary.get(f"{name}_lo{suffix}"), p.summary.get(f"{name}_hi{suffix}")
                cells.append(f"[{format_value(lo)}, {format_value(hi)}]")
            for c, text in enumerate(cells):
                table.setItem(r, c, QTableWidgetItem(text))
        table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        table.fit_height()
        return table


class FittedTable(QTableWidget):
    """A table exactly as high as its rows, which grow when narrow columns wrap their text."""

    def fit_height(self) -> None:
        self.resizeRowsToContents()
        height = self.horizontalHeader().sizeHint().height() + 2 * self.frameWidth()
        height += sum(self.rowHeight(r) for r in range(self.rowCount()))
        self.setFixedHeight(height)

    def resizeEvent(self, event):  # noqa: N802 (Qt naming)
        super().resizeEvent(event)
        self.fit_height()


class PropertySection(QGroupBox):
    """Every active property model's block; hidden when no property model is active.
    ``in_catalogue``: the predictions come from a catalogue (its redshift column), not from a
    click in the main window (its toolbar's redshift)."""

    def __init__(self, parent=None, in_catalogue: bool = False):
        super().__init__(SECTION_TITLE, parent)
        self.in_catalogue = in_catalogue
        self.blocks: dict[str, PropertyBlock] = {}
        self.setStyleSheet("QGroupBox { font-weight: bold; } QGroupBox * { font-weight: normal; }")
        self.note = QLabel()
        self.note.setWordWrap(True)
        self._layout = QVBoxLayout(self)
        self._layout.addWidget(self.note)
        self.setVisible(False)

    def show_properties(self, properties: dict | None, redshift: float | None = None) -> None:
        """Show ``{bundle name: PropertyMeasurement}`` (empty or None hides the section)."""
        for block in self.blocks.values():
            self._layout.removeWidget(block)
            block.deleteLater()
        self.blocks = {}
        if not properties:
            self.setVisible(False)
            return
        where = "the catalogue row" if self.in_catalogue else "the toolbar"
        z = f"none in {where}" if redshift is None else f"z = {redshift:g} (from {where})"
        self.note.setText(f"Redshift: {z}")
        for name, prediction in properties.items():
            block = PropertyBlock(prediction, self, self.in_catalogue)
            self.blocks[name] = block
            self._layout.addWidget(block)
        self.setVisible(True)
