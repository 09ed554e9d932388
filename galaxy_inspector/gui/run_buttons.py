"""The button row of a dialog that runs one job at a time (the batch and training dialogs)."""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QPushButton

__all__ = ["RunButtons"]


class RunButtons(QHBoxLayout):
    """Start and Cancel, then the job's result action and Close, right-aligned.

    ``start`` calls ``dialog.start``, ``cancel`` ``dialog.cancel``; ``set_running`` enables
    exactly one of them. ``result`` (what to do with the job's output) starts disabled and
    its owner enables and connects it.
    """

    def __init__(self, dialog, start_text: str, result_text: str):
        super().__init__()
        self.start = QPushButton(start_text)
        self.cancel = QPushButton("Cancel")
        self.result = QPushButton(result_text)
        self.result.setEnabled(False)
        close = QPushButton("Close")
        self.start.clicked.connect(dialog.start)
        self.cancel.clicked.connect(dialog.cancel)
        close.clicked.connect(dialog.close)
        for button in (self.start, self.cancel):
            self.addWidget(button)
        self.addStretch(1)
        for button in (self.result, close):
            self.addWidget(button)
        self.set_running(False)

    def set_running(self, running: bool) -> None:
        self.start.setEnabled(not running)
        self.cancel.setEnabled(running)
