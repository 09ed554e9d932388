"""Application entry points used by ``galaxy-inspector`` (``cli.py`` imports this lazily).

``run_gui(files)`` opens the window; ``take_screenshot(out_png, files)`` opens the files,
measures the galaxy at the centre of the first one, saves the main window as a PNG and exits.
``main`` and ``screenshot`` are the names ``cli.py`` calls.
"""

from __future__ import annotations

import sys
import time

from PySide6.QtWidgets import QApplication

from galaxy_inspector import __version__
from galaxy_inspector.gui.main_window import MainWindow
from galaxy_inspector.gui.workers import wait_for_workers

__all__ = ["run_gui", "take_screenshot", "main", "screenshot", "application",
           "SCREENSHOT_SIZE"]

SCREENSHOT_SIZE = (1400, 850)
SCREENSHOT_TIMEOUT = 180.0  # seconds for reading and measuring


def application() -> QApplication:
    """The QApplication, created once with the app's names (QSettings uses them)."""
    app = QApplication.instance()
    if app is None:
        app = QApplication(sys.argv[:1])
        app.setOrganizationName("GalaxyInspector")
        app.setApplicationName("Galaxy Inspector")
        app.setApplicationVersion(__version__)
    return app


def run_gui(files: list[str]) -> int:
    """Open the main window (with the first of ``files``) and run until it is closed."""
    app = application()
    window = MainWindow()
    window.show()
    if files:
        window.open_file(files[0])
    status = app.exec()
    wait_for_workers()
    return int(status)


def _wait_until(app, predicate, timeout: float) -> bool:
    """Process events until ``predicate()`` holds or ``timeout`` seconds pass."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            return False
        app.processEvents()
        time.sleep(0.01)
    return True


def take_screenshot(out_png: str, files: list[str]) -> int:
    """Open ``files``, measure the centre galaxy of the first, save the window to ``out_png``."""
    app = application()
    window = MainWindow()
    window.resize(*SCREENSHOT_SIZE)
    window.show()
    errors = []
    window.analysis_failed.connect(errors.append)
    status = 0
    if files:
        window.open_file(files[0])
        loaded = _wait_until(app, lambda: bool(window.state.images) or window.state.message,
                             SCREENSHOT_TIMEOUT)
        if window.state.images:
            ny, nx = window.state.image.shape
            window.image_view.click_at((nx - 1) / 2, (ny - 1) / 2)
            _wait_until(app, lambda: window.state.analysis is not None or errors,
                        SCREENSHOT_TIMEOUT)
        if not loaded or not window.state.images or window.state.analysis is None:
            print(f"galaxy-inspector: warning: {window.state.message or 'timed out'}",
                  file=sys.stderr)
            status = 1
    _wait_until(app, lambda: False, 0.3)  # let the canvas and view finish drawing
    if not window.grab().save(str(out_png)):
        print(f"galaxy-inspector: error: cannot write {out_png}", file=sys.stderr)
        status = 1
    window.close()
    wait_for_workers()
    return status


main = run_gui
screenshot = take_screenshot
