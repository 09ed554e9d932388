"""The catalogue browser: a sortable, filterable table of an HDF5 catalogue, the selected
galaxy's image, crop and posterior, and simple plots of catalogue columns. Table and scatter
plot are linked views, as in TOPCAT: the selected rows are ringed in the plot, and clicking a
point selects its row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QRegularExpression,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QPushButton,
    QSplitter,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from galaxy_inspector.catalogue import export_catalogue, export_note, read_catalogue
from galaxy_inspector.errors import user_message
from galaxy_inspector.gui.file_filters import EXPORT_FILTER
from galaxy_inspector.gui.image_view import SkyImageView
from galaxy_inspector.gui.plots import plain_axes
from galaxy_inspector.gui.posterior_panel import PosteriorPanel
from galaxy_inspector.gui.region_actions import install_browser as install_region_actions
from galaxy_inspector.gui.workers import Worker, start_worker
from galaxy_inspector.viewer.state import ViewerState
from galaxy_inspector.viewer.tasks import catalogue_galaxy_task
from galaxy_inspector.viewer.wording import format_value

__all__ = ["CatalogueBrowser", "CatalogueTableModel", "HISTOGRAM", "column_label", "cell_text"]

HISTOGRAM = "(histogram)"
ALL_COLUMNS = "all columns"
#: Counts up to this are labelled at every integer (pyqtgraph would write 0.1 … 0.9 galaxies).
UNIT_TICKS_UP_TO = 10
SELECTED_PEN = pg.mkPen("#d62728", width=2)


def column_label(table, name: str) -> str:
    """A column's name with its unit, as TOPCAT writes it: 're_arcsec_mode [arcsec]'."""
    unit = table[name].unit
    return f"{name} [{unit}]" if unit else name


def cell_text(value, unit) -> str:
    """A cell as a person reads it: sky coordinates to 6 decimals (0.004 arcsec), pixel
    positions to 2, other numbers to 4 significant digits (``wording.format_value``: no
    exponent below 10^7), missing values as a dash."""
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            return format_value(None)
        if str(unit) == "deg":
            return f"{value:.6f}"
        if str(unit) == "pix":
            return f"{value:.2f}"
        return format_value(float(value))
    return str(value)


class CatalogueTableModel(QAbstractTableModel):
    """An astropy Table as a Qt model; ``UserRole`` gives raw values so numbers sort as numbers."""

    def __init__(self, table, parent=None):
        super().__init__(parent)
        self.table = table
        self.columns = [c for c in table.colnames if table[c].ndim == 1]

    def rowCount(self, parent=QModelIndex()):  # noqa: N802, B008 (Qt API)
        return 0 if parent.isValid() else len(self.table)

    def columnCount(self, parent=QModelIndex()):  # noqa: N802, B008 (Qt API)
        return 0 if parent.isValid() else len(self.columns)

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        value = self.table[self.columns[index.column()]][index.row()]
        if role == Qt.ItemDataRole.UserRole:
            return value.item() if hasattr(value, "item") else value
        column = self.table[self.columns[index.column()]]
        if role == Qt.ItemDataRole.DisplayRole:
            return cell_text(value, column.unit)
        if role == Qt.ItemDataRole.TextAlignmentRole and np.issubdtype(column.dtype, np.number):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation != Qt.Orientation.Horizontal:
            return str(section) if role == Qt.ItemDataRole.DisplayRole else None
        name = self.columns[section]
        if role == Qt.ItemDataRole.DisplayRole:
            return column_label(self.table, name)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self.table[name].description or None
        return None


