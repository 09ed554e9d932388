"""Choosing the active model: a shipped bundle or any bundle folder, with its card and report."""

from __future__ import annotations

import html
import json
from pathlib import Path

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from galaxy_inspector.errors import BundleError
from galaxy_inspector.models.bundle import load_bundle, shipped_bundles

__all__ = ["ModelDialog", "card_html"]

PATH_ROLE = 256  # Qt.UserRole


def _json_block(value) -> str:
    return f"<pre>{html.escape(json.dumps(value, indent=1))}</pre>"


def card_html(card: dict) -> str:
    """The model card as readable HTML: what the model expects, predicts and how well."""
    parts = [f"<h2>{html.escape(card.get('name', '?'))}</h2>",
             f"<p>{html.escape(card.get('description', ''))}</p>"]
    inp = card.get("input", {})
    parts.append("<h3>Input contract</h3><ul>"
                 f"<li>bands: {html.escape(', '.join(inp.get('bands', [])))}</li>"
                 f"<li>kind: {html.escape(str(inp.get('kind', '')))} "
                 f"({html.escape(str(inp.get('unit', '')))})</li>"
                 f"<li>pixel scale: {inp.get('pixel_scale_arcsec')}″/px, "
                 f"stamp {inp.get('stamp_size')}×{inp.get('stamp_size')} px</li></ul>")
    rows = "".join(f"<tr><td>{html.escape(o['name'])}</td><td>{html.escape(o.get('unit', ''))}"
                   f"</td><td>{html.escape(o.get('description', ''))}</td></tr>"
                   for o in card.get("outputs", []))
    parts.append("<h3>Outputs</h3><table border=1 cellpadding=3>"
                 f"<tr><th>name</th><th>unit</th><th>meaning</th></tr>{rows}</table>")
    for key, title in (("posterior", "Posterior settings"), ("calibration", "Calibration"),
                       ("test", "Test figures"), ("training_ranges", "Training ranges"),
                       ("training", "Training")):
        if key in card:
            parts.append(f"<h3>{title}</h3>{_json_block(card[key])}")
    sha = card.get("weights", {}).get("sha256", "")
    parts.append(f"<p><small>architecture {html.escape(card.get('architecture', ''))}; "
                 f"weights SHA-256 {html.escape(sha)}</small></p>")
    return "".join(parts)


class ModelDialog(QDialog):
    """Lists shipped bundles and any folder the user adds; ``chosen`` is the selected bundle."""

    def __init__(self, current: str = "", parent=None):
        super().__init__(parent)
        self.setWindowTitle("Choose model")
        self.resize(900, 600)
        self.chosen = current
        self.bundles = QListWidget()
        for name, path in shipped_bundles().items():
            self._add(f"{name} (shipped)", str(path) if name != current else name)
        if current and not any(self.bundles.item(i).data(PATH_ROLE) == current
                               for i in range(self.bundles.count())):
            self._add(current, current)
        self.card_view = QTextBrowser()
        self.error = QLabel()
        self.error.setStyleSheet("color: #b00020")
        self.error.setWordWrap(True)
        browse = QPushButton("Open bundle folder…")
        browse.clicked.connect(self._browse)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.ok_button = buttons.button(QDialogButtonBox.StandardButton.Ok)
        left = QVBoxLayout()
        left.addWidget(QLabel("Bundles"))
        left.addWidget(self.bundles)
        left.addWidget(browse)
        left_widget = QWidget()
        left_widget.setLayout(left)
        splitter = QSplitter()
        splitter.addWidget(left_widget)
        splitter.addWidget(self.card_view)
        splitter.setSizes([250, 650])
        bottom = QHBoxLayout()
        bottom.addWidget(self.error, 1)
        bottom.addWidget(buttons)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter, 1)
        layout.addLayout(bottom)
        self.bundles.currentItemChanged.connect(self._on_selected)
        self._select(current)

    def _add(self, text: str, path: str) -> QListWidgetItem:
        item = QListWidgetItem(text)
        item.setData(PATH_ROLE, path)
        self.bundles.addItem(item)
        return item

    def _select(self, path: str) -> None:
        for i in range(self.bundles.count()):
            if self.bundles.item(i).data(PATH_ROLE) == path or i == 0 and not path:
                self.bundles.setCurrentRow(i)
                return
        if self.bundles.count():
            self.bundles.setCurrentRow(0)

    def add_bundle(self, folder: str) -> None:
        """Add a bundle folder from disk to the list and select it."""
        item = self._add(f"{Path(folder).name} ({folder})", folder)
        self.bundles.setCurrentItem(item)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open model bundle folder")
        if folder:
            self.add_bundle(folder)

    def _on_selected(self, item, _previous=None) -> None:
        if item is None:
            return
        path = item.data(PATH_ROLE)
        try:
            bundle = load_bundle(path)
        except BundleError as exc:
            self.error.setText(str(exc))
            self.card_view.clear()
            self.ok_button.setEnabled(False)
            return
        self.error.setText("")
        self.ok_button.setEnabled(True)
        self.chosen = path
        text = card_html(bundle.card)
        report = bundle.report_path()
        if report is not None:
            self.card_view.setSearchPaths([str(report.parent)])
            text += "<hr><h2>Evaluation report</h2>" + _markdown_html(report.read_text())
        self.card_view.setHtml(text)


def _markdown_html(markdown: str) -> str:
    """Markdown to HTML through Qt's own converter (no extra dependency)."""
    from PySide6.QtGui import QTextDocument

    doc = QTextDocument()
    doc.setMarkdown(markdown)
    return doc.toHtml()
