"""What a day with the app under a real X server tripped on (issue 14's screenshots session):
a panel that stopped scrolling under the pointer, empty plots above a hidden reason, a crop box
for a refused measurement, a readout of a pixel the pointer had left, a status bar naming the
first plane of a colour view, and a batch output written to wherever the app was started."""

import os

import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication

from galaxy_inspector.engine import DEFAULT_MODEL
from galaxy_inspector.gui.batch_dialog import BatchDialog
from galaxy_inspector.gui.posterior_panel import HINTS, PosteriorPanel
from galaxy_inspector.models.bundle import resolve_bundle_path
from galaxy_inspector.viewer.tasks import ModelCache, read_planes

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def analyses(sample_paths):
    """A measurement of the HSC cutout's galaxy, and the refusal a JPEG gets from the flux
    model (chosen: by default a JPEG gets the display model)."""
    cache = ModelCache()
    hsc = read_planes(str(sample_paths["hsc_coadd_cutout.fits"]))[0]
    jpeg = read_planes(str(sample_paths["sdss_gri.jpg"]))[0]
    return (cache.analyse(hsc, 63.5, 63.5, None, n_samples=50),
            cache.analyse(jpeg, 63.5, 63.5, FLUX_MODEL, n_samples=50))


#: The shipped flux model by its folder: chosen by name, the default gives way to the display
#: model for JPEGs (``viewer.tasks.morphology_model_for``).
FLUX_MODEL = str(resolve_bundle_path(DEFAULT_MODEL))


def _panel(qtbot, in_catalogue=False):
    panel = PosteriorPanel(in_catalogue=in_catalogue)
    qtbot.addWidget(panel)
    panel.resize(420, 380)  # short: the panel scrolls
    panel.show()
    qtbot.waitExposed(panel)
    return panel


def _wheel_down(widget) -> QWheelEvent:
    centre = QPointF(widget.width() / 2, widget.height() / 2)
    return QWheelEvent(centre, widget.mapToGlobal(centre), QPoint(0, 0), QPoint(0, -120),
                       Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                       Qt.ScrollPhase.NoScrollPhase, False)


def test_the_wheel_over_the_plots_scrolls_the_panel(qtbot, gui_settings, analyses):
    """Qt hands a wheel event the widget under the pointer ignores to its parents, here the
    scroll area; Matplotlib's canvas accepted every one, so the panel stopped scrolling under
    the pointer. (Qt propagates only spontaneous events, from the window system, so the test
    checks the canvas's answer and what the scroll area does with the event.)"""
    panel = _panel(qtbot)
    panel.show_analysis(analyses[0])
    qtbot.wait(50)
    event = _wheel_down(panel.canvas)
    panel.canvas.wheelEvent(event)
    assert not event.isAccepted()
    bar = panel.scroll.verticalScrollBar()
    assert bar.maximum() > 0 and bar.value() == 0
    QApplication.sendEvent(panel.scroll.viewport(), _wheel_down(panel.scroll.viewport()))
    assert bar.value() > 0


def test_a_refused_measurement_shows_its_reason_in_view_not_empty_plots(
        qtbot, gui_settings, analyses):
    measured, refused = analyses
    panel = _panel(qtbot)
    panel.show_analysis(measured)
    qtbot.wait(50)
    bar = panel.scroll.verticalScrollBar()
    bar.setValue(bar.maximum())  # the user was reading the table
    panel.show_analysis(refused)
    assert "Not measured:" in panel.heading.text() and bar.value() == 0
    assert not panel.canvas.isVisible() and not panel.table.isVisible()
    assert not panel.crop_panel.isVisible()
    panel.show_analysis(None)
    assert panel.heading.text() == HINTS[False] and not panel.canvas.isVisible()
    panel.show_analysis(measured)
    assert panel.canvas.isVisible() and panel.table.isVisible() and panel.crop_panel.isVisible()
    # Every row of the summary table is in view, however its intervals wrap.
    table = panel.table
    rows = sum(table.rowHeight(r) for r in range(table.rowCount()))
    assert table.height() >= rows + table.horizontalHeader().height()


def test_the_browser_panel_asks_for_a_row_not_a_click(qtbot, gui_settings):
    assert _panel(qtbot, in_catalogue=True).heading.text() == HINTS[True]


