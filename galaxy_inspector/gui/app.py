"""Application entry points used by ``galaxy-inspector`` (``cli.py`` imports this lazily).

``run_gui(files)`` opens the window with every file, each as one of the open images (frames);
``take_screenshot(out_png, files)`` opens the files, measures the galaxy at the centre of the
first one, saves the main window as a PNG and exits.
``main`` and ``screenshot`` are the names ``cli.py`` calls. ``take_panel_screenshot`` saves the
posterior panel scrolled to its "Physical properties" section, with given property models
(for the docs: ``python -m galaxy_inspector.gui.app --panel OUT.png IMAGE --model BUNDLE ...``).
"""

from __future__ import annotations

import sys
import time

from PySide6.QtWidgets import QApplication

from galaxy_inspector import __version__
from galaxy_inspector.gui.main_window import MainWindow
from galaxy_inspector.gui.workers import wait_for_workers

__all__ = ["run_gui", "take_screenshot", "take_panel_screenshot", "main", "screenshot",
           "application", "SCREENSHOT_SIZE"]

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
    """Open the main window with ``files`` (the first shown, the others in the list of open
    images) and run until it is closed."""
    app = application()
    window = MainWindow()
    window.show()
    if files:
        window.open_files(files)
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


def take_screenshot(out_png: str, files: list[str], property_models=None,
                    redshift: float | None = None, panel_only: bool = False) -> int:
    """Open ``files``, measure the centre galaxy of the first, save the window to ``out_png``
    (once every file is read, so the list of open images is complete).

    ``property_models`` (bundle names or folders) replace the active ones for this screenshot
    only (the user's settings keep theirs); ``panel_only`` saves the posterior panel scrolled
    to its end (the "Physical properties" section) instead of the window.
    """
    app = application()
    window = MainWindow()
    window.resize(*SCREENSHOT_SIZE)
    saved_properties = window.state.property_models
    if property_models is not None:
        window.state.property_models = tuple(str(p) for p in property_models)
    window.show()
    errors = []
    window.analysis_failed.connect(errors.append)
    status = 0
    if files:
        reading = window.open_files(files)
        loaded = _wait_until(app, lambda: reading is None or not reading.is_running,
                             SCREENSHOT_TIMEOUT)
        app.processEvents()  # the last file's planes, sent just before the reading ended
        if window.state.images:
            window.state.redshift = redshift
            ny, nx = window.state.image.shape
            window.image_view.click_at((nx - 1) / 2, (ny - 1) / 2)
            _wait_until(app, lambda: window.state.analysis is not None or errors,
                        SCREENSHOT_TIMEOUT)
        if not loaded or not window.state.images or window.state.analysis is None:
            print(f"galaxy-inspector: warning: {window.state.message or 'timed out'}",
                  file=sys.stderr)
            status = 1
    _wait_until(app, lambda: False, 0.3)  # let the canvas and view finish drawing
    target = window
    if panel_only:
        bar = window.posterior.scroll.verticalScrollBar()
        bar.setValue(bar.maximum())
        _wait_until(app, lambda: False, 0.2)
        target = window.posterior
    if not target.grab().save(str(out_png)):
        print(f"galaxy-inspector: error: cannot write {out_png}", file=sys.stderr)
        status = 1
    # The user's models go back for the settings the window saves on closing; the window
    # hears of them only once closed, so it does not measure again.
    with window.state.delay_callbacks():
        window.state.property_models = saved_properties
        window.close()
    wait_for_workers()
    return status


def take_panel_screenshot(out_png: str, image: str, property_models,
                          redshift: float | None = None) -> int:
    """The posterior panel of the centre galaxy of ``image`` with ``property_models`` active,
    scrolled to its "Physical properties" section (docs/screenshots/properties_panel.png)."""
    return take_screenshot(out_png, [image], property_models, redshift, panel_only=True)


main = run_gui
screenshot = take_screenshot


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m galaxy_inspector.gui.app",
        description="Save the posterior panel (scrolled to the physical properties) of the "
                    "centre galaxy of IMAGE with the given property bundles.")
    parser.add_argument("--panel", required=True, metavar="OUT.png")
    parser.add_argument("image")
    parser.add_argument("--model", action="append", default=[], metavar="BUNDLE",
                        help="property bundle (shipped name or folder); repeat for more")
    parser.add_argument("--redshift", type=float, default=None)
    args = parser.parse_args()
    sys.exit(take_panel_screenshot(args.panel, args.image, args.model, args.redshift))
