"""The training dialog: simulate, train, calibrate or evaluate in a child process.

The training package is reached only through its command line (``python -m training --json
<sub-command> ...``) in a ``QProcess``, so a crash or a CUDA problem there cannot take the app
down, and cancelling is killing the child. Its JSON-lines events drive the progress bar, the
live loss curves and the offer to use a freshly written bundle.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import pyqtgraph as pg
from PySide6.QtCore import QProcess, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QSpinBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from galaxy_inspector.gui import settings as stored
from galaxy_inspector.gui.run_buttons import RunButtons
from galaxy_inspector.progress import parse_event, time_left

__all__ = ["TrainingDialog", "STAGES"]

STAGES = ("simulate", "train", "calibrate", "evaluate")


def _spin(lo, hi, value, double=False, step=None):
    box = QDoubleSpinBox() if double else QSpinBox()
    if double:
        box.setDecimals(4)
    box.setRange(lo, hi)
    box.setValue(value)
    if step:
        box.setSingleStep(step)
    return box


class TrainingDialog(QDialog):
    """Run one training stage; ``bundle_accepted(path)`` when the user adopts its bundle."""

    bundle_accepted = Signal(str)
    process_finished = Signal(int)

    def __init__(self, settings=None, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Train a model")
        self.resize(820, 720)
        self.settings = settings or stored.app_settings()
        self.process: QProcess | None = None
        self.bundle_path = ""
        self.epochs: list[dict] = []
        self._buffer = ""
        self.cancelled = False

        self.stage = QComboBox()
        self.stage.addItems(STAGES)
        self.forms = QStackedWidget()
        self.fields: dict[str, dict] = {}
        folder = stored.get("training_folder", "training-runs", self.settings)
        self._add_form("simulate", {
            "n": _spin(1, 10_000_000, 6000), "seed": _spin(0, 2**31 - 1, 1),
            "out": QLineEdit(f"{folder}/train.h5"), "workers": _spin(0, 256, 0)})
        self._add_form("train", {
            "train": QLineEdit(f"{folder}/train.h5"), "val": QLineEdit(f"{folder}/val.h5"),
            "out": QLineEdit(f"{folder}/run1"), "epochs": _spin(1, 1000, 12),
            "batch-size": _spin(1, 4096, 128), "lr": _spin(1e-5, 1.0, 2e-3, True, 1e-4),
            "dropout": _spin(0.0, 0.9, 0.1, True, 0.01), "seed": _spin(0, 2**31 - 1, 1)})
        self._add_form("calibrate", {
            "bundle": QLineEdit(f"{folder}/run1/bundle"), "val": QLineEdit(f"{folder}/val.h5"),
            "n": _spin(10, 1_000_000, 2000), "samples": _spin(10, 10000, 300)})
        self._add_form("evaluate", {
            "bundle": QLineEdit(f"{folder}/run1/bundle"), "test": QLineEdit(f"{folder}/test.h5"),
            "samples": _spin(10, 10000, 500)})
        self.fields["simulate"]["workers"].setSpecialValueText("all cores")
        self.stage.currentIndexChanged.connect(self.forms.setCurrentIndex)

        self.progress_bar = QProgressBar()
        self.progress_label = QLabel("Not started. CUDA is used by the child when present.")
        self.progress_label.setWordWrap(True)
        self.loss_plot = pg.PlotWidget(background="w")
        self.loss_plot.setLabel("bottom", "epoch")
        self.loss_plot.setLabel("left", "loss")
        self.loss_plot.addLegend(offset=(-10, 10))  # top right, clear of falling curves
        self.train_curve = self.loss_plot.plot([], [], pen=pg.mkPen("#1f5fa8", width=2),
                                               symbol="o", symbolSize=5, name="training")
        self.val_curve = self.loss_plot.plot([], [], pen=pg.mkPen("#c0392b", width=2),
                                             symbol="s", symbolSize=5, name="validation")
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(2000)
        self.buttons = RunButtons(self, "Start", "Use the new model")
        self.buttons.result.clicked.connect(lambda: self.bundle_accepted.emit(self.bundle_path))
        top = QFormLayout()
        top.addRow("Stage", self.stage)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.forms)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.progress_label)
        layout.addWidget(self.loss_plot, 1)
        layout.addWidget(self.log, 1)
        layout.addLayout(self.buttons)

    def _add_form(self, stage: str, fields: dict) -> None:
        page = QWidget()
        form = QFormLayout(page)
        for name, widget in fields.items():
            form.addRow(f"--{name}", widget)
        self.forms.addWidget(page)
        self.fields[stage] = fields

    # -- the child process ---------------------------------------------------------------
    def arguments(self) -> list[str]:
        """Arguments after the interpreter: ``-m training --json <stage> --option value ...``."""
        stage = self.stage.currentText()
        args = ["-m", "training", "--json", stage]
        for name, widget in self.fields[stage].items():
            value = widget.text().strip() if isinstance(widget, QLineEdit) else str(widget.value())
            if value:
                args += [f"--{name}", value]
        return args

    def set_field(self, stage: str, name: str, value) -> None:
        """Fill in one option (tests, and callers that know the paths)."""
        self.stage.setCurrentText(stage)
        widget = self.fields[stage][name]
        if isinstance(widget, QLineEdit):
            widget.setText(str(value))
        else:
            widget.setValue(value)

    def start(self) -> None:
        if self.process is not None:
            return
        self.epochs, self.bundle_path, self._buffer, self.cancelled = [], "", "", False
        self.train_curve.setData([], [])
        self.val_curve.setData([], [])
        self.buttons.result.setEnabled(False)
        self.log.clear()
        self.process = QProcess(self)
        self.process.setProgram(sys.executable)
        self.process.setArguments(self.arguments())
        self.process.readyReadStandardOutput.connect(self._read_stdout)
        self.process.readyReadStandardError.connect(self._read_stderr)
        self.process.finished.connect(self._on_finished)
        self.process.errorOccurred.connect(self._on_process_error)
        if hasattr(os, "killpg"):  # own process group, so cancel also stops its pool workers
            self.process.setUnixProcessParameters(QProcess.UnixProcessFlag.CreateNewSession)
        self.log.appendPlainText("$ python " + " ".join(self.arguments()))
        self.progress_bar.setRange(0, 0)
        self.progress_label.setStyleSheet("")
        self.progress_label.setText(f"Running {self.stage.currentText()}…")
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
        elif kind == "epoch":
            self.epochs.append(event)
            x = [e.get("epoch", i + 1) for i, e in enumerate(self.epochs)]
            self.train_curve.setData(x, [e.get("train_loss", float("nan")) for e in self.epochs])
            self.val_curve.setData(x, [e.get("val_loss", float("nan")) for e in self.epochs])
            self.log.appendPlainText(json.dumps(event))
        elif kind == "bundle":
            self.bundle_path = str(event.get("path", ""))
            self.log.appendPlainText(f"bundle written: {self.bundle_path}")
        else:
            self.log.appendPlainText(json.dumps(event))

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
