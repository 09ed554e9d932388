"""The main window for a day of work: many open images, nothing stale on screen, one pixel
origin everywhere, absolute paths, a layout where the image keeps priority."""

import os
import threading

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QFileDialog

from galaxy_inspector.gui import app as gui_app
from galaxy_inspector.gui import settings as stored
from galaxy_inspector.gui.main_window import EMPTY_HINT, MainWindow
from galaxy_inspector.viewer.tasks import ModelCache, read_planes

pytestmark = pytest.mark.gui

NAMES = ["cube_gri.fits", "plain_njy.fits", "hsc_coadd_cutout.fits"]


def _paths(sample_paths, names=NAMES):
    return [str(sample_paths[n]) for n in names]


def _open_all(qtbot, window, paths):
    window.open_files(paths)
    qtbot.waitUntil(lambda: len(window.state.frames) == len(paths) and not window.state.busy,
                    timeout=30_000)


def _names(window):
    return [window.frame_list.item(i).text() for i in range(window.frame_list.count())]


@pytest.fixture(scope="module")
def hsc_analysis(sample_paths):
    """A real measurement of the HSC cutout's galaxy (what a worker would send back)."""
    image = read_planes(str(sample_paths["hsc_coadd_cutout.fits"]))[0]
    return ModelCache().analyse(image, 63.5, 63.5, None, n_samples=50)


def test_every_file_of_the_command_line_opens_in_order(qtbot, gui_settings, sample_paths,
                                                       monkeypatch):
    made = []

    class Recorded(MainWindow):
        def __init__(self):
            super().__init__()
            made.append(self)

    class Loop:  # app.exec(): wait until the files are read, then "the user" closes it
        def exec(self):
            window = made[0]
            qtbot.waitUntil(lambda: len(window.state.frames) == len(NAMES), timeout=30_000)
            window.close()
            return 0

    monkeypatch.setattr(gui_app, "MainWindow", Recorded)
    monkeypatch.setattr(gui_app, "application", Loop)
    assert gui_app.run_gui(_paths(sample_paths)) == 0
    window = made[0]
    assert [f.path for f in window.state.frames] == _paths(sample_paths)
    assert window.state.frame == 0 and window.state.path == _paths(sample_paths)[0]
    assert _names(window) == NAMES
    window.deleteLater()


def test_the_open_dialog_opens_every_file_chosen_relative_paths_made_absolute(
        qtbot, make_main_window, sample_paths, monkeypatch):
    window = make_main_window()
    folder = sample_paths["plain_njy.fits"].parent
    monkeypatch.chdir(folder)
    monkeypatch.setattr(QFileDialog, "getOpenFileNames",
                        lambda *args: (list(NAMES), "Images"))
    window._ask_open()
    qtbot.waitUntil(lambda: len(window.state.frames) == len(NAMES), timeout=30_000)
    assert [f.path for f in window.state.frames] == [str(folder / n) for n in NAMES]
    monkeypatch.chdir("/")  # started elsewhere, the recent files still name the files
    assert set(stored.recent_files(window.settings)) == {str(folder / n) for n in NAMES}
    assert all(os.path.exists(p) for p in stored.recent_files(window.settings))


def test_recent_files_leave_out_relative_entries_of_older_versions(gui_settings, qtbot):
    settings = stored.app_settings()
    settings.setValue("recent_files", ["resources/samples/plain_njy.fits", "/data/a.fits"])
    assert stored.recent_files(settings) == ["/data/a.fits"]
    assert stored.add_recent_file("b.fits", settings)[0] == os.path.abspath("b.fits")


def test_a_drop_of_several_files_opens_them_all(qtbot, make_main_window, sample_paths):
    window = make_main_window()
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(p) for p in _paths(sample_paths)])
    window.dropEvent(QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime,
                                Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier))
    qtbot.waitUntil(lambda: len(window.state.frames) == len(NAMES), timeout=30_000)
    assert _names(window) == NAMES


def test_next_previous_and_close_by_keyboard_each_frame_as_it_was_left(
        qtbot, make_main_window, sample_paths, hsc_analysis):
    window = make_main_window()
    assert window.image_stack.currentWidget() is window.empty_hint
    assert window.empty_hint.text() == EMPTY_HINT
    _open_all(qtbot, window, _paths(sample_paths))
    assert window.image_stack.currentWidget() is window.image_view
    window.activateWindow()
    qtbot.waitActive(window)
    window.band_box.setCurrentIndex(1)  # plane 1 of the cube
    assert window.state.band == 1
    qtbot.keyClick(window, Qt.Key.Key_PageDown)
    qtbot.keyClick(window, Qt.Key.Key_PageDown)
    assert window.state.path.endswith(NAMES[2]) and window.frame_list.currentRow() == 2
    assert "(3/3)" in window.windowTitle()
    window.state.position = (63.5, 63.5)  # as if measured there (no worker in this test)
    window.state.accept_analysis(window.state.measurement_key(), hsc_analysis)
    qtbot.keyClick(window, Qt.Key.Key_PageDown)  # wraps round to the cube, in plane 1
    assert window.state.path.endswith(NAMES[0]) and window.state.band == 1
    assert window.band_box.currentIndex() == 1 and window.posterior.analysis is None
    qtbot.keyClick(window, Qt.Key.Key_PageUp)  # the HSC cutout, with its posterior
    assert window.state.analysis is hsc_analysis and window.posterior.analysis is hsc_analysis
    assert window.image_view.crop_box.isVisible()
    qtbot.keyClick(window, Qt.Key.Key_W, Qt.KeyboardModifier.ControlModifier)
    assert [f.path for f in window.state.frames] == _paths(sample_paths)[:2]
    assert window.state.path.endswith(NAMES[1])  # the last closed: the previous is shown
    assert window.posterior.analysis is None and not window.image_view.crop_box.isVisible()
    window.frame_list.setCurrentRow(0)  # a click in the list
    assert window.state.path.endswith(NAMES[0])
    for _ in range(2):
        window.close_action.trigger()
    assert window.image_stack.currentWidget() is window.empty_hint
    assert window.windowTitle() == "Galaxy Inspector" and window.readout.text() == ""


