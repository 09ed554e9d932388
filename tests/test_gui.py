"""The main window, used like a user would: open a sample, click the galaxy, read the posterior."""

import math

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from galaxy_inspector.engine import DISPLAY_REFUSAL
from galaxy_inspector.gui import settings as stored
from galaxy_inspector.gui.app import take_screenshot
from galaxy_inspector.gui.model_dialog import ModelDialog
from galaxy_inspector.posterior import LEVEL_SUFFIXES

pytestmark = pytest.mark.gui


def _open(qtbot, window, path):
    window.open_file(path)
    qtbot.waitUntil(lambda: window.state.path == path or bool(window.state.message), timeout=30_000)
    assert window.state.path == path, window.state.message


def test_click_galaxy_shows_posterior_with_finite_intervals(
        qtbot, make_main_window, tmp_path, sample_paths, wait_for_analysis):
    window = make_main_window()
    path = str(sample_paths["hsc_coadd_cutout.fits"])
    _open(qtbot, window, path)
    ny, nx = window.state.image.shape
    window.image_view.click_at((nx - 1) / 2, (ny - 1) / 2)
    analysis = wait_for_analysis(window)
    m = analysis.measurement
    for name in m.names:
        for suffix in LEVEL_SUFFIXES:
            lo, hi = m.summary[f"{name}_lo{suffix}"], m.summary[f"{name}_hi{suffix}"]
            assert math.isfinite(lo) and math.isfinite(hi) and lo <= hi
    panel = window.posterior
    assert panel.table.rowCount() == len(m.names)
    assert panel.table.item(1, 0).text() == "R_e [arcsec]"
    assert "[" in panel.table.item(0, 3).text()
    assert "Label:" in panel.heading.text() and "Calibration:" in panel.flags_text.text()
    assert window.image_view.crop_box.isVisible()
    assert "STN scale" in panel.crop_caption.text()
    for suffix in (".png", ".pdf", ".svg"):
        panel.export_figure(str(tmp_path / f"posterior{suffix}"))
        assert (tmp_path / f"posterior{suffix}").stat().st_size > 1000
    panel.export_row(str(tmp_path / "row.csv"))
    from astropy.table import Table

    row = Table.read(tmp_path / "row.csv")
    assert len(row) == 1 and np.isfinite(row["bt_lo68"][0])


def test_status_bar_readout_and_recent_files(qtbot, make_main_window, sample_paths):
    window = make_main_window()
    path = str(sample_paths["plain_njy.fits"])
    _open(qtbot, window, path)
    window.image_view.hovered.emit(10.2, 20.4)
    assert "x=10 y=20 (0-based)" in window.readout.text()
    assert "RA=" in window.readout.text() and "nJy" in window.readout.text()
    assert stored.recent_files(window.settings)[0] == path
    assert window.recent_menu.actions()[0].text() == path


def test_cube_opens_as_colour_composite_and_jpeg_as_display_image(
        qtbot, make_main_window, sample_paths):
    window = make_main_window()
    _open(qtbot, window, str(sample_paths["cube_gri.fits"]))
    assert len(window.state.images) == 3 and window.state.band == -1
    assert window.image_view.image_item.image.ndim == 3
    assert window.band_box.currentText() == "colour composite"
    window.band_box.setCurrentIndex(1)
    assert window.state.band == 1 and window.image_view.image_item.image.ndim == 2
    _open(qtbot, window, str(sample_paths["sdss_gri.jpg"]))
    # Its R, G, B channels, shown together as they are (tests/test_gui_display.py).
    assert len(window.state.images) == 3 and window.state.image.is_display_image


def test_clicking_a_jpeg_shows_why_there_is_no_morphology_instead_of_a_posterior(
        qtbot, make_main_window, sample_paths, wait_for_analysis, tiny_bundle):
    window = make_main_window()
    # A flux model chosen: with the default, a JPEG gets the display model instead
    # (tests/test_display_model.py).
    window.state.model = str(tiny_bundle)
    _open(qtbot, window, str(sample_paths["sdss_gri.jpg"]))
    window.image_view.click_at(63.5, 63.5)
    m = wait_for_analysis(window).measurement
    panel = window.posterior
    assert m.error == DISPLAY_REFUSAL and m.label == ""
    assert f"Not measured: {DISPLAY_REFUSAL}" in panel.heading.text()
    assert "Label:" not in panel.heading.text() and "STN scale" not in panel.crop_caption.text()
    assert panel.table.rowCount() == 0 and not panel.figure.axes
    assert "NONLINEAR_IMAGE" in panel.flags_text.text()


