"""The training dialog: simulate, train, calibrate or evaluate in a child process.

The training package is reached only through its command line (``python -m training --json
<sub-command> ...``) in a ``QProcess``, so a crash or a CUDA problem there cannot take the app
down, and cancelling is killing the child. Its JSON-lines events drive the progress bar, the
live loss curves, a log in words (``event_in_words``; the raw events behind a toggle) and the
offer to use a freshly written bundle. Fields are labelled in words; each tooltip names the
command-line option it sets, and the log starts with the equivalent command.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import QProcess, QStandardPaths, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from galaxy_inspector.gui.plots import plain_axes
from galaxy_inspector.gui.run_buttons import RunButtons
from galaxy_inspector.progress import RateEstimate, parse_event, time_left

__all__ = ["TrainingDialog", "STAGES", "event_in_words", "training_folder"]

#: Sub-commands of ``galaxy-inspector-train`` the dialog runs, with what each does in words.
STAGES = {"simulate": "Simulate a training set (GalSim)",
          "train": "Train the network",
          "calibrate": "Calibrate its posteriors",
          "evaluate": "Evaluate on a test set",
          "adapt": "Adapt to my survey (inject galaxies into its sky, fine-tune, evaluate)"}
#: The steps of ``adapt`` in words, for its log.
ADAPT_STEPS = {"survey": "measuring the survey and its blank sky",
               "inject-train": "injecting the training galaxies",
               "inject-calibration": "injecting the calibration galaxies",
               "inject-test": "injecting the test galaxies",
               "train": "fine-tuning the network", "calibrate": "calibrating its posteriors",
               "bundle": "writing the bundle", "evaluate": "evaluating the adapted model",
               "evaluate-before": "evaluating the original model on the same galaxies"}


def training_folder() -> Path:
    """Where the dialog proposes to write sets and runs: ``training`` in the user's data
    folder (QStandardPaths' AppDataLocation), never a path relative to wherever the app was
    started."""
    data = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    return Path(data or Path.home() / ".galaxy-inspector") / "training"


@dataclass
class Field:
    """One option of a sub-command: its flag, its label in words and what it means."""

    flag: str
    label: str
    meaning: str
    widget: QWidget

    def value(self) -> str:
        """The option's value as typed, "" when it is left out (an empty text, or a spin box
        at its minimum showing its special text, such as "all cores")."""
        w = self.widget
        if isinstance(w, QLineEdit):
            return w.text().strip()
        return "" if w.specialValueText() and w.value() == w.minimum() else str(w.value())


def _spin(lo, hi, value, double=False, step=None):
    box = QDoubleSpinBox() if double else QSpinBox()
    if double:
        box.setDecimals(4)
    box.setRange(lo, hi)
    box.setValue(value)
    if step:
        box.setSingleStep(step)
    return box


def _fields(folder: Path) -> dict[str, list[Field]]:
    """The options of each stage, with defaults under ``folder``."""
    sets, run = folder / "sets", folder / "runs" / "run1"
    seed = ("seed", "Random seed", "fixes the result: the same seed gives the same output")
    return {
        "simulate": [
            Field("n", "Galaxies", "number of galaxies to draw", _spin(1, 10_000_000, 6000)),
            Field(*seed, _spin(0, 2**31 - 1, 1)),
            Field("out", "Output set (HDF5)", "file the training set is written to",
                  QLineEdit(str(sets / "train.h5"))),
            Field("workers", "Worker processes", "processes drawing galaxies",
                  _spin(0, 256, 0))],
        "train": [
            Field("train", "Training set (HDF5)", "a set written by the simulation step",
                  QLineEdit(str(sets / "train.h5"))),
            Field("val", "Validation set (HDF5)", "another simulated set, to watch overfitting",
                  QLineEdit(str(sets / "val.h5"))),
            Field("out", "Run folder", "checkpoint (a stopped run resumes) and, at the end, "
                  "the model bundle in bundle/", QLineEdit(str(run))),
            Field("epochs", "Epochs", "passes over the training set", _spin(1, 1000, 12)),
            Field("batch-size", "Galaxies per step", "batch size", _spin(1, 4096, 128)),
            Field("lr", "Peak learning rate", "of the one-cycle schedule",
                  _spin(1e-5, 1.0, 2e-3, True, 1e-4)),
            Field("dropout", "Dropout rate", "of the Monte-Carlo dropout head",
                  _spin(0.0, 0.9, 0.1, True, 0.01)),
            Field(*seed, _spin(0, 2**31 - 1, 1))],
        "calibrate": [
            Field("bundle", "Bundle folder", "the bundle the training step wrote",
                  QLineEdit(str(run / "bundle"))),
            Field("val", "Validation set (HDF5)", "the set the posteriors are calibrated on",
                  QLineEdit(str(sets / "val.h5"))),
            Field("n", "Validation galaxies", "how many of its galaxies to use",
                  _spin(10, 1_000_000, 2000)),
            Field("samples", "Samples per galaxy", "posterior samples drawn for each galaxy",
                  _spin(10, 10000, 300))],
        "evaluate": [
            Field("bundle", "Bundle folder", "a calibrated bundle",
                  QLineEdit(str(run / "bundle"))),
            Field("test", "Test set (HDF5)", "a set never used in training or calibration",
                  QLineEdit(str(sets / "test.h5"))),
            Field("samples", "Samples per galaxy", "posterior samples drawn for each galaxy",
                  _spin(10, 10000, 500))],
        "adapt": [
            Field("images", "Folder of survey images", "FITS images of your survey, searched "
                  "recursively", QLineEdit(str(folder / "survey"))),
            Field("psf-fwhm", "PSF FWHM (arcsec)", "the survey's PSF; at 0 it is measured on "
                  "each image's stars", _spin(0.0, 10.0, 0.0, True, 0.05)),
            Field("psf", "PSF image (FITS)", "a PSF image of the survey instead of a FWHM "
                  "(leave empty to measure the stars)", QLineEdit()),
            Field("out", "Adapted bundle folder", "where the bundle and its before/after "
                  "report are written; a stopped adaptation resumes there",
                  QLineEdit(str(folder / "bundles" / "my-survey"))),
            Field("model", "Model to adapt", "a morphology bundle folder (leave empty for "
                  "the shipped morphology-hsc-g)", QLineEdit()),
            Field("n", "Injected galaxies", "galaxies injected into the survey's blank sky "
                  "(70 % train, 15 % calibration, 15 % test)", _spin(30, 1_000_000, 3000)),
            Field("epochs", "Fine-tuning epochs", "passes over the injected training galaxies",
                  _spin(1, 100, 4)),
            Field(*seed, _spin(0, 2**31 - 1, 1))],
    }


def _number(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def event_in_words(event: dict, epochs: int | None = None, left: str = "") -> str:
    """One log line for a training event: ``epochs`` is the run's epoch count (from its
    ``start`` event) and ``left`` the time left once known (``progress.time_left``)."""
    kind = event["event"]
    stage = event.get("stage")  # a training stage number, or a property model's network
    stage = "" if stage in (None, "") else \
        f"stage {stage}: " if isinstance(stage, int) else f"{stage}: "
    if kind == "start":
        return (f"training on {event.get('n_train')} galaxies for {event.get('epochs')} epochs "
                f"({event.get('device')})")
    if kind == "epoch":
        of = f"/{epochs}" if epochs else ""
        losses = [f"{name} loss {_number(event[key])}" for key, name in
                  (("train_loss", "training"), ("val_loss", "validation")) if key in event]
        return f"{stage}epoch {event.get('epoch')}{of}: " + ", ".join(losses) + \
            (f"; {left}" if left else "")
    if kind == "resumed":
        return f"{stage}resumed from the checkpoint after epoch {event.get('epoch')}"
    if kind == "paused":
        return (f"{stage}stopped after epoch {event.get('epoch')}; start again to resume "
                "from the checkpoint")
    if kind == "bundle":
        return f"model bundle written: {event.get('path')}"
    if kind == "step":
        return (f"step {event.get('number')}/{event.get('steps')}: "
                f"{ADAPT_STEPS.get(event.get('step'), event.get('step'))}")
    if kind == "calibrate":
        return (f"dropout {_number(event.get('dropout'))}: coverage score "
                f"{_number(event.get('score'))} (lower is better)")
    if kind == "calibrated":
        return (f"calibrated: dropout {_number(event.get('dropout'))}, label thresholds "
                + ", ".join(_number(t) for t in event.get("labels", ())))
    if kind == "affine":
        return "affine correction of the posterior means fitted"
    if kind == "done":
        wrote = event.get("out") or event.get("bundle")
        return f"finished: {wrote}" if wrote else "finished"
    details = ", ".join(f"{k.replace('_', ' ')} {_number(v)}" for k, v in event.items()
                        if k != "event" and not isinstance(v, (dict, list)))
    return f"{stage}{kind.replace('_', ' ')}" + (f": {details}" if details else "")


class TrainingDialog(QDialog):
    """Run one training stage; ``bundle_accepted(path)`` when the user adopts its bundle."""

    bundle_accepted = Signal(str)
    process_finished = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Train a model")
        self.process: QProcess | None = None
        self.bundle_path = ""
        self.epochs: list[dict] = []
        self._epoch_count: int | None = None
        self._run_rate = RateEstimate()
        self._buffer = ""
        self.cancelled = False

        self.stage = QComboBox()
        for name, words in STAGES.items():
            self.stage.addItem(words, name)
        self.fields = _fields(training_folder())
        self.pages = [self._form(fields) for fields in self.fields.values()]
        self._field("simulate", "workers").widget.setSpecialValueText("all cores")
        self._field("adapt", "psf-fwhm").widget.setSpecialValueText("measure on the stars")
        psf_image = self._field("adapt", "psf").widget
        psf_image.textChanged.connect(  # a PSF image or a FWHM, never both
            lambda text: self._field("adapt", "psf-fwhm").widget.setEnabled(not text.strip()))
        self.stage.currentIndexChanged.connect(self._on_stage)

        self.progress_bar = QProgressBar()
        self.progress_label = QLabel("Not started. The child process uses CUDA when present.")
        self.progress_label.setWordWrap(True)
        self.loss_plot = pg.PlotWidget(background="w")
        plain_axes(self.loss_plot)  # a loss of 0.002 reads 0.002, not "2 (x0.001)"
        self.loss_plot.setLabel("bottom", "epoch")
        self.loss_plot.setLabel("left", "loss")
        self.loss_plot.setMinimumHeight(160)
        self.loss_plot.addLegend(offset=(-10, 10))  # top right, clear of falling curves
        self.train_curve = self.loss_plot.plot([], [], pen=pg.mkPen("#1f5fa8", width=2),
                                               symbol="o", symbolSize=5, name="training")
        self.val_curve = self.loss_plot.plot([], [], pen=pg.mkPen("#c0392b", width=2),
                                             symbol="s", symbolSize=5, name="validation")
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(2000)
        self.log.setMinimumHeight(90)
        self.raw_log = QPlainTextEdit()
        self.raw_log.setReadOnly(True)
        self.raw_log.setMaximumBlockCount(2000)
        self.raw_log.hide()
        self.show_raw = QCheckBox("Show the raw events (JSON lines)")
        self.show_raw.toggled.connect(self.raw_log.setVisible)
        self.buttons = RunButtons(self, "Start", "Use the new model")
        self.buttons.result.clicked.connect(lambda: self.bundle_accepted.emit(self.bundle_path))
        top = QFormLayout()
        top.addRow("Step", self.stage)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        for page in self.pages:
            layout.addWidget(page)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.progress_label)
        layout.addWidget(self.loss_plot, 2)
        layout.addWidget(self.log, 1)
        layout.addWidget(self.show_raw)
        layout.addWidget(self.raw_log, 1)
        layout.addLayout(self.buttons)
        self.setMinimumWidth(720)  # room for the paths under the user's data folder
        self._on_stage()

    def _form(self, fields: list[Field]) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        form.setContentsMargins(0, 0, 0, 0)
        for field in fields:
            field.widget.setToolTip(f"{field.meaning} (--{field.flag})")
            form.addRow(field.label, field.widget)
        return page

    def _field(self, stage: str, flag: str) -> Field:
        return next(f for f in self.fields[stage] if f.flag == flag)

    def _on_stage(self, _index: int = 0) -> None:
        """Show the chosen stage's fields (hidden pages take no room); the loss curves only
        where there are losses."""
        for i, page in enumerate(self.pages):
            page.setVisible(i == self.stage.currentIndex())
        self.loss_plot.setVisible(self.current_stage() in ("train", "adapt"))
        self.adjustSize()

    def current_stage(self) -> str:
        return self.stage.currentData()

    # -- the child process ---------------------------------------------------------------
    def arguments(self) -> list[str]:
        """Arguments after the interpreter: ``-m training --json <stage> --option value ...``;
        an adaptation always resumes what its folder holds, as training resumes its
        checkpoint."""
        stage = self.current_stage()
        args = ["-m", "training", "--json", stage]
        for field in self.fields[stage]:
            if field.value() and field.widget.isEnabled():
                args += [f"--{field.flag}", field.value()]
        return args + (["--resume"] if stage == "adapt" else [])

    def set_field(self, stage: str, flag: str, value) -> None:
        """Fill in one option (tests, and callers that know the paths)."""
        self.stage.setCurrentIndex(list(STAGES).index(stage))
        widget = self._field(stage, flag).widget
        if isinstance(widget, QLineEdit):
            widget.setText(str(value))
        else:
            widget.setValue(value)

    def start(self) -> None:
        if self.process is not None:
            return
        self.epochs, self.bundle_path, self._buffer, self.cancelled = [], "", "", False
        self._epoch_count, self._run_rate = None, RateEstimate()
        self.train_curve.setData([], [])
        self.val_curve.setData([], [])
        self.buttons.result.setEnabled(False)
        self.log.clear()
        self.raw_log.clear()
        self.process = QProcess(self)
        self.process.setProgram(sys.executable)
        self.process.setArguments(self.arguments())
        self.process.readyReadStandardOutput.connect(self._read_stdout)
        self.process.readyReadStandardError.connect(self._read_stderr)
        self.process.finished.connect(self._on_finished)
        self.process.errorOccurred.connect(self._on_process_error)
        if hasattr(os, "killpg"):  # own process group, so cancel also stops its pool workers
            self.process.setUnixProcessParameters(QProcess.UnixProcessFlag.CreateNewSession)
        command = ["galaxy-inspector-train", *self.arguments()[3:]]  # as typed in a terminal
        self.log.appendPlainText("command: " + shlex.join(command))
        self.progress_bar.setRange(0, 0)
        self.progress_label.setStyleSheet("")
        self.progress_label.setText(f"{STAGES[self.current_stage()]}…")
        self.buttons.set_running(True)
        self.process.start()

    def cancel(self) -> None:
        """Kill the child and its workers; training resumes from its checkpoint when restarted."""
        if self.process is not None and self.process.state() != QProcess.ProcessState.NotRunning:
            self.cancelled = True
            pid = self.process.processId()
            if hasattr(os, "killpg") and pid > 0:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:  # already gone
                    pass
            self.process.kill()

    def _read_stdout(self) -> None:
        self._buffer += bytes(self.process.readAllStandardOutput()).decode(errors="replace")
        *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            event = parse_event(line)
            if event is None:
                if line.strip():
                    self.log.appendPlainText(line)
            else:
                self.raw_log.appendPlainText(line.strip())
                self.handle_event(event)

    def _read_stderr(self) -> None:
        text = bytes(self.process.readAllStandardError()).decode(errors="replace").rstrip()
        if text:
            self.log.appendPlainText(text)

    def handle_event(self, event: dict) -> None:
        """Update the view from one progress event of the child."""
        kind = event["event"]
        if kind == "progress":
            total = max(int(event.get("total", 0)), 1)
            self.progress_bar.setRange(0, total)
            self.progress_bar.setValue(int(event.get("done", 0)))
            left = time_left(event.get("seconds_left"))
            self.progress_label.setText(f"{event.get('stage', '')}: {event.get('done')}/{total}"
                                        + (f", {left}" if left else ""))
            return
        left = ""
        if kind == "start":
            self._epoch_count = event.get("epochs")
        elif kind == "epoch":
            self.epochs.append(event)
            x = [e.get("epoch", i + 1) for i, e in enumerate(self.epochs)]
            self.train_curve.setData(x, [e.get("train_loss", float("nan")) for e in self.epochs])
            self.val_curve.setData(x, [e.get("val_loss", float("nan")) for e in self.epochs])
            if self._epoch_count and "elapsed_s" in event:
                self._run_rate.observe(int(event.get("epoch", 0)), float(event["elapsed_s"]))
                remaining = self._epoch_count - int(event.get("epoch", 0))
                left = time_left(self._run_rate.seconds_left(remaining)) if remaining else ""
        elif kind == "bundle":
            self.bundle_path = str(event.get("path", ""))
        self.log.appendPlainText(event_in_words(event, self._epoch_count, left))

    def _on_finished(self, exit_code: int, _status) -> None:
        if self.process is not None:
            self._read_stdout()
            self._read_stderr()
            self.process.deleteLater()
        self.process = None
        self.buttons.set_running(False)
        self.progress_bar.setRange(0, 1)
        if self.cancelled:
            self.progress_bar.setValue(0)
            self.progress_label.setText("Cancelled (the child process was stopped).")
        elif exit_code == 0:
            self.progress_bar.setValue(1)
            text = "Finished."
            if self.bundle_path:
                text += f" New bundle: {self.bundle_path}"
                self.buttons.result.setEnabled(True)
            self.progress_label.setText(text)
        else:
            self.progress_label.setStyleSheet("color: #b00020")
            self.progress_label.setText(f"Failed (exit status {exit_code}); see the log below.")
        self.process_finished.emit(exit_code)

    def _on_process_error(self, error) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self.process = None
            self.buttons.set_running(False)
            self.progress_bar.setRange(0, 1)
            self.progress_label.setStyleSheet("color: #b00020")
            self.progress_label.setText(f"Could not start {sys.executable}.")

    def closeEvent(self, event):  # noqa: N802 (Qt naming)
        self.cancel()
        if self.process is not None:
            self.process.waitForFinished(3000)
        super().closeEvent(event)