def test_the_screen_never_shows_the_old_image_band_or_galaxy(
        qtbot, make_main_window, sample_paths, hsc_analysis, monkeypatch):
    window = make_main_window()
    _open_all(qtbot, window, _paths(sample_paths, ["hsc_coadd_cutout.fits", "cube_gri.fits"]))
    window.image_view.hovered.emit(40.2, 50.4)
    hsc_text = window.readout.text()
    assert "x=40 y=50 (0-based)" in hsc_text
    window.step_frame(1)  # the pointer has not moved: the readout is of the cube now
    assert window.readout.text() == window.state.readout(40.2, 50.4) != hsc_text

    release = threading.Event()
    calls = []

    def slow_analyse(image, x, y, *args, **kwargs):
        calls.append((image.source, image.plane, x, y))
        release.wait(30)
        return hsc_analysis  # whatever it measured, it arrives late

    monkeypatch.setattr(window.models, "analyse", slow_analyse)
    window.state.band = 2
    window.image_view.click_at(60.0, 61.0)
    qtbot.waitUntil(lambda: len(calls) == 1)
    window.state.band = 0  # switched band while it measured
    assert window.posterior.analysis is None
    assert "Calibration:" not in window.posterior.flags_text.text()
    release.set()
    qtbot.waitUntil(lambda: len(calls) == 2, timeout=10_000)  # measured again, in plane 0
    assert calls[1][1] == 0 and calls[1][2:] == (60.0, 61.0)
    qtbot.waitUntil(lambda: window._analysis_worker is None, timeout=10_000)
    assert window.state.analysis is hsc_analysis  # the answer for plane 0 only

    release.clear()
    window.image_view.click_at(30.0, 31.0)
    qtbot.waitUntil(lambda: len(calls) == 3)
    window.step_frame(1)  # to the HSC frame while the cube's galaxy is measured
    release.set()
    qtbot.waitUntil(lambda: window._analysis_worker is None, timeout=10_000)
    assert window.state.path.endswith("hsc_coadd_cutout.fits")
    assert window.state.analysis is None and window.posterior.analysis is None
    window.step_frame(1)  # back: the late answer was kept for the cube's galaxy
    assert window.state.position == (30.0, 31.0) and window.state.analysis is hsc_analysis
    assert len(calls) == 3


def test_one_pixel_origin_for_axes_readout_header_and_exported_rows(
        qtbot, make_main_window, sample_paths, hsc_analysis, tmp_path):
    from astropy.table import Table

    window = make_main_window()
    _open_all(qtbot, window, _paths(sample_paths, ["hsc_coadd_cutout.fits"]))
    window.state.position = (63.5, 63.5)
    window.state.accept_analysis(window.state.measurement_key(), hsc_analysis)
    stamp = hsc_analysis.measurement.stamp
    axis = window.image_view.plot.getAxis("bottom")
    window.image_view.hovered.emit(10.0, 20.0)
    assert "(0-based)" in window.posterior.heading.text()
    window.origin_box.setCurrentIndex(1)
    assert window.state.pixel_origin == 1
    assert axis.labelText == "x (pixel, 1-based)"
    assert window.image_view.plot.getAxis("left").labelText == "y (pixel, 1-based)"
    ticks = [v for _, values in axis.tickValues(-0.5, 127.5, 400) for v in values]
    assert 99.0 in ticks and axis.tickStrings([99.0], 1, 20) == ["100"]  # round FITS numbers
    assert "x=11 y=21 (1-based)" in window.readout.text()
    assert f"x={stamp.x + 1:.1f}, y={stamp.y + 1:.1f} (1-based)" in \
        window.posterior.heading.text()
    out = tmp_path / "row.ecsv"
    window.posterior.export_row(str(out))
    row = Table.read(out)
    assert row["x"][0] == pytest.approx(stamp.x)  # rows stay 0-based, and say so
    assert "0-based" in row.meta["PIXCONV"] and "0-based" in row["x"].description
    window.close()
    again = make_main_window()  # remembered
    assert again.state.pixel_origin == 1
    assert again.image_view.plot.getAxis("bottom").labelText == "x (pixel, 1-based)"


def test_the_image_keeps_priority_and_nothing_is_clipped(qtbot, make_main_window,
                                                         sample_paths):
    window = make_main_window()
    _open_all(qtbot, window, _paths(sample_paths, ["cube_gri.fits"]))
    assert window.band_box.currentText() == "colour composite"
    for width, height in ((900, 600), (640, 420)):
        window.resize(width, height)
        qtbot.waitUntil(lambda w=width: window.width() == w)
        qtbot.wait(50)
        view = window.image_view
        assert view.width() >= (0.5 if width >= 900 else 0.55) * width
        assert view.height() >= 0.6 * height, (width, view.height())
    metrics = window.band_box.fontMetrics()
    assert window.band_box.width() > metrics.horizontalAdvance("colour composite")
    window.splitter.setSizes([300, 330])
    window.side.setSizes([150, 200])
    sizes = window.splitter.sizes(), window.side.sizes()
    window.close()
    again = make_main_window()
    assert (again.splitter.sizes(), again.side.sizes()) == sizes
    assert again.size().width() == 640 and again.size().height() == 420