def test_a_refused_measurement_draws_no_crop_box(qtbot, make_main_window, sample_paths,
                                                 wait_for_analysis):
    window = make_main_window()
    window.state.model = FLUX_MODEL  # which refuses a JPEG
    window.open_files([str(sample_paths["sdss_gri.jpg"])])
    qtbot.waitUntil(lambda: window.state.image is not None, timeout=30_000)
    window.image_view.click_at(63.5, 63.5)
    assert wait_for_analysis(window).measurement.error
    view = window.image_view
    assert not view.crop_box.isVisible()  # the network read nothing
    assert view.stamp_box.isVisible()


def test_the_readout_is_cleared_when_the_pointer_leaves_the_image(
        qtbot, make_main_window, sample_paths):
    window = make_main_window()
    window.open_files([str(sample_paths["hsc_coadd_cutout.fits"]),
                       str(sample_paths["cube_gri.fits"])])
    qtbot.waitUntil(lambda: len(window.state.frames) == 2 and not window.state.busy,
                    timeout=30_000)
    window.image_view.hovered.emit(40.2, 50.4)
    assert "x=40 y=50" in window.readout.text()
    QApplication.sendEvent(window.image_view, QEvent(QEvent.Type.Leave))
    assert window.readout.text() == ""
    window.step_frame(1)  # the pointer is elsewhere: no readout of a pixel nobody points at
    assert window.readout.text() == ""


def test_the_status_bar_says_what_a_colour_view_shows_and_what_a_click_measures(
        qtbot, make_main_window, sample_paths):
    window = make_main_window()
    window.open_files([str(sample_paths["cube_gri.fits"]), str(sample_paths["sdss_gri.jpg"])])
    qtbot.waitUntil(lambda: len(window.state.frames) == 2 and not window.state.busy,
                    timeout=30_000)
    window.select_frame(0)
    message = window.statusBar().currentMessage()
    assert "colour composite of 3 planes; a click measures plane 0: " in message
    window.select_frame(1)
    message = window.statusBar().currentMessage()
    assert "in colour" in message and "the channels' mean" in message
    assert "channel R" not in message and "flux outputs" not in message
    window.band_box.setCurrentIndex(1)  # the G channel alone
    assert "channel G" in window.statusBar().currentMessage()


def test_a_relative_batch_output_is_made_absolute_and_shown(qtbot, gui_settings, tmp_path,
                                                            monkeypatch):
    """The GUI's working folder is wherever it was started: the dialog says where it writes."""
    monkeypatch.chdir(tmp_path)
    dialog = BatchDialog("")
    qtbot.addWidget(dialog)
    dialog.add_inputs([str(tmp_path / "missing.fits")])
    dialog.output_edit.setText("cat.h5")
    dialog.start()
    assert dialog.output_edit.text() == os.path.join(str(tmp_path), "cat.h5")
    qtbot.waitUntil(lambda: dialog.worker is None, timeout=60_000)
    assert dialog.errors.wordWrap() and dialog.progress_label.wordWrap()


def test_the_browser_shows_the_galaxy_of_a_row_not_its_whole_field(qtbot, gui_settings,
                                                                     tmp_path, analyses):
    """A row of a catalogue of a large field was shown as a speck in the whole field."""
    import numpy as np
    from astropy.io import fits

    from galaxy_inspector.gui.catalogue_browser import CatalogueBrowser

    field = tmp_path / "field.fits"
    fits.PrimaryHDU(np.random.default_rng(0).normal(size=(1400, 1400)).astype(np.float32)) \
        .writeto(field)
    measured = analyses[0]  # its stamp: the 128 pixels at the field's corner
    browser = CatalogueBrowser(ModelCache())
    qtbot.addWidget(browser)
    browser.show()
    qtbot.waitExposed(browser)
    row = {"id": "gal", "source": str(field), "x": 63.5, "y": 63.5}
    browser._show_galaxy(row, (read_planes(str(field)), measured))
    (x0, x1), (y0, y1) = browser.image_view.view_box.viewRange()
    sx0, sy0, sx1, sy1 = measured.stamp_box
    assert x0 <= sx0 and x1 >= sx1 and y0 <= sy0 and y1 >= sy1
    # The stamp fills the view along one axis (the other follows the view's aspect ratio).
    assert min(x1 - x0, y1 - y0) < 1.2 * (sx1 - sx0)
