"""The catalogue browser reads like TOPCAT: plain axis values (no pyqtgraph SI prefixes), column
names with their units, numbers written for people, many rows in view, and a plot that says
when it has nothing to draw."""

from __future__ import annotations

import numpy as np
import pytest

from galaxy_inspector.catalogue import CatalogueWriter
from galaxy_inspector.catalogue.rows import empty_rows, set_text

pytestmark = pytest.mark.gui

PARAMS = ["bt", "re_arcsec", "flux_njy"]
ROWS = 40


@pytest.fixture
def catalogue(tmp_path):
    """40 galaxies with B/T well under 1 (what made pyqtgraph write 'bt_mode (x0.001)'),
    fluxes of 10^3-10^6 nJy and one row without a measurement."""
    rng = np.random.default_rng(0)
    path = tmp_path / "cat.h5"
    writer = CatalogueWriter.create(path, PARAMS, None, {"model_name": "morphology-hsc-g",
                                                        "parameters": PARAMS})
    rows = empty_rows(writer.dtype, ROWS)
    for i in range(ROWS):
        set_text(rows, i, "id", f"gal{i:02d}")
        set_text(rows, i, "source", f"/data/field_{i:02d}.fits")
        set_text(rows, i, "status", "ok")
        set_text(rows, i, "input_key", f"key-{i}")
    rows["x"], rows["y"] = rng.uniform(0, 4000, ROWS), rng.uniform(0, 4000, ROWS)
    rows["ra"], rows["dec"] = 150.1 + rng.normal(0, 0.01, ROWS), 2.2 + rng.normal(0, 0.01, ROWS)
    rows["bt_mode"] = rng.uniform(0.24, 0.42, ROWS)
    rows["re_arcsec_mode"] = rng.lognormal(0, 0.4, ROWS)
    rows["flux_njy_mode"] = 10 ** rng.uniform(3, 6, ROWS)
    rows["flux_njy_mode"][0] = np.nan
    writer.append(rows)
    writer.finish({})
    return path


@pytest.fixture
def browser(qtbot, gui_settings, catalogue):
    from galaxy_inspector.gui.catalogue_browser import CatalogueBrowser
    from galaxy_inspector.viewer.tasks import ModelCache

    window = CatalogueBrowser(ModelCache())
    qtbot.addWidget(window)
    assert window.load(str(catalogue))
    window.show()
    qtbot.waitExposed(window)
    window.tabs.setCurrentIndex(1)  # the plots
    return window


def _axes(browser):
    return [browser.plot.getAxis(name) for name in ("left", "bottom", "right", "top")]


def test_plot_axes_show_plain_values_with_units(browser, qtbot):
    browser.plot_x.setCurrentText("bt_mode")
    browser.plot_y.setCurrentText("re_arcsec_mode")
    qtbot.wait(50)  # the view settles its range, which is when pyqtgraph picks a prefix
    for axis in _axes(browser):
        assert not axis.autoSIPrefix and axis.autoSIPrefixScale == 1.0
    assert browser.plot.getAxis("bottom").labelText == "bt_mode"
    assert browser.plot.getAxis("left").labelText == "re_arcsec_mode [arcsec]"
    ticks = browser.plot.getAxis("bottom").tickValues(0.24, 0.42, 600)
    assert all(0.2 <= v <= 0.45 for _, values in ticks for v in values)
    browser.plot_x.setCurrentText("flux_njy_mode")
    browser.plot_y.setCurrentIndex(0)  # histogram
    assert browser.plot.getAxis("bottom").labelText == "flux_njy_mode [nJy]"
    assert browser.plot.getAxis("left").labelText == "number of galaxies"


