"""Physical-property predictions in the GUI, used like a user would: switch a property model on
in the model chooser, open a 3-band cube, click the galaxy, read the "Physical properties"
section; give a redshift when a model asks for one; switch the model off again.

The property bundles are tiny ones trained in the session (the ``property_bundles`` fixture).
"""

import math

import numpy as np
import pytest

from galaxy_inspector.gui.model_dialog import ModelDialog
from galaxy_inspector.gui.property_section import SECTION_TITLE
from galaxy_inspector.viewer.model_cards import DEMO_LABEL

pytestmark = pytest.mark.gui


@pytest.fixture
def measure_centre(qtbot, wait_for_analysis):
    def measure(window, path):
        """Open the file ``path`` in ``window``, click the image centre, return the analysis."""
        path = str(path)
        window.open_file(path)
        qtbot.waitUntil(lambda: window.state.path == path or bool(window.state.message),
                        timeout=30_000)
        assert window.state.path == path, window.state.message
        ny, nx = window.state.image.shape
        window.image_view.click_at((nx - 1) / 2, (ny - 1) / 2)
        return wait_for_analysis(window)

    return measure


def _wait_for_new_analysis(qtbot, window, old):
    qtbot.waitUntil(lambda: (window.state.analysis is not None
                             and window.state.analysis is not old
                             and window._analysis_worker is None) or bool(window.state.message),
                    timeout=120_000)
    assert window.state.analysis is not None, window.state.message
    return window.state.analysis


def _choose_in_dialog(qtbot, window, add=(), untick=()):
    """Open Model > Choose models…, add bundle folders / untick bundles, press OK."""
    dialog = window.open_model_dialog()
    for folder in add:
        dialog.add_bundle(folder)
    for folder in untick:
        dialog.set_property_checked(folder, False)
    dialog.ok_button.click()
    return dialog


def _cells(table, row):
    return [table.item(row, c).text() for c in range(table.columnCount())]


def _bounds(text):
    lo, hi = (float(v) for v in text.strip("[]").split(","))
    return lo, hi


@pytest.mark.slow
def test_cube_click_shows_property_intervals_with_demo_warning(
        qtbot, make_main_window, property_bundles, tmp_path, measure_centre, sample_paths):
    window = make_main_window()
    folder = property_bundles["cnn"]
    dialog = _choose_in_dialog(qtbot, window, add=[folder])
    assert DEMO_LABEL in dialog.property_list.currentItem().text()
    assert "demo" in dialog.card_view.toPlainText()
    assert window.state.property_models == (folder,)
    assert "tiny-mstar-demo" in window.model_label.text()
    analysis = measure_centre(window, sample_paths["cube_gri.fits"])
    (prediction,) = analysis.properties.values()
    assert prediction.error == "", prediction.error
    section = window.posterior.properties
    assert section.isVisible() and section.title() == SECTION_TITLE
    block = section.blocks["tiny-mstar-demo"]
    assert "tiny-mstar-demo" in block.heading.text() and DEMO_LABEL in block.heading.text()
    name, mode, median, hpd68, hpd95 = _cells(block.table, 0)
    assert name.startswith("log M* (log_mstar)")
    assert math.isfinite(float(mode)) and math.isfinite(float(median))
    lo68, hi68 = _bounds(hpd68)
    lo95, hi95 = _bounds(hpd95)
    assert lo95 <= lo68 <= float(median) <= hi68 <= hi95
    assert block.canvas is not None and block.canvas.isVisible()
    assert not block.reason.isVisible()
    # The morphology is still there, above the property section.
    assert window.posterior.table.rowCount() == 3
    window.posterior.export_row(str(tmp_path / "row.csv"))
    from astropy.table import Table

    row = Table.read(tmp_path / "row.csv")
    assert np.isfinite(row["log_mstar_lo68"][0]) and np.isfinite(row["bt_median"][0])
    assert row["demo_models"][0] == "tiny-mstar-demo"


@pytest.mark.slow
def test_model_needing_a_redshift_says_so_until_one_is_typed(
        qtbot, make_main_window, property_bundles, measure_centre, sample_paths):
    window = make_main_window()
    _choose_in_dialog(qtbot, window, add=[property_bundles["needs_z"]])
    measure_centre(window, sample_paths["cube_gri.fits"])
    block = window.posterior.properties.blocks["tiny-ml-z"]
    assert block.table is None and block.reason.isVisible()
    assert "needs a redshift" in block.reason.text()
    assert "Redshift" in block.reason.text()  # tells the user where to give one
    assert "Traceback" not in block.reason.text() and not window.state.message
    old = window.state.analysis
    qtbot.keyClicks(window.redshift_edit, "0.08")
    window.redshift_edit.editingFinished.emit()
    assert window.state.redshift == 0.08
    analysis = _wait_for_new_analysis(qtbot, window, old)
    assert analysis.redshift == 0.08
    block = window.posterior.properties.blocks["tiny-ml-z"]
    assert block.table is not None
    lo, hi = _bounds(_cells(block.table, 0)[3])
    assert math.isfinite(lo) and lo <= hi
    assert "z = 0.08" in window.posterior.properties.note.text()