class CatalogueBrowser(QMainWindow):
    """Browse one catalogue; selecting a row shows that galaxy like the main window does."""

    def __init__(self, models, main_state: ViewerState | None = None, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Catalogue browser")
        self.resize(1400, 850)
        self.models = models
        self.main_state = main_state
        self.path = ""
        self.table = None
        self.state = ViewerState()
        if main_state is not None:
            self.state.stretch, self.state.interval = main_state.stretch, main_state.interval
            self.state.pixel_origin = main_state.pixel_origin  # one choice for every window
        self.worker: Worker | None = None

        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSortRole(Qt.ItemDataRole.UserRole)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.view = QTableView()
        self.view.setModel(self.proxy)
        self.view.setSortingEnabled(True)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        # Rows as high as a line of text, so a screenful of the table is many galaxies.
        self.view.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        self.filter_column = QComboBox()
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("filter rows (regular expression), e.g. ^ok$")
        self.filter_edit.textChanged.connect(self._apply_filter)
        self.filter_column.currentIndexChanged.connect(self._apply_filter)
        self.count_label = QLabel()
        export = QPushButton("Export…")
        export.clicked.connect(self._ask_export)
        filter_row = QHBoxLayout()
        filter_row.addWidget(QLabel("Filter"))
        filter_row.addWidget(self.filter_column)
        filter_row.addWidget(self.filter_edit, 1)
        filter_row.addWidget(self.count_label)
        filter_row.addWidget(export)
        table_side = QWidget()
        table_layout = QVBoxLayout(table_side)
        table_layout.addLayout(filter_row)
        table_layout.addWidget(self.view)

        self.image_view = SkyImageView(self.state)
        self.posterior = PosteriorPanel(in_catalogue=True)
        self.posterior.set_pixel_origin(self.state.pixel_origin)
        self.status = QLabel("Select a row to see its galaxy.")
        self.status.setWordWrap(True)
        galaxy = QSplitter(Qt.Orientation.Horizontal)
        galaxy.addWidget(self.image_view)
        galaxy.addWidget(self.posterior)
        galaxy.setSizes([450, 650])
        galaxy_tab = QWidget()
        galaxy_layout = QVBoxLayout(galaxy_tab)
        galaxy_layout.addWidget(self.status)
        galaxy_layout.addWidget(galaxy, 1)

        self.plot_x = QComboBox()
        self.plot_y = QComboBox()
        self.plot = pg.PlotWidget(background="w")
        plain_axes(self.plot)
        self._plotted = None  # (catalogue rows, x, y) of the scatter's points
        # A PlotDataItem, not a bare scatter, so that log axes apply to it too.
        self.selected_points = pg.PlotDataItem(pen=None, symbol="o", symbolSize=13,
                                               symbolPen=SELECTED_PEN, symbolBrush=None)
        self.selected_points.setZValue(10)
        for name in ("left", "bottom"):  # pyqtgraph's pale grey is hard to read on white
            self.plot.getAxis(name).setTextPen("#222222")
            self.plot.getAxis(name).setPen("#555555")
        self.log_x = QCheckBox("log")
        self.log_y = QCheckBox("log")
        self.log_x.setToolTip("logarithmic x axis (rows without a positive value are left out)")
        self.log_y.setToolTip("logarithmic y axis, or counts of a histogram")
        for control in (self.plot_x, self.plot_y):
            control.currentIndexChanged.connect(self.redraw_plot)
        for control in (self.log_x, self.log_y):
            control.toggled.connect(self.redraw_plot)
        plot_row = QHBoxLayout()
        plot_row.addWidget(QLabel("x"))
        plot_row.addWidget(self.plot_x, 1)
        plot_row.addWidget(self.log_x)
        plot_row.addWidget(QLabel("y"))
        plot_row.addWidget(self.plot_y, 1)
        plot_row.addWidget(self.log_y)
        plot_tab = QWidget()
        plot_layout = QVBoxLayout(plot_tab)
        plot_layout.addLayout(plot_row)
        plot_layout.addWidget(self.plot, 1)

        self.tabs = QTabWidget()
        self.tabs.addTab(galaxy_tab, "Galaxy")
        self.tabs.addTab(plot_tab, "Plots")
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(table_side)
        splitter.addWidget(self.tabs)
        splitter.setStretchFactor(0, 1)  # the table takes what the window gains
        splitter.setSizes([470, 380])
        self.setCentralWidget(splitter)
        self.state.add_callback("analysis", self.posterior.show_analysis)
        install_region_actions(self)  # Regions menu: export DS9 regions

    # -- loading -------------------------------------------------------------------------
    def load(self, path: str) -> bool:
        """Read the catalogue's ``/galaxies`` table; a failure is shown, not raised."""
        try:
            table = read_catalogue(path)
        except (OSError, ValueError) as exc:
            self.status.setText(f"<span style='color:#b00020'>Cannot open {path}: "
                                f"{user_message(exc)}</span>")
            return False
        self.path, self.table = str(path), table
        self.setWindowTitle(f"{Path(path).name} — Catalogue browser")
        self.proxy.setSourceModel(CatalogueTableModel(table, self))
        self.view.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.proxy.sort(-1)  # file order until the user sorts
        self.view.selectionModel().selectionChanged.connect(self._on_selection)
        columns = self.proxy.sourceModel().columns
        self.filter_column.blockSignals(True)
        self.filter_column.clear()
        self.filter_column.addItems([ALL_COLUMNS] + columns)
        self.filter_column.blockSignals(False)
        numeric = [c for c in columns if np.issubdtype(table[c].dtype, np.number)]
        for box, extra in ((self.plot_x, []), (self.plot_y, [HISTOGRAM])):
            box.blockSignals(True)
            box.clear()
            box.addItems(extra + numeric)
            box.blockSignals(False)
        if "bt_mode" in numeric:
            self.plot_x.setCurrentText("bt_mode")
        self.view.selectionModel().selectionChanged.connect(self._show_selection_in_plot)
        self.view.resizeColumnsToContents()
        self._update_count()
        self.redraw_plot()
        return True

    def _apply_filter(self) -> None:
        column = self.filter_column.currentIndex() - 1  # -1: every column
        self.proxy.setFilterKeyColumn(column)
        self.proxy.setFilterRegularExpression(QRegularExpression(
            self.filter_edit.text(), QRegularExpression.PatternOption.CaseInsensitiveOption))
        self._update_count()
        self.redraw_plot()

    def _update_count(self) -> None:
        total = len(self.table) if self.table is not None else 0
        self.count_label.setText(f"{self.proxy.rowCount()} of {total} rows")

    # -- selecting -----------------------------------------------------------------------
    def select_row(self, row: int) -> None:
        """Select catalogue row ``row`` (source order), as a user click would."""
        index = self.proxy.mapFromSource(self.proxy.sourceModel().index(row, 0))
        self.view.selectRow(index.row())

    def selected_rows(self) -> list[int]:
        """The catalogue rows (file order) selected in the table."""
        return sorted(self.proxy.mapToSource(i).row()
                      for i in self.view.selectionModel().selectedRows())

    def _on_selection(self, *_args) -> None:
        rows = self.view.selectionModel().selectedRows()
        if not rows:
            return
        row_index = self.proxy.mapToSource(rows[0]).row()
        row = {name: _plain(self.table[name][row_index]) for name in self.table.colnames
               if self.table[name].ndim == 1}
        if row.get("status") != "ok":
            self.status.setText(f"{row.get('id')}: not measured — {row.get('error')}")
            self.state.analysis = None
            return
        self.status.setText(f"Loading {row['id']} from {row['source']}…")
        if self.worker is not None and self.worker.is_running:
            self.worker.quit()
        model = self.main_state.model if self.main_state is not None else None
        worker = Worker(catalogue_galaxy_task, self.models, self.path, row_index, row, model)
        worker.signals.returned.connect(lambda result: self._show_galaxy(row, result))
        worker.signals.errored.connect(lambda exc: self.status.setText(
            f"<span style='color:#b00020'>Cannot show {row['id']}: "
            f"{user_message(exc)}</span>"))
        self.worker = start_worker(worker)

    def _show_galaxy(self, row: dict, result) -> None:
        planes, analysis = result
        self.state.set_images(row["source"], planes)
        self.state.position = (row["x"], row["y"])
        self.state.analysis = analysis
        # The galaxy, not its whole field: a catalogue of a large image would show a speck.
        x0, y0, x1, y1 = analysis.stamp_box
        if all(np.isfinite((x0, y0, x1, y1))):
            self.image_view.view_box.setRange(xRange=(x0, x1), yRange=(y0, y1), padding=0.05)
        origin = "stored posterior samples" if analysis.measurement.crop is None \
            else "recomputed posterior (the file has no samples)"
        self.status.setText(f"{row['id']} — {origin}")

    # -- plotting and export -------------------------------------------------------------
    def redraw_plot(self) -> None:
        """Histogram of x, or scatter of y against x, over the rows passing the filter; the
        plot's title says when nothing can be drawn, and why."""
        self.plot.clear()
        self.plot.setTitle("")
        self._plotted = None
        self.plot.getAxis("left").setTickSpacing()  # automatic, unless counts are small
        if self.table is None or not self.plot_x.currentText():
            return
        rows = [self.proxy.mapToSource(self.proxy.index(r, 0)).row()
                for r in range(self.proxy.rowCount())]
        x_name, y_name = self.plot_x.currentText(), self.plot_y.currentText()
        histogram = y_name == HISTOGRAM or not y_name
        log_x, log_y = self.log_x.isChecked(), self.log_y.isChecked()
        x = np.asarray(self.table[x_name], dtype=float)[rows]
        y = None if histogram else np.asarray(self.table[y_name], dtype=float)[rows]
        keep = np.isfinite(x) & (x > 0 if log_x else True)
        if y is not None:
            keep &= np.isfinite(y) & (y > 0 if log_y else True)
        self.plot.setLogMode(x=log_x, y=log_y)
        self.plot.setLabel("bottom", column_label(self.table, x_name))
        self.plot.setLabel("left", "number of galaxies" if histogram
                           else column_label(self.table, y_name))
        if not keep.any():
            self.plot.setTitle("no row to plot: " + (
                "none passes the filter" if not rows else
                "no positive values for a log axis" if log_x or log_y else "no finite values"))
            return
        if histogram:
            values = np.log10(x[keep]) if log_x else x[keep]
            counts, edges = np.histogram(values, bins=min(50, max(5, values.size // 3)))
            # pyqtgraph takes the log of the data itself; an empty bin has no log.
            counts = np.where(counts > 0, counts, np.nan) if log_y else counts
            self.plot.plot(10.0 ** edges if log_x else edges, counts, stepMode="center",
                           fillLevel=None if log_y else 0, brush=(31, 95, 168, 120),
                           pen=pg.mkPen("#1f5fa8"))
            if not log_y and np.nanmax(counts) <= UNIT_TICKS_UP_TO:
                self.plot.getAxis("left").setTickSpacing(1, 1)
            return
        kept_rows = np.asarray(rows)[keep]
        points = self.plot.plot(x[keep], y[keep], pen=None, symbol="o", symbolSize=6,
                                symbolBrush=(31, 95, 168, 160), data=kept_rows)
        points.sigPointsClicked.connect(self._on_points_clicked)
        self._plotted = (kept_rows, x[keep], y[keep])
        self.plot.addItem(self.selected_points)
        self._show_selection_in_plot()

    def _show_selection_in_plot(self, *_args) -> None:
        """Ring the selected rows' points (those the scatter shows)."""
        if self._plotted is None:
            self.selected_points.clear()
            return
        rows, x, y = self._plotted
        shown = np.isin(rows, self.selected_rows())
        self.selected_points.setData(x[shown], y[shown])

    def _on_points_clicked(self, _item, points, _event) -> None:
        """A click on a point selects its row (and so shows its galaxy)."""
        if len(points):
            self.select_row(int(points[0].data()))

    def _ask_export(self) -> None:
        if not self.path:
            return
        path, _ = QFileDialog.getSaveFileName(
            self, "Export catalogue", str(Path(self.path).with_suffix(".fits")), EXPORT_FILTER)
        if not path:
            return
        try:
            n = export_catalogue(self.path, path)
        except (OSError, ValueError) as exc:
            self.status.setText(f"<span style='color:#b00020'>Export failed: "
                                f"{user_message(exc)}</span>")
            return
        note = export_note(path)
        self.status.setText(f"{n} rows written to {path}{f' ({note})' if note else ''}")

    def closeEvent(self, event):  # noqa: N802 (Qt naming)
        if self.worker is not None:
            self.worker.quit()
        super().closeEvent(event)


def _plain(value):
    """A table cell as a Python value (numpy scalars and bytes made plain)."""
    if isinstance(value, bytes):
        return value.decode()
    return value.item() if hasattr(value, "item") else value
