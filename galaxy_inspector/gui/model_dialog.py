"""Choosing the models: the one active morphology model and any number of physical-property
models (shipped bundles or bundle folders), each with its card and report."""

from __future__ import annotations

import html
import json
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
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
from galaxy_inspector.models.bundle import (
    CARD_NAME,
    load_bundle,
    resolve_bundle_path,
    shipped_bundles,
)

__all__ = ["ModelDialog", "card_html", "read_card", "is_demo_card", "bundle_display_name",
           "known_property_bundles", "DEMO_LABEL", "DEMO_COLOUR"]

PATH_ROLE = 256  # Qt.UserRole
#: How a demo bundle (card ``demo`` or ``synthetic_training_data``) is labelled everywhere.
DEMO_LABEL = "demo — trained on a simulated survey"
DEMO_COLOUR = "#b35900"
DEMO_EXPLANATION = ("its training labels are synthetic, so its numbers demonstrate the method "
                    "and are not measurements of real galaxies")


def read_card(path_or_name) -> dict | None:
    """The model card of a bundle (folder or shipped name) without reading its weights, or
    None when there is no readable card (``load_bundle`` then says why)."""
    try:
        folder = resolve_bundle_path(path_or_name)
        card = json.loads((folder / CARD_NAME).read_text())
    except (BundleError, OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return card if isinstance(card, dict) else None


def is_demo_card(card: dict | None) -> bool:
    """Whether a card says its bundle is a demonstration trained on synthetic labels."""
    return bool(card) and bool(card.get("demo") or card.get("synthetic_training_data"))


def bundle_display_name(path_or_name) -> str:
    """A bundle's name for menus and labels, with the demo label when it is one."""
    card = read_card(path_or_name)
    name = (card or {}).get("name") or Path(str(path_or_name)).name
    return f"{name} ({DEMO_LABEL})" if is_demo_card(card) else str(name)


def known_property_bundles(active=()) -> list[tuple[str, str]]:
    """``(shipped name or folder, label)`` of the shipped property bundles and of the active
    ones that are not shipped, for menus."""
    out = []
    for name, path in shipped_bundles().items():
        card = read_card(path)
        if card is not None and card.get("task") == "properties":
            out.append((name, f"{bundle_display_name(path)} (shipped)"))
    known = {p for p, _ in out}
    for path in active:
        if path not in known:
            out.append((path, f"{bundle_display_name(path)} (folder {path})"))
    return out


def _json_block(value) -> str:
    return f"<pre>{html.escape(json.dumps(value, indent=1))}</pre>"


def card_html(card: dict) -> str:
    """The model card as readable HTML: what the model expects, predicts and how well."""
    parts = [f"<h2>{html.escape(card.get('name', '?'))}</h2>"]
    if is_demo_card(card):
        parts.append(f"<p style='color:{DEMO_COLOUR}'><b>⚠ {DEMO_LABEL}</b>: "
                     f"{DEMO_EXPLANATION}.</p>")
    parts.append(f"<p>{html.escape(card.get('description', ''))}</p>")
    inp = card.get("input", {})
    task = card.get("task", "")
    items = [f"<li>task: {html.escape(str(task))}"
             + (f", method {html.escape(str(card['method']))}" if card.get("method") else "")
             + "</li>",
             f"<li>bands: {html.escape(', '.join(inp.get('bands', [])))}</li>",
             f"<li>kind: {html.escape(str(inp.get('kind', '')))} "
             f"({html.escape(str(inp.get('unit', '')))})</li>",
             f"<li>pixel scale: {inp.get('pixel_scale_arcsec')}″/px, "
             f"stamp {inp.get('stamp_size')}×{inp.get('stamp_size')} px</li>"]
    if task == "properties":
        items.append("<li>needs a redshift per galaxy: "
                     f"{'yes' if inp.get('needs_redshift') else 'no'}</li>")
        if inp.get("photometry"):
            items.append("<li>needs catalogue photometry: "
                         f"{html.escape(', '.join(inp['photometry']))}</li>")
    parts.append(f"<h3>Input contract</h3><ul>{''.join(items)}</ul>")
    rows = "".join(f"<tr><td>{html.escape(o['name'])}</td><td>{html.escape(o.get('unit', ''))}"
                   f"</td><td>{html.escape(o.get('description', ''))}</td></tr>"
                   for o in card.get("outputs", []))
    parts.append("<h3>Outputs</h3><table border=1 cellpadding=3>"
                 f"<tr><th>name</th><th>unit</th><th>meaning</th></tr>{rows}</table>")
    for key, title in (("posterior", "Posterior settings"), ("uncertainty", "Uncertainty"),
                       ("calibration", "Calibration"), ("test", "Test figures"),
                       ("training_ranges", "Training ranges"), ("training", "Training")):
        if key in card:
            parts.append(f"<h3>{title}</h3>{_json_block(card[key])}")
    sha = card.get("weights", {}).get("sha256", "")
    parts.append(f"<p><small>architecture {html.escape(card.get('architecture', ''))}; "
                 f"weights SHA-256 {html.escape(sha)}</small></p>")
    return "".join(parts)


class ModelDialog(QDialog):
    """Lists shipped bundles and any folder the user adds.

    ``chosen`` is the selected morphology bundle (one), ``chosen_properties`` the checked
    physical-property bundles (shipped names or folders), read when the dialog is accepted.
    """

    def __init__(self, current: str = "", parent=None, properties=()):
        super().__init__(parent)
        self.setWindowTitle("Choose models")
        self.resize(1000, 640)
        self.chosen = current
        self.chosen_properties = list(properties)
        self._morphology_ok = True
        self.bundles = QListWidget()
        self.property_list = QListWidget()
        for name, path in shipped_bundles().items():
            card = read_card(path)
            if card is not None and card.get("task") == "properties":
                self._add_property(name, card, "shipped", name in properties)
            else:
                self._add(f"{name} (shipped)", str(path) if name != current else name)
        if current and not any(self.bundles.item(i).data(PATH_ROLE) == current
                               for i in range(self.bundles.count())):
            self._add(current, current)
        for path in properties:
            if not self._property_item(path):
                self._add_property(path, read_card(path), path, True)
        self.card_view = QTextBrowser()
        self.error = QLabel()
        self.error.setStyleSheet("color: #b00020")
        self.error.setWordWrap(True)
        browse = QPushButton("Open bundle folder…")
        browse.setToolTip("Add a morphology or physical-property bundle folder (its card says "
                          "which)")
        browse.clicked.connect(self._browse)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.ok_button = buttons.button(QDialogButtonBox.StandardButton.Ok)
        left = QVBoxLayout()
        left.addWidget(QLabel("<b>Morphology model</b> (one)"))
        left.addWidget(self.bundles, 1)
        left.addWidget(QLabel("<b>Physical-property models</b> (tick any number)"))
        left.addWidget(self.property_list, 1)
        left.addWidget(browse)
        left_widget = QWidget()
        left_widget.setLayout(left)
        splitter = QSplitter()
        splitter.addWidget(left_widget)
        splitter.addWidget(self.card_view)
        splitter.setSizes([340, 660])
        bottom = QHBoxLayout()
        bottom.addWidget(self.error, 1)
        bottom.addWidget(buttons)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter, 1)
        layout.addLayout(bottom)
        for view in (self.bundles, self.property_list):
            view.currentItemChanged.connect(self._on_selected)
            view.itemClicked.connect(self._on_clicked)
        self._select(current)

    def _add(self, text: str, path: str) -> QListWidgetItem:
        item = QListWidgetItem(text)
        item.setData(PATH_ROLE, path)
        self.bundles.addItem(item)
        return item

    def _add_property(self, path: str, card: dict | None, where: str,
                      checked: bool) -> QListWidgetItem:
        name = (card or {}).get("name") or Path(path).name
        text = f"{name} ({where})" if where != path else f"{name} (folder)"
        item = QListWidgetItem(text)
        if is_demo_card(card):
            item.setText(f"{text}\n    ⚠ {DEMO_LABEL}")
            item.setForeground(QBrush(QColor(DEMO_COLOUR)))
        item.setToolTip("\n".join(t for t in (str(path), (card or {}).get("description", ""))
                                   if t))
        item.setData(PATH_ROLE, path)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
        self.property_list.addItem(item)
        return item

    def _property_item(self, path: str) -> QListWidgetItem | None:
        for i in range(self.property_list.count()):
            if self.property_list.item(i).data(PATH_ROLE) == path:
                return self.property_list.item(i)
        return None

    def set_property_checked(self, path: str, checked: bool) -> None:
        """Tick or untick a property bundle in the list (as a user click would)."""
        item = self._property_item(path)
        if item is None:
            raise KeyError(path)
        item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)

    def checked_properties(self) -> list[str]:
        return [self.property_list.item(i).data(PATH_ROLE)
                for i in range(self.property_list.count())
                if self.property_list.item(i).checkState() == Qt.CheckState.Checked]

    def accept(self) -> None:
        self.chosen_properties = self.checked_properties()
        super().accept()

    def _select(self, path: str) -> None:
        for i in range(self.bundles.count()):
            if self.bundles.item(i).data(PATH_ROLE) == path or i == 0 and not path:
                self.bundles.setCurrentRow(i)
                return
        if self.bundles.count():
            self.bundles.setCurrentRow(0)

    def add_bundle(self, folder: str) -> None:
        """Add a bundle folder from disk and select it: a property bundle goes to the property
        list, ticked; anything else to the morphology list."""
        card = read_card(folder)
        if card is not None and card.get("task") == "properties":
            item = self._property_item(folder) or self._add_property(folder, card, folder, True)
            item.setCheckState(Qt.CheckState.Checked)
            self.property_list.setCurrentItem(item)
            self._on_selected(item)
            return
        item = self._add(f"{Path(folder).name} ({folder})", folder)
        self.bundles.setCurrentItem(item)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open model bundle folder")
        if folder:
            self.add_bundle(folder)

    def _on_clicked(self, item) -> None:
        """Show the card of a clicked bundle even when it already was its list's current."""
        if item is not None and item.listWidget().currentItem() is item:
            self._on_selected(item)

    def _on_selected(self, item, _previous=None) -> None:
        if item is None:
            return
        is_property = item.listWidget() is self.property_list
        path = item.data(PATH_ROLE)
        try:
            bundle = load_bundle(path)
        except BundleError as exc:
            self.error.setText(str(exc))
            self.card_view.clear()
            if is_property:  # a broken property bundle cannot be switched on
                item.setCheckState(Qt.CheckState.Unchecked)
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsUserCheckable)
            else:
                self._morphology_ok = False
            self.ok_button.setEnabled(self._morphology_ok)
            return
        self.error.setText("")
        if not is_property:
            self._morphology_ok = True
            self.chosen = path
        self.ok_button.setEnabled(self._morphology_ok)
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
