"""Fixtures for the GUI tests (import with ``from gui_fixtures import *``-style plugin loading).

``make_main_window`` builds main windows like napari's ``make_napari_viewer``: every window it
made is closed at the end of the test, background workers are stopped, and the settings of the
whole app live in a temporary INI file so tests never touch a user's settings.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402

from galaxy_inspector.shipped import samples_dir  # noqa: E402

__all__ = ["gui_settings", "make_main_window", "sample", "wait_for_analysis"]


@pytest.fixture
def gui_settings(tmp_path, monkeypatch):
    """Point QSettings of the app at a temporary INI file."""
    path = tmp_path / "settings.ini"
    monkeypatch.setenv("GALAXY_INSPECTOR_SETTINGS", str(path))
    return path


@pytest.fixture
def make_main_window(qtbot, gui_settings):
    """Factory of ``MainWindow``s that are closed (with their dialogs) after the test."""
    from galaxy_inspector.gui.main_window import MainWindow
    from galaxy_inspector.gui.workers import wait_for_workers

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


def sample(name: str) -> str:
    """Path of a shipped sample image, skipping the test if samples are not installed."""
    path = samples_dir() / name
    if not path.is_file():
        pytest.skip(f"sample {name} is not available")
    return str(path)


def wait_for_analysis(qtbot, window, timeout_ms: int = 120_000):
    """Wait until the window shows a measurement (or fails with the error it showed)."""
    qtbot.waitUntil(lambda: window.state.analysis is not None or bool(window.state.message),
                    timeout=timeout_ms)
    assert window.state.analysis is not None, window.state.message
    return window.state.analysis
