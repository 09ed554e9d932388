"""The batch dialog: inputs, model, output and options in; a resumable HDF5 catalogue out.

It runs ``galaxy_inspector.batch.run_batch`` (what ``--batch`` runs) in a background worker and
shows its progress; cancelling stops between work units and leaves a file ``Resume`` finishes.
"Run on" picks this computer (reading processes) or a Dask cluster (``--cluster``'s address).
A relative output is made absolute when the run starts (against the working folder, as
``--out`` is) and shown so, with where the catalogue went in the last line.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
)

from galaxy_inspector.batch import BatchOptions, BatchProgress
from galaxy_inspector.errors import user_message
from galaxy_inspector.gui import settings as stored
from galaxy_inspector.gui.file_filters import (
    CATALOGUE_FILTER,
    CATALOGUE_SUFFIXES,
    IMAGE_FILTER,
    TABLE_FILTER,
)
from galaxy_inspector.gui.run_buttons import RunButtons
from galaxy_inspector.gui.workers import Worker, start_worker
from galaxy_inspector.parallel import usable_cores
from galaxy_inspector.progress import RateEstimate, batch_line
from galaxy_inspector.viewer.model_cards import bundle_display_name
from galaxy_inspector.viewer.tasks import batch_task

__all__ = ["BatchDialog", "format_progress"]


def format_progress(p: BatchProgress, total: int, estimate: RateEstimate | None = None) -> str:
    """'12/40 inputs, 1 failed, 3.2 galaxies/s, about 9 s left (3 already in the file)', the
    time left from ``estimate`` (which has seen the run's readings) once it knows."""
    left = estimate.seconds_left(total - p.inputs - p.skipped) if estimate else None
    text = batch_line(p, total, left)
    return f"{text} ({p.skipped} already in the file)" if p.skipped else text


class BatchDialog(QDialog):
    """Configure and run a batch; emits ``open_catalogue_requested(path)`` at the user's wish."""

    open_catalogue_requested = Signal(str)
    run_finished = Signal(object)

    def __init__(self, model: str = "", settings=None, parent=None, property_models=()):
        super().__init__(parent)
        self.property_models = list(property_models)
        #: ``(hdu, plane)`` to read the inputs from, when a caller measures a plane it shows
        #: (regions loaded over a cube's band); None: each file's default HDU, plane 0.
        self.image_plane: tuple | None = None
        self.setWindowTitle("Batch measure")
        self.resize(720, 640)
        self.settings = settings or stored.app_settings()
        self.worker: Worker | None = None
        self.total = 0
        self.estimate = RateEstimate()
        self.result: BatchProgress | None = None

        self.inputs = QListWidget()
        add_files = QPushButton("Add files…")
        add_folder = QPushButton("Add folder…")
        add_table = QPushButton("Add table…")
        remove = QPushButton("Remove")
        add_files.clicked.connect(self._ask_files)
        add_folder.clicked.connect(self._ask_folder)
        add_table.clicked.connect(self._ask_table)
        remove.clicked.connect(lambda: [self.inputs.takeItem(self.inputs.row(i))
                                        for i in self.inputs.selectedItems()])
        input_buttons = QHBoxLayout()
        for b in (add_files, add_folder, add_table, remove):
            input_buttons.addWidget(b)
        input_box = QGroupBox("Inputs (images, folders, or tables with path and x/y or ra/dec)")
        input_layout = QVBoxLayout(input_box)
        input_layout.addWidget(self.inputs)
        input_layout.addLayout(input_buttons)

        self.model_edit = QLineEdit(model)
        self.model_edit.setPlaceholderText("default model")
        self.use_properties = QCheckBox()
        if self.property_models:
            names = "".join(f"\n• {bundle_display_name(p)}" for p in self.property_models)
            self.use_properties.setText(f"also run the active property models:{names}")
            self.use_properties.setChecked(True)
        else:
            self.use_properties.setText("no property models active (Model ▸ Choose models…)")
            self.use_properties.setEnabled(False)
        self.redshift_column = QLineEdit()
        self.redshift_column.setPlaceholderText("z or redshift")
        self.redshift_column.setToolTip("Column of the input tables holding each galaxy's "
                                        "redshift, for property models that need one")
        self.output_edit = QLineEdit(stored.get("batch_output", "", self.settings))
        self.output_edit.setPlaceholderText("catalogue.h5")
        browse_out = QPushButton("…")
        browse_out.clicked.connect(self._ask_output)
        out_row = QHBoxLayout()
        out_row.addWidget(self.output_edit)
        out_row.addWidget(browse_out)
        self.samples = QSpinBox()
        self.samples.setRange(0, 10000)
        self.samples.setSpecialValueText("model default")
        self.samples.setValue(0)
        self.save_samples = QCheckBox("store posterior samples (/posterior_samples)")
        self.save_samples.setChecked(True)
        self.resume = QCheckBox("resume an interrupted catalogue")
        self.overwrite = QCheckBox("overwrite an existing catalogue")
        self.detect = QCheckBox("detect every galaxy in each image (instead of the centre)")
        self.workers_box = QSpinBox()
        self.workers_box.setRange(1, usable_cores())
        self.run_here = QRadioButton("this computer")
        self.run_on_cluster = QRadioButton("a Dask cluster at")
        self.run_here.setChecked(True)
        self.cluster_address = QLineEdit(stored.get("batch_cluster", "", self.settings))
        self.cluster_address.setPlaceholderText("local:4, tcp://host:8786, scheduler.json, slurm")
        self.cluster_address.setToolTip(
            "local:N worker processes here; tcp://HOST:PORT or a scheduler file of a running "
            "Dask scheduler; slurm, pbs, sge, lsf or htcondor for dask-jobqueue (configured in "
            "~/.config/dask/jobqueue.yaml). Workers must see the inputs and models at the same "
            "paths.")
        self.run_on_cluster.toggled.connect(self._cluster_chosen)
        self._cluster_chosen(False)
        run_on = QHBoxLayout()
        for widget in (self.run_here, self.run_on_cluster, self.cluster_address):
            run_on.addWidget(widget)
        self.pixel_scale = QDoubleSpinBox()
        self.pixel_scale.setRange(0.0, 10.0)
        self.pixel_scale.setDecimals(4)
        self.pixel_scale.setSpecialValueText("from the files")
        self.zero_point = QDoubleSpinBox()
        self.zero_point.setRange(0.0, 40.0)
        self.zero_point.setDecimals(3)
        self.zero_point.setSpecialValueText("from the files")
        self.psf_fwhm = QDoubleSpinBox()
        self.psf_fwhm.setRange(0.0, 10.0)
        self.psf_fwhm.setDecimals(3)
        self.psf_fwhm.setSingleStep(0.05)
        self.psf_fwhm.setSpecialValueText("from the files")
        self.psf_fwhm.setToolTip("FWHM of the images' PSF (--psf-fwhm); from the files: their "
                                 "header's SEEING, PSF_FWHM, FWHM... keyword, else unknown")
        self.sky_subtracted = QCheckBox("the images' sky is 0 (sky-subtracted): measure none")
        self.sky_subtracted.setToolTip("--sky-subtracted: for FITS images a pipeline took the "
                                       "sky off; JPEG/PNG inputs then get error rows")
        form = QFormLayout()
        form.addRow("Model", self.model_edit)
        form.addRow("", self.use_properties)
        form.addRow("Redshift column (tables)", self.redshift_column)
        form.addRow("Output", out_row)
        form.addRow("Samples per galaxy", self.samples)
        form.addRow("", self.save_samples)
        form.addRow("", self.resume)
        form.addRow("", self.overwrite)
        form.addRow("", self.detect)
        form.addRow("Run on", run_on)
        form.addRow("Reading processes", self.workers_box)
        form.addRow("Pixel scale (″/px), replaces the file's", self.pixel_scale)
        form.addRow("AB zero point if missing", self.zero_point)
        form.addRow("PSF FWHM (″), replaces the file's", self.psf_fwhm)
        form.addRow("", self.sky_subtracted)

        self.progress_bar = QProgressBar()
        self.progress_label = QLabel("Not started.")
        self.progress_label.setWordWrap(True)  # a long catalogue path must not widen the dialog
        self.errors = QListWidget()
        self.errors.setMaximumHeight(110)
        self.errors.setWordWrap(True)  # a reason is read whole, not scrolled sideways
        self.errors.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.buttons = RunButtons(self, "Run", "Open in catalogue browser")
        self.buttons.result.clicked.connect(
            lambda: self.open_catalogue_requested.emit(self.output_edit.text()))
        layout = QVBoxLayout(self)
        layout.addWidget(input_box, 1)
        layout.addLayout(form)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.progress_label)
        layout.addWidget(QLabel("Errors"))
        layout.addWidget(self.errors)
        layout.addLayout(self.buttons)

    # -- inputs --------------------------------------------------------------------------
    def add_inputs(self, paths) -> None:
        for path in paths:
            self.inputs.addItem(str(path))

    def input_paths(self) -> list[str]:
        return [self.inputs.item(i).text() for i in range(self.inputs.count())]

    def _folder(self) -> str:
        return stored.get("last_batch_folder", "", self.settings)

    def _remember(self, path: str) -> None:
        self.settings.setValue("last_batch_folder", str(Path(path).parent))

    def _ask_files(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Add images", self._folder(), IMAGE_FILTER)
        if paths:
            self._remember(paths[0])
            self.add_inputs(paths)

    def _ask_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add folder", self._folder())
        if folder:
            self._remember(os.path.join(folder, "x"))
            self.add_inputs([folder])

    def _ask_table(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Add table", self._folder(), TABLE_FILTER)
        if path:
            self._remember(path)
            self.add_inputs([path])

    def _ask_output(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Catalogue file", self.output_edit.text(),
                                              CATALOGUE_FILTER)
        if path:
            self.output_edit.setText(path if path.endswith(CATALOGUE_SUFFIXES) else path + ".h5")

    # -- running -------------------------------------------------------------------------
    def options(self) -> BatchOptions:
        """The dialog's choices as the engine's ``BatchOptions``."""
        model = self.model_edit.text().strip() or None
        if self.use_properties.isChecked() and self.property_models:
            from galaxy_inspector.engine import DEFAULT_MODEL

            model = [model or DEFAULT_MODEL, *self.property_models]
        hdu, plane = self.image_plane or (None, 0)
        return BatchOptions(
            model=model, redshift_column=self.redshift_column.text().strip() or None,
            n_samples=self.samples.value() or None,
            save_samples=self.save_samples.isChecked(), resume=self.resume.isChecked(),
            overwrite=self.overwrite.isChecked(), workers=self.workers_box.value(),
            pixel_scale=self.pixel_scale.value() or None,
            zero_point=self.zero_point.value() or None, detect=self.detect.isChecked(),
            psf_fwhm=self.psf_fwhm.value() or None,
            sky_subtracted=self.sky_subtracted.isChecked(),
            cluster=self.cluster_address.text().strip() if self.run_on_cluster.isChecked()
            else None,
            hdu=hdu, plane=plane,
            command_line="galaxy-inspector GUI batch dialog")

    def _cluster_chosen(self, on_cluster: bool) -> None:
        self.cluster_address.setEnabled(on_cluster)
        self.workers_box.setEnabled(not on_cluster)  # the cluster's workers read the images

    def start(self) -> None:
        inputs, out = self.input_paths(), self.output_edit.text().strip()
        if not inputs or not out:
            self._say("Add at least one input and choose an output file.", error=True)
            return
        if self.run_on_cluster.isChecked() and not self.cluster_address.text().strip():
            self._say("Give the Dask cluster's address (e.g. local:4 or tcp://host:8786), or "
                      "run on this computer.", error=True)
            return
        out = os.path.abspath(out)
        self.output_edit.setText(out)
        self.settings.setValue("batch_output", out)
        self.settings.setValue("batch_cluster", self.cluster_address.text().strip())
        self.errors.clear()
        self.result = None
        self.total = 0
        self.estimate = RateEstimate()
        self.progress_bar.setRange(0, 0)
        self._say("Starting: loading the model and counting inputs…")
        self._running(True)
        self.worker = Worker(batch_task, inputs, out, self.options(), pass_stop=True,
                             pass_report=True)
        self.worker.signals.yielded.connect(self._on_progress)
        self.worker.signals.returned.connect(self._on_returned)
        self.worker.signals.errored.connect(
            lambda exc: self._say(f"The batch could not run: {user_message(exc)}", error=True))
        self.worker.signals.finished.connect(lambda: self._running(False))
        start_worker(self.worker)

    def cancel(self) -> None:
        if self.worker is not None and self.worker.is_running:
            self.worker.quit()
            self._say("Cancelling after the current chunk…")

    def _running(self, running: bool) -> None:
        self.buttons.set_running(running)
        if not running:
            self.worker = None
            if self.progress_bar.maximum() == 0:
                self.progress_bar.setRange(0, 1)

    def _on_progress(self, item) -> None:
        if isinstance(item, int):
            self.total = item
            self.progress_bar.setRange(0, max(item, 1))
            self._say(f"{item} inputs to measure…")
            return
        if item.dashboard and not item.inputs:  # reported once the cluster is up
            self._say(f"{self.total} inputs to measure on the Dask cluster (dashboard: "
                      f"{item.dashboard})…")
            return
        self.estimate.observe(item.inputs, item.elapsed)
        self.progress_bar.setValue(item.inputs + item.skipped)
        self._say(format_progress(item, self.total, self.estimate))

    def _on_returned(self, outcome) -> None:
        result, errors = outcome
        self.result = result
        out = self.output_edit.text().strip()
        if result.cancelled:
            state = "Cancelled; the file keeps what was done — tick 'resume' to finish it."
        else:
            self.progress_bar.setValue(self.progress_bar.maximum())
            state = "Finished."
        self._say("\n".join([f"{state} {format_progress(result, self.total)} in "
                             f"{result.elapsed:.1f} s; catalogue: {out}", *result.notes]))
        self.errors.addItems(errors)
        self.buttons.result.setEnabled(Path(out).is_file())
        self.run_finished.emit(result)

    def _say(self, text: str, error: bool = False) -> None:
        self.progress_label.setStyleSheet("color: #b00020" if error else "")
        self.progress_label.setText(text)

    def closeEvent(self, event):  # noqa: N802 (Qt naming)
        self.cancel()
        super().closeEvent(event)
