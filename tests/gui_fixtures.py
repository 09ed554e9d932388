"""Fixtures for the GUI tests (import with ``from gui_fixtures import *``-style plugin loading).

``make_main_window`` builds main windows like napari's ``make_napari_viewer``: every window it
made is closed at the end of the test, background workers are stopped, and the settings of the
whole app live in a temporary INI file so tests never touch a user's settings.

``property_bundles`` trains two tiny physical-property bundles once per session through the
bring-your-own-labels command (as ``tests/test_batch_properties.py`` does): ``"cnn"``, a CNN of
``log_mstar`` on g, r, i fluxes marked as a demo bundle, and ``"needs_z"``, a CNN+LightGBM of ``ml_g`` that needs a redshift.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import json  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from galaxy_inspector.shipped import samples_dir  # noqa: E402

__all__ = ["gui_settings", "make_main_window", "property_bundles", "sample",
           "wait_for_analysis", "train_property_bundle"]

TINY_CNN = ["--epochs", "1", "--batch-size", "16", "--widths", "4", "4", "8", "8",
            "--hidden", "8", "--threads", "1"]


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
    flush_qt_events()


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


def train_property_bundle(root, name: str, method: str = "cnn", redshift: bool = False,
                          demo: bool = False, target: str = "log_mstar", n: int = 14) -> str:
    """Train a tiny property bundle on 16x16 g, r, i nJy images at 0.168"/px (the scale of
    ``cube_gri.fits``) predicting ``target``; returns its folder."""
    from astropy.io import fits

    from training.cli import main as train_properties

    root.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:16, :16] - 7.5
    blob = np.exp(-0.5 * (xx ** 2 / 9 + yy ** 2 / 4))
    rng = np.random.default_rng(0)
    rows = [f"g,r,i,{target},{target}_err,z"]
    for k in range(n):
        for band, colour in zip("gri", (1.0, 1.6, 2.2), strict=True):
            plane = (40.0 + 10 * k) * colour * blob + rng.normal(0, 2.0, blob.shape)
            header = fits.Header({"BUNIT": "nJy", "PIXSCALE": 0.168, "FILTER": band})
            fits.PrimaryHDU(plane.astype(np.float32), header).writeto(root / f"{band}{k}.fits",
                                                                      overwrite=True)
        rows.append(f"g{k}.fits,r{k}.fits,i{k}.fits,{9 + 0.1 * k},0.1,{0.05 + 0.01 * k}")
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    out = root / name
    args = ["properties", "--table", str(root / "train.csv"), "--image-column", "g",
            "--image-column", "r", "--image-column", "i", "--target", target,
            "--target-err", f"{target}_err", "--method", method, "--out", str(out), *TINY_CNN]
    if redshift:
        args += ["--redshift", "z"]
    assert train_properties(args) == 0
    card_path = out / "card.json"
    card = json.loads(card_path.read_text())
    card["name"] = name
    if demo:
        card.update(demo=True, synthetic_training_data=True)
    card_path.write_text(json.dumps(card, indent=1))
    return str(out)


@pytest.fixture(scope="session")
def property_bundles(tmp_path_factory) -> dict:
    """``{"cnn": folder, "needs_z": folder}`` of two tiny property bundles (trained once)."""
    root = tmp_path_factory.mktemp("gui-properties")
    return {"cnn": train_property_bundle(root / "cnn", "tiny-mstar-demo", demo=True),
            "needs_z": train_property_bundle(root / "gbm", "tiny-ml-z", method="cnn+gbm",
                                             redshift=True, target="ml_g")}
