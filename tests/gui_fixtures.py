"""Fixtures of the GUI tests: a pytest plugin, loaded by ``pytest_plugins`` in ``conftest.py``.

``make_main_window`` builds main windows like napari's ``make_napari_viewer``: every window it
made is closed and deleted at the end of the test, background workers are stopped, and the test
fails if it left other top-level widgets alive. The settings of the whole app live in a
temporary INI file so tests never touch a user's settings.

``property_bundles`` trains two tiny physical-property bundles once per session through the
bring-your-own-labels command: ``"cnn"``, a CNN of ``log_mstar`` on g, r, i fluxes marked as a
demo bundle, and ``"needs_z"``, a CNN+LightGBM of ``ml_g`` that needs a redshift.

Qt is imported inside the fixtures, so loading this plugin for non-GUI tests costs nothing.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def gui_settings(tmp_path, monkeypatch):
    """Point QSettings of the app at a temporary INI file."""
    path = tmp_path / "settings.ini"
    monkeypatch.setenv("GALAXY_INSPECTOR_SETTINGS", str(path))
    return path


@pytest.fixture
def make_main_window(qtbot, gui_settings):
    """Factory of ``MainWindow``s that are closed and deleted (with their dialogs) after the
    test, which fails if it leaves top-level widgets alive that it did not have before."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication

    from galaxy_inspector.gui.main_window import MainWindow
    from galaxy_inspector.gui.workers import wait_for_workers

    before = set(QApplication.topLevelWidgets())
    made = []

    def factory(show: bool = True) -> MainWindow:
        window = MainWindow()
        made.append(window)
        if show:
            window.show()
            qtbot.waitExposed(window)
        return window

    yield factory
    for window in made:
        window.close()
    assert wait_for_workers(60), "background workers did not stop"
    flush_qt_events()
    for window in made:
        window.deleteLater()
    made.clear()
    flush_qt_events()
    # Popups (menus, combo-box lists) that pyqtgraph makes without a parent live until Python
    # collects its objects; any other new top-level widget is a window the test left open.
    leaked = [f"{type(w).__name__} {w.windowTitle()!r}" for w in QApplication.topLevelWidgets()
              if w not in before and w.windowType() != Qt.WindowType.Popup]
    assert not leaked, f"top-level widgets left alive after the test: {leaked}"


def flush_qt_events() -> None:
    """Deliver queued signals (a worker's last ones) and run pending ``deleteLater``s now.

    Otherwise they run in the next test's event processing, after this test's windows are
    gone. A rare segfault in CI happened in that event processing (pytest-qt, next test).
    """
    from PySide6.QtCore import QEvent
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    for _ in range(3):
        app.processEvents()
        app.sendPostedEvents(None, QEvent.Type.DeferredDelete)


@pytest.fixture
def wait_for_analysis(qtbot):
    def wait(window, timeout_ms: int = 120_000):
        """Wait until ``window`` shows a measurement (or fail with the error it showed)."""
        qtbot.waitUntil(lambda: window.state.analysis is not None or bool(window.state.message),
                        timeout=timeout_ms)
        assert window.state.analysis is not None, window.state.message
        return window.state.analysis

    return wait


@pytest.fixture(scope="session")
def property_bundles(tmp_path_factory, train_property_bundle) -> dict:
    """``{"cnn": folder, "needs_z": folder}`` of two tiny property bundles (trained once)."""
    root = tmp_path_factory.mktemp("gui-properties")
    return {"cnn": train_property_bundle(root / "cnn", "tiny-mstar-demo", demo=True),
            "needs_z": train_property_bundle(root / "gbm", "tiny-ml-z", method="cnn+gbm",
                                             redshift=True, target="ml_g")}