@pytest.mark.slow
def test_image_that_cannot_feed_a_model_shows_the_reason(
        qtbot, make_main_window, property_bundles, measure_centre, sample_paths):
    window = make_main_window()
    window.state.property_models = (property_bundles["cnn"],)
    # A colour JPEG: no calibrated g, r, i fluxes.
    analysis = measure_centre(window, sample_paths["sdss_gri.jpg"])
    (prediction,) = analysis.properties.values()
    assert prediction.error
    block = window.posterior.properties.blocks["tiny-mstar-demo"]
    assert block.reason.isVisible() and prediction.error.split(":")[0] in block.reason.text()
    # The morphology of a display image is the display model's: B/T and R_e.
    assert not analysis.measurement.error
    assert analysis.measurement.names == ["bt", "re_arcsec"]
    assert "morphology-display-sdss" in window.posterior.heading.text()


@pytest.mark.slow
def test_switching_a_property_model_off_removes_the_section_and_is_remembered(
        qtbot, make_main_window, property_bundles, measure_centre, sample_paths):
    window = make_main_window()
    folder = property_bundles["cnn"]
    _choose_in_dialog(qtbot, window, add=[folder])
    measure_centre(window, sample_paths["cube_gri.fits"])
    assert window.posterior.properties.isVisible()
    # The Model > Physical properties menu lists the active bundle, ticked.
    window.property_menu.aboutToShow.emit()
    (action,) = [a for a in window.property_menu.actions() if "tiny-mstar-demo" in a.text()]
    assert action.isChecked() and DEMO_LABEL in action.text()
    old = window.state.analysis
    action.trigger()  # untick
    assert window.state.property_models == ()
    analysis = _wait_for_new_analysis(qtbot, window, old)
    assert analysis.properties == {}
    assert not window.posterior.properties.isVisible()
    assert window.posterior.table.rowCount() == 3
    # Switched on again in the dialog, then the choice survives a restart.
    _choose_in_dialog(qtbot, window, add=[folder])
    window.close()
    again = make_main_window()
    assert again.state.property_models == (folder,)
    dialog = ModelDialog(again.state.model, properties=again.state.property_models)
    qtbot.addWidget(dialog)
    assert dialog.checked_properties() == [folder]
    dialog.set_property_checked(folder, False)
    dialog.accept()
    assert dialog.chosen_properties == []


@pytest.mark.slow
def test_batch_dialog_runs_active_property_models_and_browser_shows_them(
        qtbot, make_main_window, property_bundles, tmp_path, sample_paths):
    cube = sample_paths["cube_gri.fits"]
    table = tmp_path / "targets.csv"
    table.write_text(f"path,id,x,y,zspec\n{cube},with-z,63.5,63.5,0.05\n{cube},no-z,60,60,\n")
    out = tmp_path / "cat.h5"
    window = make_main_window()
    window.state.property_models = (property_bundles["cnn"], property_bundles["needs_z"])
    dialog = window.open_batch_dialog()
    assert dialog.use_properties.isChecked() and DEMO_LABEL in dialog.use_properties.text()
    dialog.add_inputs([str(table)])
    dialog.output_edit.setText(str(out))
    dialog.samples.setValue(50)
    dialog.redshift_column.setText("zspec")
    with qtbot.waitSignal(dialog.run_finished, timeout=180_000):
        dialog.buttons.start.click()
    assert dialog.result.done == 2 and dialog.result.failed == 0, dialog.errors
    browser = window.open_catalogue(str(out))
    plottable = [browser.plot_x.itemText(i) for i in range(browser.plot_x.count())]
    assert {"log_mstar_median", "ml_g_lo68", "redshift"} <= set(plottable)
    browser.plot_x.setCurrentText("log_mstar_median")
    browser.plot_y.setCurrentText("ml_g_median")  # a scatter of two property columns
    assert browser.plot.getPlotItem().listDataItems()
    browser.select_row(0)
    qtbot.waitUntil(lambda: browser.state.analysis is not None, timeout=60_000)
    section = browser.posterior.properties
    assert "z = 0.05 (from the catalogue row)" in section.note.text()
    for name in ("tiny-mstar-demo", "tiny-ml-z"):
        block = section.blocks[name]
        assert block.table is not None and block.canvas is not None  # stored samples drawn
        lo, hi = _bounds(_cells(block.table, 0)[3])
        assert math.isfinite(lo) and lo <= hi
    assert DEMO_LABEL in section.blocks["tiny-mstar-demo"].heading.text()
    first = browser.state.analysis
    browser.select_row(1)
    qtbot.waitUntil(lambda: browser.state.analysis is not None
                    and browser.state.analysis is not first, timeout=60_000)
    block = browser.posterior.properties.blocks["tiny-ml-z"]
    assert block.table is None and "needs a redshift" in block.reason.text()
    assert "--redshift-column" in block.reason.text()


@pytest.mark.slow
def test_panel_screenshot_with_property_models_leaves_settings_alone(
        qtbot, gui_settings, property_bundles, tmp_path, sample_paths):
    from galaxy_inspector.gui import settings as stored
    from galaxy_inspector.gui.app import take_panel_screenshot

    out = tmp_path / "panel.png"
    assert take_panel_screenshot(str(out), str(sample_paths["cube_gri.fits"]),
                                 [property_bundles["cnn"]]) == 0
    assert out.stat().st_size > 10_000
    assert stored.string_list("property_models") == []
