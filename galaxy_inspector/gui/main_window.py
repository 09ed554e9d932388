"""The main window: the open images (frames), the image view, the posterior panel, menus,
status-bar readout, drag and drop.

It wires widgets to the headless ``ViewerState`` and starts engine calls (``tasks``) through
``workers``; it holds no science and never blocks on the engine. The image keeps priority:
image and side panel share a splitter with stretch factors (the image takes three parts of any
change of width, the side two), and the splitters' positions are remembered.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from PySide6.QtCore import QByteArray, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QDoubleValidator, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from galaxy_inspector.engine import DEFAULT_MODEL
from galaxy_inspector.errors import user_message
from galaxy_inspector.gui import image_settings, region_actions, samp_bridge
from galaxy_inspector.gui import settings as stored
from galaxy_inspector.gui.file_filters import CATALOGUE_FILTER, CATALOGUE_SUFFIXES, IMAGE_FILTER
from galaxy_inspector.gui.image_view import SkyImageView
from galaxy_inspector.gui.posterior_panel import PosteriorPanel
from galaxy_inspector.gui.workers import Worker, start_worker
from galaxy_inspector.viewer.display import band_labels
from galaxy_inspector.viewer.model_cards import bundle_display_name, known_property_bundles
from galaxy_inspector.viewer.state import COMPOSITE_BAND, INTERVALS, STRETCHES, ViewerState
from galaxy_inspector.viewer.tasks import (
    ModelCache,
    morphology_model_for,
    preload_engine_modules,
    read_files,
)

__all__ = ["MainWindow"]

ERROR_STYLE = "color: #b00020; font-weight: bold"
EMPTY_HINT = "Open a file (Ctrl+O) or drop one here"
#: Next / previous image. DS9 uses Tab and Shift+Tab, which Qt keeps for moving the keyboard
#: focus between fields; Page Down / Page Up are the keys of the same gesture in viewers.
NEXT_KEYS = ("PgDown", "Ctrl+]")
PREVIOUS_KEYS = ("PgUp", "Ctrl+[")
#: Width shares of a change of window width: the image gets most of it.
IMAGE_STRETCH, SIDE_STRETCH = 3, 2
MIN_IMAGE_WIDTH, MIN_SIDE_WIDTH = 240, 200


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
        self._analysis_request = None  # measurement_key() of the running or last measurement
        self._pending_measurement = False  # something else to measure once it ends
        self._hover = None  # last pointer position over the image (view coordinates)
        self._child_windows = []

        self.image_view = SkyImageView(self.state)
        self.posterior = PosteriorPanel()
        self._build_central()
        self._build_toolbar()
        self._build_menus()
        # Image menu: the pixel scale, zero point and PSF of the image shown
        self.image_settings = image_settings.install(self)
        self.samp = samp_bridge.install(self)  # SAMP menu: TOPCAT, DS9, Aladin
        self.regions = region_actions.install(self)  # Regions menu: DS9 region files
        self.model_label = QLabel()
        self.statusBar().addPermanentWidget(self.model_label)

        self.image_view.hovered.connect(self._on_hover)
        self.image_view.pointer_left.connect(lambda: self._on_hover(None))
        self.image_view.clicked.connect(self.analyse_at)
        self.state.add_callback("analysis", self.posterior.show_analysis)
        self.state.add_callback("pixel_origin", self.posterior.set_pixel_origin)
        self.posterior.set_pixel_origin(self.state.pixel_origin)
        for name in ("images", "band", "pixel_origin"):  # what is under the pointer changed
            self.state.add_callback(name, lambda _value: self._refresh_readout())
        self.state.add_callback("path", self._on_path)
        self.state.add_callback("frames", self._update_frame_list)
        self.state.add_callback("frame", self._update_frame_list)
        self.state.add_callback("images", self._update_bands)
        # A display image is measured with the display model while the default is chosen.
        self.state.add_callback("images", lambda _images: self._update_model_label())
        self.state.add_callback("band", lambda _band: self._update_bands(self.state.images))
        self.state.add_callback("band", lambda _band: self._reanalyse())
        self.state.add_callback("model", self._on_model)
        self.state.add_callback("property_models", self._on_property_models)
        self.state.add_callback("redshift", self._on_redshift)
        self.state.add_callback("busy", self._on_busy)
        self._restore_settings()
        self._update_frame_list()
        self._update_bands(())

    # -- construction --------------------------------------------------------------------
    def _build_central(self) -> None:
        """[image | side], the side being [open images / posterior], in splitters; the image
        area shows a hint until a file is open."""
        self.empty_hint = QLabel(EMPTY_HINT)
        self.empty_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_hint.setWordWrap(True)
        self.empty_hint.setStyleSheet("color: #888; font-size: 15pt; background: black")
        self.image_stack = QStackedWidget()
        self.image_stack.addWidget(self.empty_hint)
        self.image_stack.addWidget(self.image_view)
        # The readout sits under the image, not in the status bar, where messages and the
        # model's name would cut it short in a narrow window; it wraps rather than clips.
        self.readout = QLabel()
        self.readout.setWordWrap(True)
        self.readout.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.image_area = QWidget()
        image_column = QVBoxLayout(self.image_area)
        image_column.setContentsMargins(0, 0, 0, 0)
        image_column.setSpacing(2)
        image_column.addWidget(self.image_stack, 1)
        image_column.addWidget(self.readout)
        self.image_area.setMinimumWidth(MIN_IMAGE_WIDTH)
        self.frame_list = QListWidget()
        self.frame_list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.frame_list.setToolTip(
            f"Open images. Next / previous: {' or '.join(NEXT_KEYS)} / "
            f"{' or '.join(PREVIOUS_KEYS)}; close: Ctrl+W")
        self.frame_list.currentRowChanged.connect(self._on_frame_chosen)
        frames = QWidget()
        frames_column = QVBoxLayout(frames)
        frames_column.setContentsMargins(0, 0, 0, 0)
        frames_column.setSpacing(2)
        title = QLabel(f"<b>Open images</b> ({NEXT_KEYS[0]} / {PREVIOUS_KEYS[0]}: "
                       "next / previous)")
        title.setWordWrap(True)  # wraps in a narrow window rather than being cut
        frames_column.addWidget(title)
        frames_column.addWidget(self.frame_list, 1)
        self.side = QSplitter(Qt.Orientation.Vertical)
        self.side.setObjectName("side_splitter")
        self.side.addWidget(frames)
        self.side.addWidget(self.posterior)
        self.side.setStretchFactor(0, 0)
        self.side.setStretchFactor(1, 1)
        self.side.setChildrenCollapsible(False)
        self.side.setSizes([110, 600])
        self.side.setMinimumWidth(MIN_SIDE_WIDTH)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setObjectName("main_splitter")
        self.splitter.addWidget(self.image_area)
        self.splitter.addWidget(self.side)
        self.splitter.setStretchFactor(0, IMAGE_STRETCH)
        self.splitter.setStretchFactor(1, SIDE_STRETCH)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setSizes([IMAGE_STRETCH * 100, SIDE_STRETCH * 100])
        self.setCentralWidget(self.splitter)

    def _build_toolbar(self) -> None:
        bar = QToolBar("Display")
        bar.setObjectName("display_toolbar")
        self.addToolBar(bar)
        self.stretch_box = self._combo(bar, "Stretch", STRETCHES, "stretch")
        self.interval_box = self._combo(bar, "Limits", INTERVALS, "interval")
        bar.addWidget(QLabel(" Band "))
        self.band_box = QComboBox()
        # Sized to its longest entry whenever the entries change ("colour composite" whole).
        self.band_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.band_box.currentIndexChanged.connect(self._on_band_chosen)
        bar.addWidget(self.band_box)
        bar.addWidget(QLabel(" Pixels "))
        self.origin_box = QComboBox()
        self.origin_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.origin_box.setToolTip("How pixels are numbered on the axes, in the readout and in "
                                   "the posterior's header; exported rows stay 0-based and say so")
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
        box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        box.addItems(list(choices))
        box.setCurrentText(getattr(self.state, prop))
        box.currentTextChanged.connect(lambda text: setattr(self.state, prop, text))
        self.state.add_callback(prop, box.setCurrentText)
        bar.addWidget(box)
        return box

    def _action(self, menu, text, slot, shortcut=None) -> QAction:
        """A menu entry; ``shortcut`` is one key sequence or a tuple of them."""
        action = QAction(text, self)
        if isinstance(shortcut, tuple):
            action.setShortcuts([QKeySequence(k) for k in shortcut])
        elif shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self._action(file_menu, "&Open images…", self._ask_open, QKeySequence.StandardKey.Open)
        self.recent_menu = file_menu.addMenu("Open &recent")
        self.close_action = self._action(file_menu, "&Close image", self.close_frame, "Ctrl+W")
        self._action(file_menu, "Open &catalogue…", self._ask_open_catalogue)
        file_menu.addSeparator()
        self._action(file_menu, "&Batch measure…", self.open_batch_dialog, "Ctrl+B")
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        view_menu = self.menuBar().addMenu("&View")
        self.next_action = self._action(view_menu, "&Next image",
                                        lambda: self.step_frame(1), NEXT_KEYS)
        self.previous_action = self._action(view_menu, "&Previous image",
                                            lambda: self.step_frame(-1), PREVIOUS_KEYS)
        view_menu.addSeparator()
        self._action(view_menu, "Reset contrast/bias", self._reset_contrast)
        self._action(view_menu, "Zoom to fit", lambda: self.image_view.view_box.autoRange())
        view_menu.addAction(self.image_view.mask_overlay_action)
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
        for splitter in (self.splitter, self.side):
            saved = s.value(splitter.objectName())
            if isinstance(saved, QByteArray):
                splitter.restoreState(saved)

    def save_settings(self) -> None:
        s = self.settings
        for key in ("stretch", "interval", "pixel_origin", "n_samples", "model"):
            s.setValue(key, getattr(self.state, key))
        s.setValue("property_models", list(self.state.property_models))
        s.setValue("geometry", self.saveGeometry())
        s.setValue("window_state", self.saveState())
        for splitter in (self.splitter, self.side):
            s.setValue(splitter.objectName(), splitter.saveState())
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
        paths, _ = QFileDialog.getOpenFileNames(self, "Open images", folder, IMAGE_FILTER)
        if paths:
            self.open_files(paths)

    def open_file(self, path: str) -> Worker | None:
        """Read ``path`` in the background and show it (a catalogue opens the browser)."""
        return self.open_files([path])

    def open_files(self, paths) -> Worker | None:
        """Open every file of ``paths``, each in its own frame, in the order given; the first
        one is shown (switched to when already open) and the others wait in the list of open
        images. Catalogues open the browser. Paths are made absolute here, so the recent-files
        list and exported rows hold where the file is, not where the app was started."""
        paths = [os.path.abspath(p) for p in paths]
        for catalogue in [p for p in paths if p.lower().endswith(CATALOGUE_SUFFIXES)]:
            self.open_catalogue(catalogue)
        images = [p for p in paths if not p.lower().endswith(CATALOGUE_SUFFIXES)]
        if images and self.state.frame_index(images[0]) >= 0:
            self.select_frame(self.state.frame_index(images[0]))
        to_read = list(dict.fromkeys(p for p in images if self.state.frame_index(p) < 0))
        if not to_read:
            return None
        self.settings.setValue("last_image_folder", str(Path(to_read[0]).parent))
        names = Path(to_read[0]).name + (f" and {len(to_read) - 1} more"
                                          if len(to_read) > 1 else "")
        self.state.busy = f"reading {names}…"
        # The first file read is shown, unless it was open already; errors stay on screen.
        opening = {"show": images[0] == to_read[0], "failed": False}
        worker = Worker(read_files, to_read)
        worker.signals.yielded.connect(lambda item: self._on_read(*item, opening))
        worker.signals.finished.connect(lambda: self._on_files_read(opening))
        return start_worker(worker)

    def _on_read(self, path: str, planes, exc, opening: dict) -> None:
        if exc is not None:
            opening["failed"] = True
            self.show_error(f"Cannot open {Path(path).name}: {user_message(exc)}")
            return
        stored.add_recent_file(path, self.settings)
        self._refresh_recent_menu()
        if self.state.frame_index(path) >= 0:  # opened twice while it was being read
            return
        show, opening["show"] = opening["show"], False
        with self._keeping_view():
            self.state.open_frame(path, planes, show=show)
        if show:
            self._announce()

    def _on_files_read(self, opening: dict) -> None:
        self.state.busy = ""
        if not opening["failed"]:
            self._announce()  # now with the number of images open

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
            self.open_files(paths)

    # -- frames (the open images) --------------------------------------------------------
    def select_frame(self, index: int) -> None:
        with self._keeping_view():
            self.state.select_frame(index)
        self._announce()
        self._reanalyse()

    def step_frame(self, step: int) -> None:
        """Show the next (1) or previous (-1) open image."""
        if len(self.state.frames) > 1:
            self.select_frame((self.state.frame + step) % len(self.state.frames))

    def close_frame(self) -> None:
        """Close the image shown; the next one is shown."""
        if self.state.frames:
            with self._keeping_view():
                self.state.close_frame()
            if self.state.frames:
                self._announce()
                self._reanalyse()

    @contextmanager
    def _keeping_view(self):
        """Keep the zoom and pan of the frame shown in it, and show the next one's (a frame
        shown for the first time is fitted to the view)."""
        left = self.state.shown_frame()
        if left is not None:
            left.view = self.image_view.view_box.viewRange()
        yield
        shown = self.state.shown_frame()
        if shown is None or shown is left:
            return
        if shown.view is None:
            self.image_view.view_box.autoRange(padding=0.02)
        else:
            x_range, y_range = shown.view
            self.image_view.view_box.setRange(xRange=x_range, yRange=y_range, padding=0)

    def _update_frame_list(self, _value=None) -> None:
        self.frame_list.blockSignals(True)
        self.frame_list.clear()
        for frame in self.state.frames:
            item = QListWidgetItem(Path(frame.path).name)
            item.setToolTip(frame.path)
            self.frame_list.addItem(item)
        self.frame_list.setCurrentRow(self.state.frame)
        self.frame_list.blockSignals(False)
        self.image_stack.setCurrentWidget(self.image_view if self.state.frames
                                          else self.empty_hint)
        for action in (self.next_action, self.previous_action):
            action.setEnabled(len(self.state.frames) > 1)
        self.close_action.setEnabled(bool(self.state.frames))
        self._on_path(self.state.path)

    def _on_frame_chosen(self, row: int) -> None:
        if 0 <= row < len(self.state.frames):
            self.select_frame(row)

    def _announce(self) -> None:
        """Say in the status bar what is shown: the file, its place among the open images, the
        plane or channel shown and what a click measures, with its calibration. Under a colour
        view that is not the first plane's description: a click measures plane 0 of a FITS
        composite, and the channels' mean of a JPEG/PNG (what ``--batch`` measures)."""
        state, image = self.state, self.state.image
        if image is None:
            return
        where = (f" (image {state.frame + 1} of {len(state.frames)})"
                 if len(state.frames) > 1 else "")
        labels = band_labels(state.images, state.can_composite())
        colour = state.band == COMPOSITE_BAND and state.can_composite()
        if image.is_display_image:
            shown = "in colour" if colour else f"channel {labels[state.band]}"
            text = (f"a display image (JPEG/PNG, already stretched), shown as it is, {shown}; "
                    "a click measures the channels' mean; no flux calibration")
        else:
            note = "" if image.calibrated else " — not flux-calibrated: flux outputs are not physical"
            text = f"{image.calibration}{note}"
            if colour:
                text = (f"colour composite of {len(state.images)} planes; a click measures "
                        f"{labels[0]}: {text}")  # the plane a composite measures
        self.statusBar().setStyleSheet("")
        self.statusBar().showMessage(f"{Path(state.path).name}{where}: {text}", 15000)

    # -- measuring -----------------------------------------------------------------------
    def analyse_at(self, x: float, y: float) -> None:
        """Measure the galaxy at 0-based pixel (x, y) off the GUI thread (the click)."""
        if self.state.image is None:
            return
        self.state.position = (float(x), float(y))
        self._measure()

    def _measure(self) -> None:
        """Measure the marked galaxy of the plane shown, unless what is shown is already its
        measurement; while a measurement runs, the latest request waits for its end."""
        if not self.state.needs_measurement():
            return
        key = self.state.measurement_key()
        if self._analysis_worker is not None and self._analysis_worker.is_running:
            self._pending_measurement = key != self._analysis_request
            return
        self._analysis_request = key
        x, y = self.state.position
        self.state.busy = f"measuring the galaxy at x={x:.1f}, y={y:.1f}…"
        worker = Worker(self.models.analyse, self.state.image, x, y, self.state.model or None,
                        self.state.n_samples, property_models=self.state.property_models,
                        redshift=self.state.redshift)
        worker.signals.returned.connect(lambda analysis: self._on_analysis(key, analysis))
        worker.signals.errored.connect(lambda exc: self._on_analysis_error(key, exc))
        worker.signals.finished.connect(self._on_analysis_finished)
        self._analysis_worker = start_worker(worker)

    def _on_analysis(self, key, analysis) -> None:
        if self.state.accept_analysis(key, analysis):  # else it measured what is gone
            self.statusBar().showMessage(
                f"measured in the background with {analysis.model_name}", 5000)

    def _on_analysis_error(self, key, exc) -> None:
        if key != self.state.measurement_key():
            return  # about a galaxy, plane or image no longer shown
        message = f"Cannot measure there: {user_message(exc)}"
        self.analysis_failed.emit(message)
        self.show_error(message)

    def _on_analysis_finished(self) -> None:
        self._analysis_worker = None
        self.state.busy = ""
        if self._pending_measurement:
            self._pending_measurement = False
            QTimer.singleShot(0, self._measure)

    # -- reactions to state --------------------------------------------------------------
    def _on_hover(self, x: float | None, y: float | None = None) -> None:
        """The pointer is at view position (x, y), or (None) outside the image."""
        self._hover = None if x is None else (x, y)
        self._refresh_readout()

    def _refresh_readout(self) -> None:
        """The readout under the pointer, for the image, plane and origin shown now."""
        self.readout.setText(self.state.readout(*self._hover) if self._hover else "")

    def _on_path(self, path: str) -> None:
        n = len(self.state.frames)
        where = f" ({self.state.frame + 1}/{n})" if n > 1 else ""
        self.setWindowTitle(f"{Path(path).name}{where} — Galaxy Inspector" if path
                            else "Galaxy Inspector")

    def _update_bands(self, images) -> None:
        self.band_box.blockSignals(True)
        self.band_box.clear()
        self.band_box.addItems(band_labels(images, self.state.can_composite()))
        self.band_box.setCurrentIndex(self.band_box.count() - 1
                                      if self.state.band == COMPOSITE_BAND else self.state.band)
        self.band_box.setEnabled(len(images) > 1)
        self.band_box.blockSignals(False)
        # A display image is shown at its own levels: no stretch or limits to choose.
        scaled = not (images and images[0].is_display_image)
        for box in (self.stretch_box, self.interval_box):
            box.setEnabled(scaled)
            box.setToolTip("" if scaled else "a display image (JPEG/PNG) is already stretched: "
                           "it is shown as it is")

    def _on_band_chosen(self, index: int) -> None:
        composite = self.state.can_composite() and index == len(self.state.images)
        self.state.band = COMPOSITE_BAND if composite else max(index, 0)
        self._announce()  # the calibration of the plane now shown

    def _on_model(self, model: str) -> None:
        self._update_model_label()
        self._reanalyse()

    def _on_property_models(self, names) -> None:
        self._update_model_label()
        self._reanalyse()

    def _reanalyse(self) -> None:
        """Measure the marked galaxy again when what is shown is not its measurement (after
        a change of band, frame, models or redshift); a closed window measures nothing."""
        if self.isVisible():
            self._measure()

    def _update_model_label(self) -> None:
        model = morphology_model_for(self.state.image, self.state.model)
        text = f"model: {Path(model).name}"
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
        self.samp.follow(browser)
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

        dialog = TrainingDialog(self)
        dialog.bundle_accepted.connect(lambda path: setattr(self.state, "model", path))
        dialog.show()
        return self._keep(dialog)