def test_unreadable_file_gives_a_readable_message(qtbot, make_main_window, tmp_path):
    bad = tmp_path / "broken.fits"
    bad.write_bytes(b"this is not FITS at all" * 10)
    window = make_main_window()
    window.open_file(str(bad))
    qtbot.waitUntil(lambda: bool(window.state.message), timeout=10_000)
    assert "broken.fits" in window.state.message
    assert "Traceback" not in window.state.message
    assert window.statusBar().currentMessage() == window.state.message


def test_drop_a_file_opens_it(qtbot, make_main_window, sample_paths):
    window = make_main_window()
    path = str(sample_paths["plain_njy.fits"])
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(path)])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime,
                       Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    qtbot.waitUntil(lambda: window.state.path == path, timeout=30_000)


def test_settings_persist_between_windows(qtbot, make_main_window):
    first = make_main_window()
    first.state.stretch = "sqrt"
    first.state.interval = "zscale"
    first.state.pixel_origin = 1
    first.close()
    second = make_main_window()
    assert (second.state.stretch, second.state.interval, second.state.pixel_origin) == \
        ("sqrt", "zscale", 1)
    assert second.stretch_box.currentText() == "sqrt"


def test_model_dialog_shows_card_of_shipped_bundle(qtbot, gui_settings):
    dialog = ModelDialog("morphology-hsc-g")
    qtbot.addWidget(dialog)
    assert dialog.bundles.count() >= 1
    assert "What it reads" in dialog.card_view.toPlainText()
    assert dialog.ok_button.isEnabled()
    dialog.add_bundle("/nonexistent/bundle")
    assert "no model bundle" in dialog.error.text() and not dialog.ok_button.isEnabled()


def test_screenshot_entry_point(qtbot, gui_settings, tmp_path, sample_paths):
    out = tmp_path / "shot.png"
    assert take_screenshot(str(out), [str(sample_paths["hsc_coadd_cutout.fits"])]) == 0
    assert out.stat().st_size > 10_000


def test_a_model_choice_measures_the_shown_galaxy_once(qtbot, make_main_window, sample_paths,
                                                       monkeypatch):
    from types import SimpleNamespace

    from galaxy_inspector.gui import main_window

    window = make_main_window()
    _open(qtbot, window, str(sample_paths["plain_njy.fits"]))
    window.state.position = (10.0, 12.0)
    started = []  # workers are recorded, not run: the first stays "running"
    monkeypatch.setattr(main_window, "start_worker",
                        lambda worker: started.append(worker) or worker)
    choice = SimpleNamespace(chosen="/some/morphology", chosen_properties=["/some/properties"])
    window._apply_model_choice(choice)
    assert len(started) == 1 and not window._pending_measurement
    assert window.state.model == "/some/morphology"
    assert window.state.property_models == ("/some/properties",)


def test_a_binned_galaxy_shows_its_real_extent_and_says_it_was_binned(
        qtbot, make_main_window, tmp_path, wait_for_analysis):
    import galsim
    from astropy.io import fits

    profile = (galsim.DeVaucouleurs(half_light_radius=9.0, flux=4e6)
               + galsim.Exponential(half_light_radius=9.0, flux=4e6))
    data = galsim.Convolve(profile, galsim.Moffat(beta=3.5, fwhm=0.7)).drawImage(
        nx=800, ny=800, scale=0.168).array
    data += np.random.default_rng(0).normal(0.0, 2.68, data.shape)
    path = tmp_path / "big.fits"
    fits.writeto(path, data.astype(np.float32), fits.Header({"BUNIT": "nJy",
                                                             "PIXSCALE": 0.168}))
    window = make_main_window()
    _open(qtbot, window, str(path))
    window.image_view.click_at(399.5, 399.5)
    m = wait_for_analysis(window).measurement
    assert m.stamp.binning > 1
    x0, _, x1, _ = m.crop_box  # the sky the model read, in image pixels: binning x wider
    assert x1 - x0 == pytest.approx(m.stn_scale * 128 * m.stamp.binning, rel=1e-6)
    caption = window.posterior.crop_caption.text()
    assert "binned" in caption and "R_e is scaled back" in caption
    assert "RESCALED" in window.posterior.flags_text.text()
