"""The main window: image view, posterior dock, menus, status-bar readout, drag and drop.

It wires widgets to the headless ``ViewerState`` and starts engine calls (``tasks``) through
``workers``; it holds no science and never blocks on the engine.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QDoubleValidator, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QDockWidget,
    QFileDialog,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMessageBox,
    QSpinBox,
    QToolBar,
)

from galaxy_inspector.engine import DEFAULT_MODEL
from galaxy_inspector.errors import user_message
from galaxy_inspector.gui import settings as stored
from galaxy_inspector.gui.file_filters import CATALOGUE_FILTER, CATALOGUE_SUFFIXES, IMAGE_FILTER
from galaxy_inspector.gui.image_view import SkyImageView
from galaxy_inspector.gui.posterior_panel import PosteriorPanel
from galaxy_inspector.gui.workers import Worker, start_worker
from galaxy_inspector.viewer.model_cards import bundle_display_name, known_property_bundles
from galaxy_inspector.viewer.state import COMPOSITE_BAND, INTERVALS, STRETCHES, ViewerState
from galaxy_inspector.viewer.tasks import ModelCache, preload_engine_modules, read_planes

__all__ = ["MainWindow"]

ERROR_STYLE = "color: #b00020; font-weight: bold"


class MainWindow(QMainWindow):
    """Galaxy Inspector's main window. ``state`` holds everything it shows."""

    analysis_failed = Signal(str)

    def __init__(self, state: ViewerState | None = None, parent=None):
        super().__init__(parent)
        preload_engine_modules()
        self.setWindowTitle("Galaxy Inspector")
        self.setAcceptDrops(True)
        self.state = state or ViewerState()
        self.models = ModelCache()
        self.settings = stored.app_settings()
        self._analysis_worker: Worker | None = None
        self._analysis_request = None
        self._queued_position = None
        self._child_windows = []

        self.image_view = SkyImageView(self.state)
        self.setCentralWidget(self.image_view)
        self.posterior = PosteriorPanel()
        dock = QDockWidget("Posterior", self)
        dock.setObjectName("posterior_dock")
        dock.setWidget(self.posterior)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        self._build_toolbar()
        self._build_menus()
        self.readout = QLabel()
        self.statusBar().addPermanentWidget(self.readout)
        self.model_label = QLabel()
        self.statusBar().addPermanentWidget(self.model_label)

        self.image_view.hovered.connect(self._on_hover)
        self.image_view.clicked.connect(self.analyse_at)
        self.state.add_callback("analysis", self.posterior.show_analysis)
        self.state.add_callback("path", self._on_path)
        self.state.add_callback("images", self._update_bands)
        self.state.add_callback("band", lambda _band: self._update_bands(self.state.images))
        self.state.add_callback("model", self._on_model)
        self.state.add_callback("property_models", self._on_property_models)
        self.state.add_callback("redshift", self._on_redshift)
        self.state.add_callback("busy", self._on_busy)
        self._restore_settings()

    # -- construction --------------------------------------------------------------------
    def _build_toolbar(self) -> None:
        bar = QToolBar("Display")
        bar.setObjectName("display_toolbar")
        self.addToolBar(bar)
        self.stretch_box = self._combo(bar, "Stretch", STRETCHES, "stretch")
        self.interval_box = self._combo(bar, "Limits", INTERVALS, "interval")
        bar.addWidget(QLabel(" Band "))
        self.band_box = QComboBox()
        self.band_box.currentIndexChanged.connect(self._on_band_chosen)
        bar.addWidget(self.band_box)
        bar.addWidget(QLabel(" Pixels "))
        self.origin_box = QComboBox()
        self.origin_box.addItems(["0-based (astropy)", "1-based (FITS/DS9)"])
        self.origin_box.currentIndexChanged.connect(
            lambda i: setattr(self.state, "pixel_origin", i))
        self.state.add_callback("pixel_origin", self.origin_box.setCurrentIndex)
        bar.addWidget(self.origin_box)
        bar.addWidget(QLabel(" Samples "))
        self.samples_box = QSpinBox()
        self.samples_box.setRange(10, 5000)
        self.samples_box.setSingleStep(100)
        self.samples_box.setValue(self.state.n_samples)
        self.samples_box.valueChanged.connect(lambda n: setattr(self.state, "n_samples", n))
        bar.addWidget(self.samples_box)
        bar.addWidget(QLabel(" Redshift "))
        self.redshift_edit = QLineEdit()
        self.redshift_edit.setPlaceholderText("none")
        self.redshift_edit.setToolTip(
            "Redshift of the galaxy you click, for physical-property models that need one "
            "(e.g. Dobbels CNN+LightGBM). Leave empty when unknown: those models then say "
            "that they need a redshift. Cleared when another file is opened.")
        validator = QDoubleValidator(0.0, 20.0, 6, self.redshift_edit)
        validator.setNotation(QDoubleValidator.Notation.StandardNotation)
        self.redshift_edit.setValidator(validator)
        self.redshift_edit.setMaximumWidth(80)
        self.redshift_edit.editingFinished.connect(self._on_redshift_typed)
        bar.addWidget(self.redshift_edit)

    def _combo(self, bar, title, choices, prop) -> QComboBox:
        bar.addWidget(QLabel(f" {title} "))
        box = QComboBox()
        box.addItems(list(choices))
        box.setCurrentText(getattr(self.state, prop))
        box.currentTextChanged.connect(lambda text: setattr(self.state, prop, text))
        self.state.add_callback(prop, box.setCurrentText)
        bar.addWidget(box)
        return box

    def _action(self, menu, text, slot, shortcut=None) -> QAction:
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self._action(file_menu, "&Open image…", self._ask_open, QKeySequence.StandardKey.Open)
        self.recent_menu = file_menu.addMenu("Open &recent")
        self._action(file_menu, "Open &catalogue…", self._ask_open_catalogue)
        file_menu.addSeparator()
        self._action(file_menu, "&Batch measure…", self.open_batch_dialog, "Ctrl+B")
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        view_menu = self.menuBar().addMenu("&View")
        self._action(view_menu, "Reset contrast/bias", self._reset_contrast)
        self._action(view_menu, "Zoom to fit", lambda: self.image_view.view_box.autoRange())
        model_menu = self.menuBar().addMenu("&Model")
        self._action(model_menu, "&Choose models…", self.open_model_dialog, "Ctrl+M")
        self.property_menu = model_menu.addMenu("&Physical properties")
        self.property_menu.aboutToShow.connect(self._refresh_property_menu)
        self._action(model_menu, "&Train a model…", self.open_training_dialog)
        self._refresh_recent_menu()

    # -- settings ------------------------------------------------------------------------
    def _restore_settings(self) -> None:
        s = self.settings
        self.state.stretch = stored.get("stretch", self.state.stretch, s)
        self.state.interval = stored.get("interval", self.state.interval, s)
        self.state.pixel_origin = stored.get("pixel_origin", 0, s)
        self.state.n_samples = stored.get("n_samples", self.state.n_samples, s)
        self.samples_box.setValue(self.state.n_samples)
        self.state.model = stored.get("model", DEFAULT_MODEL, s)
        self.state.property_models = tuple(stored.string_list("property_models", s))
        geometry, layout = s.value("geometry"), s.value("window_state")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        else:
            self.resize(1400, 850)
        if isinstance(layout, QByteArray):
            self.restoreState(layout)

    def save_settings(self) -> None:
        s = self.settings
        for key in ("stretch", "interval", "pixel_origin", "n_samples", "model"):
            s.setValue(key, getattr(self.state, key))
        s.setValue("property_models", list(self.state.property_models))
        s.setValue("geometry", self.saveGeometry())
        s.setValue("window_state", self.saveState())
        s.sync()

    def closeEvent(self, event):  # noqa: N802 (Qt naming)
        self.save_settings()
        if self._analysis_worker is not None:
            self._analysis_worker.quit()
        for window in self._child_windows:
            window.close()
            window.deleteLater()  # its connections to this window are a cycle gc cannot break
        super().closeEvent(event)

    # -- opening files -------------------------------------------------------------------
    def _ask_open(self) -> None:
        folder = stored.get("last_image_folder", "", self.settings)
        paths, _ = QFileDialog.getOpenFileNames(self, "Open image", folder, IMAGE_FILTER)
        if paths:
            self.open_file(paths[0])

    def open_file(self, path: str) -> Worker | None:
        """Read ``path`` in the background and show it (a catalogue opens the browser)."""
        path = str(path)
        if path.lower().endswith(CATALOGUE_SUFFIXES):
            self.open_catalogue(path)
            return None
        self.settings.setValue("last_image_folder", str(Path(path).parent))
        self.state.busy = f"reading {Path(path).name}…"
        worker = Worker(read_planes, path)
        worker.signals.returned.connect(lambda planes: self._on_read(path, planes))
        worker.signals.errored.connect(
            lambda exc: self.show_error(f"Cannot open {Path(path).name}: {user_message(exc)}"))
        worker.signals.finished.connect(lambda: setattr(self.state, "busy", ""))
        return start_worker(worker)

    def _on_read(self, path: str, planes) -> None:
        self.state.set_images(path, planes)
        stored.add_recent_file(path, self.settings)
        self._refresh_recent_menu()
        image = self.state.image
        note = "" if image.calibrated else " — not flux-calibrated: flux outputs are not physical"
        self.statusBar().showMessage(f"{Path(path).name}: {image.calibration}{note}", 15000)

    def _refresh_recent_menu(self) -> None:
        self.recent_menu.clear()
        files = stored.recent_files(self.settings)
        for path in files:
            self._action(self.recent_menu, path, lambda _=False, p=path: self.open_file(p))
        self.recent_menu.setEnabled(bool(files))

    def dragEnterEvent(self, event):  # noqa: N802 (Qt naming)
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event):  # noqa: N802 (Qt naming)
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_file(paths[0])

    # -- measuring -----------------------------------------------------------------------
    def analyse_at(self, x: float, y: float) -> None:
        """Measure the galaxy at 0-based pixel (x, y) off the GUI thread (the click)."""
        image = self.state.image
        if image is None:
            return
        self.state.position = (float(x), float(y))
        request = (*self.state.position, self.state.model, self.state.property_models,
                   self.state.redshift, self.state.n_samples)
        if self._analysis_worker is not None and self._analysis_worker.is_running:
            # The latest click wins once the current one ends, unless that one answers it.
            self._queued_position = None if request == self._analysis_request else (x, y)
            return
        self._analysis_request = request
        self.state.busy = f"measuring the galaxy at x={x:.1f}, y={y:.1f}…"
        worker = Worker(self.models.analyse, image, x, y, self.state.model or None,
                        self.state.n_samples, property_models=self.state.property_models,
                        redshift=self.state.redshift)
        worker.signals.returned.connect(self._on_analysis)
        worker.signals.errored.connect(self._on_analysis_error)
        worker.signals.finished.connect(self._on_analysis_finished)
        self._analysis_worker = start_worker(worker)

    def _on_analysis(self, analysis) -> None:
        if analysis.source == self.state.image.source:
            self.state.analysis = analysis
            self.statusBar().showMessage(
                f"measured in the background with {analysis.model_name}", 5000)

    def _on_analysis_error(self, exc) -> None:
        message = f"Cannot measure there: {user_message(exc)}"
        self.state.analysis = None
        self.analysis_failed.emit(message)
        self.show_error(message)

    def _on_analysis_finished(self) -> None:
        self._analysis_worker = None
        self.state.busy = ""
        if self._queued_position is not None:
            x, y = self._queued_position
            self._queued_position = None
            QTimer.singleShot(0, lambda: self.analyse_at(x, y))

    # -- reactions to state --------------------------------------------------------------
    def _on_hover(self, x: float, y: float) -> None:
        self.readout.setText(self.state.readout(x, y))

    def _on_path(self, path: str) -> None:
        self.setWindowTitle(f"{Path(path).name} — Galaxy Inspector" if path
                            else "Galaxy Inspector")

    def _update_bands(self, images) -> None:
        self.band_box.blockSignals(True)
        self.band_box.clear()
        self.band_box.addItems([f"plane {i}" for i in range(len(images))])
        if self.state.can_composite():
            self.band_box.addItem("colour composite")
        self.band_box.setCurrentIndex(self.band_box.count() - 1
                                      if self.state.band == COMPOSITE_BAND else self.state.band)
        self.band_box.setEnabled(len(images) > 1)
        self.band_box.blockSignals(False)

    def _on_band_chosen(self, index: int) -> None:
        composite = self.state.can_composite() and index == len(self.state.images)
        self.state.band = COMPOSITE_BAND if composite else max(index, 0)

    def _on_model(self, model: str) -> None:
        self._update_model_label()
        self._reanalyse()

    def _on_property_models(self, names) -> None:
        self._update_model_label()
        self._reanalyse()

    def _reanalyse(self) -> None:
        """Measure the galaxy shown again (after a change of models or redshift); a closed
        window measures nothing."""
        if self.isVisible() and self.state.position is not None and self.state.image is not None:
            self.analyse_at(*self.state.position)

    def _update_model_label(self) -> None:
        model = self.state.model
        text = f"model: {Path(model).name if model else DEFAULT_MODEL}"
        names = [bundle_display_name(p) for p in self.state.property_models]
        if names:
            text += f"; properties: {', '.join(names)}"
        self.model_label.setText(text)

    def _on_redshift_typed(self) -> None:
        text = self.redshift_edit.text().strip()
        try:
            value = float(text.replace(",", ".")) if text else None
        except ValueError:
            value = None
        self.state.redshift = value

    def _on_redshift(self, value) -> None:
        text = "" if value is None else f"{value:g}"
        if self.redshift_edit.text().strip() != text:
            self.redshift_edit.setText(text)
        self._reanalyse()

    def _refresh_property_menu(self) -> None:
        """Checkable entries for the shipped property bundles and the active folders."""
        self.property_menu.clear()
        for path, label in known_property_bundles(self.state.property_models):
            action = QAction(label, self.property_menu)
            action.setCheckable(True)
            action.setChecked(path in self.state.property_models)
            action.toggled.connect(
                lambda on, p=path: self.state.set_property_model(p, on))
            self.property_menu.addAction(action)
        if not self.property_menu.actions():
            none = self.property_menu.addAction("no property bundles (add one in Choose models…)")
            none.setEnabled(False)
        self.property_menu.addSeparator()
        self._action(self.property_menu, "Choose models…", self.open_model_dialog)

    def _on_busy(self, text: str) -> None:
        if text:
            self.statusBar().showMessage(text)
        self.statusBar().setStyleSheet("")

    def _reset_contrast(self) -> None:
        self.state.contrast, self.state.bias = 1.0, 0.5

    def show_error(self, message: str) -> None:
        """Show a user-facing error in the status bar and in a non-blocking message box."""
        self.state.message = message
        self.statusBar().setStyleSheet(ERROR_STYLE)
        self.statusBar().showMessage(message, 30000)
        box = QMessageBox(QMessageBox.Icon.Warning, "Galaxy Inspector", message,
                          QMessageBox.StandardButton.Ok, self)
        box.setModal(False)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.show()

    # -- other windows -------------------------------------------------------------------
    def _keep(self, window):
        self._child_windows = [w for w in self._child_windows if w.isVisible()] + [window]
        return window

    def open_model_dialog(self):
        from galaxy_inspector.gui.model_dialog import ModelDialog

        dialog = ModelDialog(self.state.model, self, properties=self.state.property_models)
        dialog.accepted.connect(lambda: self._apply_model_choice(dialog))
        dialog.open()
        return self._keep(dialog)

    def _apply_model_choice(self, dialog) -> None:
        with self.state.delay_callbacks():  # one new measurement for both changes, not two
            self.state.property_models = tuple(dialog.chosen_properties)
            self.state.model = dialog.chosen

    def _ask_open_catalogue(self) -> None:
        folder = stored.get("last_catalogue_folder", "", self.settings)
        path, _ = QFileDialog.getOpenFileName(self, "Open catalogue", folder, CATALOGUE_FILTER)
        if path:
            self.open_catalogue(path)

    def open_catalogue(self, path: str):
        from galaxy_inspector.gui.catalogue_browser import CatalogueBrowser

        self.settings.setValue("last_catalogue_folder", str(Path(path).parent))
        browser = CatalogueBrowser(self.models, self.state, parent=None)
        browser.load(path)
        browser.show()
        return self._keep(browser)

    def open_batch_dialog(self):
        from galaxy_inspector.gui.batch_dialog import BatchDialog

        dialog = BatchDialog(self.state.model, self.settings, self,
                             property_models=self.state.property_models)
        dialog.open_catalogue_requested.connect(self.open_catalogue)
        dialog.show()
        return self._keep(dialog)

    def open_training_dialog(self):
        from galaxy_inspector.gui.training_dialog import TrainingDialog

        dialog = TrainingDialog(self.settings, self)
        dialog.bundle_accepted.connect(lambda path: setattr(self.state, "model", path))
        dialog.show()
        return self._keep(dialog)
