"""Image ▸ Settings…: what a user knows about the image shown where its file says nothing, or
says it wrong: its pixel scale, AB zero point and PSF (``--batch``'s ``--pixel-scale``,
``--zero-point``, ``--psf-fwhm`` and ``--psf``).

Apply reads the frame's planes again through ``tasks.read_planes`` (``io.read_image`` with
those options, what ``--batch`` calls) in a worker, since measuring the field's stars takes
seconds. The frame keeps its band, zoom and galaxy, forgets its measurement and measures the
galaxy again (``ViewerState.reread_frame``), and remembers its settings while others are shown.
A value that cannot be used is one line in the dialog, and the frame is left as it was.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
)

from galaxy_inspector.batch import ZERO_POINT_RANGE
from galaxy_inspector.errors import InputError, user_message
from galaxy_inspector.flags import Flag
from galaxy_inspector.gui.file_filters import ALL_FILES, name_filter
from galaxy_inspector.gui.workers import Worker, start_worker
from galaxy_inspector.io import PSF_FROM_STARS
from galaxy_inspector.io.psf import FWHM_LIMITS_ARCSEC
from galaxy_inspector.viewer.state import ImageSettings
from galaxy_inspector.viewer.tasks import read_planes
from galaxy_inspector.viewer.wording import format_value

__all__ = ["ImageSettingsActions", "ImageSettingsDialog", "install", "SHORTCUT"]

SHORTCUT = "Ctrl+I"
ERROR_STYLE = "color: #b00020; font-weight: bold"
PSF_FILTER = f"{name_filter('PSF images (FITS)', ('.fits', '.fit', '.fits.gz'))};;{ALL_FILES}"
#: The PSF choices, in the order of the dialog's buttons.
FILE_PSF, GIVEN_FWHM, PSF_IMAGE, STARS = range(4)


def install(window) -> ImageSettingsActions:
    """Give the main window an Image menu with Settings… (``MainWindow.image_settings``)."""
    return ImageSettingsActions(window)


def psf_text(image) -> str:
    """'FWHM 0.61″ (measured from 12 stars)', or 'unknown', as the posterior panel says it."""
    if image.psf_fwhm is None:
        return "unknown"
    return f"FWHM {format_value(image.psf_fwhm)}″ ({image.psf_source})"


def scale_source(image, settings: ImageSettings) -> str:
    """Where the pixel scale of ``image`` (read with ``settings``) comes from, in words."""
    if settings.pixel_scale is not None:
        return "as given"
    if not image.pixel_scale:
        return "none in the file: give one (the PSF's and R_e's arcsec need it)"
    if image.flags & Flag.PIXEL_SCALE_GUESSED:
        return (f"guessed: {format_value(image.pixel_scale)}″/px, SDSS's (the file states "
                "none): give the survey's")
    where = "its WCS" if image.wcs is not None else "its header"
    return f"the file's: {format_value(image.pixel_scale)}″/px, from {where}"


class ImageSettingsActions(QObject):
    """The Image menu, and the re-reading of a frame with new settings (one at a time)."""

    applied = Signal(object)  # the Frame, read anew
    failed = Signal(object, str)  # the Frame (left as it was), the one-line reason

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.worker: Worker | None = None
        self.dialog: ImageSettingsDialog | None = None
        menu = window.menuBar().addMenu("&Image")
        self.action = QAction("&Settings (pixel scale, zero point, PSF)…", window)
        self.action.setShortcut(QKeySequence(SHORTCUT))
        self.action.triggered.connect(self.open_dialog)
        menu.addAction(self.action)
        window.state.add_callback("frames", self._enable)
        self._enable(window.state.frames)

    def _enable(self, frames) -> None:
        self.action.setEnabled(bool(frames))

    @property
    def is_running(self) -> bool:
        return self.worker is not None and self.worker.is_running

    def open_dialog(self) -> ImageSettingsDialog | None:
        """The settings of the image shown, window-modal (they are about that frame)."""
        frame = self.window.state.shown_frame()
        if frame is None:
            return None
        self.dialog = ImageSettingsDialog(frame, self, self.window)
        self.dialog.finished.connect(lambda _result: setattr(self, "dialog", None))
        self.dialog.open()
        return self.dialog

    def apply(self, frame, settings: ImageSettings) -> Worker | None:
        """Read ``frame`` again with ``settings`` in the background; ``applied`` or ``failed``
        says how it went. None when a reading is already running."""
        if self.is_running:
            return None
        busy = f"reading {Path(frame.path).name} with its new settings…"
        self.window.state.busy = busy
        worker = Worker(read_planes, frame.path, settings)
        worker.signals.returned.connect(lambda planes: self._on_read(frame, settings, planes))
        worker.signals.errored.connect(lambda exc: self.failed.emit(frame, user_message(exc)))
        worker.signals.finished.connect(lambda: self._on_finished(worker, busy))
        self.worker = start_worker(worker)
        return self.worker

    def _on_read(self, frame, settings: ImageSettings, planes) -> None:
        state = self.window.state
        if not state.reread_frame(frame, planes, settings):
            return  # closed while it was read
        self.applied.emit(frame)
        if frame is state.shown_frame():
            self.window.statusBar().showMessage(
                f"{Path(frame.path).name} read again: {state.image.calibration}; PSF "
                f"{psf_text(state.image)}", 15000)
            if state.position is not None:  # the galaxy marked, measured with the new reading
                self.window.analyse_at(*state.position)

    def _on_finished(self, worker, busy: str) -> None:
        if self.worker is worker:  # not a later Apply's read, which goes on
            self.worker = None
        if self.window.state.busy == busy:
            self.window.state.busy = ""
        if self.window.statusBar().currentMessage() == busy:  # it failed: the dialog says why
            self.window.statusBar().clearMessage()


class ImageSettingsDialog(QDialog):
    """Pixel scale, zero point and PSF of one frame; Apply reads it again with them."""

    def __init__(self, frame, actions: ImageSettingsActions, parent=None):
        super().__init__(parent)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.frame = frame
        self.actions = actions
        self._close_when_applied = False
        self.setWindowTitle(f"Image settings — {Path(frame.path).name}")
        settings = frame.settings

        self.calibration = QLabel()
        self.calibration.setWordWrap(True)
        self.calibration.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.pixel_scale = QDoubleSpinBox()
        self.pixel_scale.setRange(0.0, 10.0)
        self.pixel_scale.setDecimals(4)
        self.pixel_scale.setSingleStep(0.01)
        self.pixel_scale.setSuffix(" ″/px")
        self.pixel_scale.setSpecialValueText("the file's")
        self.pixel_scale.setValue(settings.pixel_scale or 0.0)
        self.pixel_scale.setToolTip("Replaces the file's pixel scale (--pixel-scale): the WCS "
                                    "is rescaled about its reference pixel")
        self.scale_note = QLabel()
        self.scale_note.setWordWrap(True)

        low, high = ZERO_POINT_RANGE
        self.zero_point = QDoubleSpinBox()
        self.zero_point.setRange(low, high - 0.001)  # the range is open at both ends
        self.zero_point.setDecimals(3)
        self.zero_point.setSingleStep(0.1)
        self.zero_point.setSpecialValueText("none")
        self.zero_point.setValue(settings.zero_point or low)
        self.zero_point.setToolTip(
            "AB magnitude of one pixel unit (--zero-point): 31.4 for nJy, 22.5 for SDSS "
            "nanomaggies, 8.9 for Jy, about 25-35 for counts. Used only where the file has "
            "no calibration of its own")
        self.zero_note = QLabel()
        self.zero_note.setWordWrap(True)
        self.sky_subtracted = QCheckBox("its sky is 0 (sky-subtracted): measure none")
        self.sky_subtracted.setChecked(settings.sky_subtracted)
        self.sky_subtracted.setToolTip(
            "--sky-subtracted: a pipeline took the sky off (HST drizzled mosaics, HSC coadds). "
            "A cutout too small to hold sky of its own is then measured, not refused")

        self.psf_choice = QButtonGroup(self)
        psf_box = QGroupBox("PSF")
        grid = QGridLayout(psf_box)
        labels = ("the file's (a header keyword, else unknown)", "FWHM", "PSF image",
                  "measured on the image's stars")
        for index, text in enumerate(labels):
            button = QRadioButton(text)
            self.psf_choice.addButton(button, index)
            alone = index in (FILE_PSF, STARS)  # no field of its own: the whole row
            grid.addWidget(button, index, 0, 1, 2 if alone else 1)
        low, high = FWHM_LIMITS_ARCSEC
        self.psf_fwhm = QDoubleSpinBox()
        self.psf_fwhm.setRange(low, high)
        self.psf_fwhm.setDecimals(3)
        self.psf_fwhm.setSingleStep(0.05)
        self.psf_fwhm.setSuffix(" ″")
        self.psf_fwhm.setValue(settings.psf_fwhm or 1.0)
        self.psf_fwhm.setToolTip("The FWHM of the image's PSF in arcsec (--psf-fwhm)")
        grid.addWidget(self.psf_fwhm, GIVEN_FWHM, 1)
        self.psf_path = QLineEdit(settings.psf if settings.psf not in (None, PSF_FROM_STARS)
                                  else "")
        self.psf_path.setPlaceholderText("PSF.fits")
        self.psf_path.setToolTip("A FITS image of the PSF (--psf): HSC's PSF picker, PSFEx, "
                                 "WebbPSF; its FWHM is that of a Moffat profile fitted to it")
        browse = QPushButton("…")
        browse.clicked.connect(self._ask_psf_image)
        path_row = QHBoxLayout()
        path_row.addWidget(self.psf_path, 1)
        path_row.addWidget(browse)
        grid.addLayout(path_row, PSF_IMAGE, 1)
        self.psf_note = QLabel()
        self.psf_note.setWordWrap(True)
        grid.addWidget(self.psf_note, len(labels), 0, 1, 2)
        grid.setColumnStretch(1, 1)
        self.psf_choice.button(self._psf_index(settings)).setChecked(True)
        self.psf_path.textEdited.connect(lambda _text: self._choose_psf(PSF_IMAGE))
        self.psf_fwhm.valueChanged.connect(lambda _value: self._choose_psf(GIVEN_FWHM))

        self.result = QLabel()
        self.result.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                        | QDialogButtonBox.StandardButton.Apply
                                        | QDialogButtonBox.StandardButton.Close)
        self.apply_button = self.buttons.button(QDialogButtonBox.StandardButton.Apply)
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.apply_button.clicked.connect(self.apply)
        self.ok_button.clicked.connect(self._apply_and_close)
        self.buttons.rejected.connect(self.reject)

        form = QFormLayout()
        form.addRow("Pixel scale", self.pixel_scale)
        form.addRow("", self.scale_note)
        form.addRow("AB zero point", self.zero_point)
        form.addRow("", self.zero_note)
        form.addRow("Sky", self.sky_subtracted)
        layout = QVBoxLayout(self)
        layout.addWidget(self.calibration)
        layout.addLayout(form)
        layout.addWidget(psf_box)
        layout.addWidget(self.result)
        layout.addStretch(1)
        layout.addWidget(self.buttons)
        actions.applied.connect(self._on_applied)
        actions.failed.connect(self._on_failed)
        self._describe()
        self.resize(560, self.sizeHint().height())

    # -- what the fields say ---------------------------------------------------------------
    @staticmethod
    def _psf_index(settings: ImageSettings) -> int:
        if settings.psf_fwhm is not None:
            return GIVEN_FWHM
        if settings.psf == PSF_FROM_STARS:
            return STARS
        return FILE_PSF if settings.psf is None else PSF_IMAGE

    def _choose_psf(self, index: int) -> None:
        self.psf_choice.button(index).setChecked(True)

    def _image(self):
        """The plane of the frame the dialog describes (the one its band shows)."""
        images = self.frame.images
        band = self.actions.window.state.band if self.frame is \
            self.actions.window.state.shown_frame() else (self.frame.band or 0)
        return images[band] if 0 <= band < len(images) else images[0]

    def _describe(self) -> None:
        """The file's own values and what the frame was read with, beside the fields."""
        image, settings = self._image(), self.frame.settings
        self.calibration.setText(f"<b>{Path(self.frame.path).name}</b> — calibration: "
                                 f"{image.calibration}")
        self.scale_note.setText(scale_source(image, settings))
        if image.is_display_image:
            self.zero_point.setEnabled(False)
            self.zero_note.setText("a display image (JPEG/PNG) has no flux calibration to give")
        elif image.calibrated and settings.zero_point is None:
            self.zero_point.setEnabled(False)
            self.zero_note.setText("the file is calibrated (above): a zero point would not "
                                   "be used")
        else:
            self.zero_point.setEnabled(True)
            self.zero_note.setText("the file has no calibration: give the AB magnitude of "
                                   "one pixel unit" if settings.zero_point is None else
                                   "as given (the file has no calibration of its own)")
        self.sky_subtracted.setEnabled(not image.is_display_image)
        if image.is_display_image:
            self.sky_subtracted.setToolTip("a display image's sky is a display level, not 0")
        stars = self.psf_choice.button(STARS)
        stars.setEnabled(not image.is_display_image)
        stars.setToolTip("a display image's stretch changes its stars' profiles: give the FWHM"
                         if image.is_display_image else
                         "Moffat fits to the isolated, round, unsaturated stars of S/N > 50 in "
                         "the central 2048² pixels (--psf stars); takes a few seconds")
        self.psf_note.setText(f"Now: {psf_text(image)}")

    # -- applying --------------------------------------------------------------------------
    def chosen(self) -> ImageSettings:
        """The settings the fields say; ``InputError`` (one line) where they cannot be used."""
        psf_fwhm = psf = None
        choice = self.psf_choice.checkedId()
        if choice == GIVEN_FWHM:
            psf_fwhm = round(self.psf_fwhm.value(), self.psf_fwhm.decimals())
        elif choice == PSF_IMAGE:
            psf = self.psf_path.text().strip()
            if not psf:
                raise InputError("choose the PSF image (a FITS file), or another PSF choice")
            psf = str(Path(psf).expanduser().absolute())
        elif choice == STARS:
            psf = PSF_FROM_STARS
        scale, zero_point = self.pixel_scale.value(), self.zero_point.value()
        return ImageSettings(
            pixel_scale=scale if scale > self.pixel_scale.minimum() else None,
            zero_point=(zero_point if self.zero_point.isEnabled()
                        and zero_point > self.zero_point.minimum() else None),
            psf_fwhm=psf_fwhm, psf=psf,
            sky_subtracted=self.sky_subtracted.isEnabled() and self.sky_subtracted.isChecked())

    def apply(self) -> None:
        """Read the frame again with the fields' settings (nothing when they are its own)."""
        try:
            settings = self.chosen()
        except InputError as exc:
            self._say(f"Cannot apply: {user_message(exc)}", error=True)
            return
        if settings == self.frame.settings:
            self._say("Nothing to change: the image was read with these settings.")
            if self._close_when_applied:
                self.accept()
            return
        if self.actions.apply(self.frame, settings) is None:
            self._say("The image is still being read with the last settings.", error=True)
            return
        self._say("Reading the image with these settings (stars take a few seconds)…")
        self.apply_button.setEnabled(False)
        self.ok_button.setEnabled(False)

    def _apply_and_close(self) -> None:
        self._close_when_applied = True
        self.apply()

    def _on_applied(self, frame) -> None:
        if frame is not self.frame:
            return
        self._enable_buttons()
        self._describe()
        image = self._image()
        again = (" The galaxy marked is measured again."
                 if self.frame is self.actions.window.state.shown_frame()
                 and self.actions.window.state.position is not None else "")
        self._say(f"Applied: pixel scale {format_value(image.pixel_scale)}″/px; PSF "
                  f"{psf_text(image)}.{again}")
        if self._close_when_applied:
            self.accept()

    def _on_failed(self, frame, message: str) -> None:
        if frame is not self.frame:
            return
        self._enable_buttons()
        self._close_when_applied = False
        self._say(f"Cannot apply, nothing changed: {message}", error=True)

    def _enable_buttons(self) -> None:
        self.apply_button.setEnabled(True)
        self.ok_button.setEnabled(True)

    def _say(self, text: str, error: bool = False) -> None:
        self.result.setStyleSheet(ERROR_STYLE if error else "")
        self.result.setText(text)

    def _ask_psf_image(self) -> None:
        start = self.psf_path.text() or str(Path(self.frame.path).parent)
        path, _ = QFileDialog.getOpenFileName(self, "PSF image", start, PSF_FILTER)
        if path:
            self.psf_path.setText(path)
            self._choose_psf(PSF_IMAGE)