def test_log_axes_leave_out_what_they_cannot_show_and_say_when_nothing_is_left(browser):
    browser.plot_x.setCurrentText("flux_njy_mode")
    browser.plot_y.setCurrentText("re_arcsec_mode")
    browser.log_x.setChecked(True)
    (points,) = [item for item in browser.plot.listDataItems()
                 if item is not browser.selected_points]
    assert len(points.getData()[0]) == ROWS - 1  # the NaN flux is left out
    assert browser.plot.getPlotItem().ctrl.logXCheck.isChecked()
    browser.filter_edit.setText("no such galaxy")
    assert not browser.plot.listDataItems()  # not even the ring of the selected rows
    assert "none passes the filter" in browser.plot.getPlotItem().titleLabel.text


def test_the_table_shows_many_rows_with_numbers_written_for_people(browser):
    from PySide6.QtCore import Qt

    browser.tabs.setCurrentIndex(0)
    view = browser.view
    assert view.viewport().height() // view.rowHeight(0) >= 15
    model = browser.proxy.sourceModel()
    header = [model.headerData(c, Qt.Orientation.Horizontal) for c in range(len(model.columns))]
    assert {"ra [deg]", "x [pix]", "re_arcsec_mode [arcsec]", "flux_njy_mode [nJy]"} <= set(header)
    column = model.columns.index

    def cell(row, name):
        return model.index(row, column(name)).data()

    assert cell(1, "ra").count(".") == 1 and len(cell(1, "ra").split(".")[1]) == 6
    assert len(cell(1, "x").split(".")[1]) == 2
    assert cell(0, "flux_njy_mode") == "—"
    fluxes = [cell(r, "flux_njy_mode") for r in range(1, ROWS)]
    assert not any("e" in f for f in fluxes)
    tip = model.headerData(column("bt_mode"), Qt.Orientation.Horizontal,
                           Qt.ItemDataRole.ToolTipRole)
    assert "posterior mode" in tip


def test_selected_rows_are_ringed_in_the_scatter_plot_and_a_click_on_a_point_selects_its_row(
        browser, qtbot):
    """Table and plot are linked views: the selected galaxies stand out among the points (in
    the plot's own coordinates, log axes too), and clicking a point selects its row."""
    browser.plot_x.setCurrentText("bt_mode")
    browser.plot_y.setCurrentText("re_arcsec_mode")
    browser.select_row(7)
    x, y = browser.selected_points.getData()
    assert list(x) == [browser.table["bt_mode"][7]]
    assert list(y) == [browser.table["re_arcsec_mode"][7]]
    browser.log_y.setChecked(True)  # redrawn: the ring stays on its point on the log axis
    scatter = next(item for item in browser.plot.listDataItems()
                   if item is not browser.selected_points)
    point = next(p for p in scatter.scatter.points() if p.data() == 7)
    ring = browser.selected_points.scatter.points()[0]
    assert (ring.pos().x(), ring.pos().y()) == (point.pos().x(), point.pos().y())
    assert np.isclose(ring.pos().y(), np.log10(browser.table["re_arcsec_mode"][7]))

    point = next(p for p in scatter.scatter.points() if p.data() == 12)
    scatter.scatter.sigClicked.emit(scatter.scatter, [point], None)
    assert browser.selected_rows() == [12]
    x, _ = browser.selected_points.getData()
    assert list(x) == [browser.table["bt_mode"][12]]


def test_a_histogram_of_few_galaxies_counts_in_whole_galaxies(browser, qtbot):
    """pyqtgraph labels a histogram of a handful of galaxies 0.1, 0.2 … 0.9; counts are
    whole numbers."""
    browser.plot_x.setCurrentText("bt_mode")
    browser.plot_y.setCurrentIndex(0)  # histogram
    browser.filter_edit.setText("gal0[1-5]")  # five galaxies
    qtbot.wait(50)
    left = browser.plot.getAxis("left")
    ticks = left.tickValues(0, 3, 400)
    values = [v for _, level in ticks for v in level]
    assert values and all(float(v).is_integer() for v in values)
    browser.plot_y.setCurrentText("re_arcsec_mode")  # a scatter: pyqtgraph's own ticks again
    values = [v for _, level in left.tickValues(0.5, 3, 400) for v in level]
    assert any(not float(v).is_integer() for v in values)
