"""Choosing the models: the one active morphology model and any number of physical-property
models (shipped bundles or bundle folders), each with its card and report."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QBrush, QColor, QTextCursor, QTextDocument
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from galaxy_inspector.errors import BundleError
from galaxy_inspector.models.bundle import load_bundle, shipped_bundles
from galaxy_inspector.viewer.model_cards import (
    DEMO_COLOUR,
    DEMO_LABEL,
    card_html,
    card_json,
    is_demo_card,
    read_card,
)

__all__ = ["ModelDialog", "FittedImageBrowser"]

PATH_ROLE = 256  # Qt.UserRole
DETAILS_SHOW = "Show the model card (JSON)"
DETAILS_HIDE = "Hide the model card"


class FittedImageBrowser(QTextBrowser):
    """A text browser whose images are scaled down to its width (never up), again whenever it
    is resized: a report's plots are wider than a dialog."""

    def setHtml(self, text: str) -> None:  # noqa: N802 (Qt naming)
        super().setHtml(text)
        self.fit_images()

    def resizeEvent(self, event):  # noqa: N802 (Qt naming)
        super().resizeEvent(event)
        self.fit_images()

    def image_formats(self):
        """``(position, QTextImageFormat)`` of every image in the document."""
        out = []
        block = self.document().begin()
        while block.isValid():
            it = block.begin()
            while not it.atEnd():
                fragment = it.fragment()
                if fragment.charFormat().isImageFormat():
                    out.append((fragment.position(), fragment.charFormat().toImageFormat()))
                it += 1
            block = block.next()
        return out

    def fit_images(self) -> None:
        doc = self.document()
        room = self.viewport().width() - 2 * doc.documentMargin() - 4
        cursor = QTextCursor(doc)
        for position, image in self.image_formats():
            natural = doc.resource(QTextDocument.ResourceType.ImageResource, QUrl(image.name()))
            if natural is None or natural.width() <= 0:
                continue
            scale = min(1.0, max(room, 50) / natural.width())
            image.setWidth(natural.width() * scale)
            image.setHeight(natural.height() * scale)
            cursor.setPosition(position)
            cursor.setPosition(position + 1, QTextCursor.MoveMode.KeepAnchor)
            cursor.setCharFormat(image)


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
        self.card_view = FittedImageBrowser()
        self.card_view.setOpenExternalLinks(True)
        self.details = QPlainTextEdit()
        self.details.setReadOnly(True)
        self.details.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.details.hide()
        self.details_button = QPushButton(DETAILS_SHOW)
        self.details_button.setCheckable(True)
        self.details_button.setToolTip("Every field of the bundle's card.json, as stored")
        self.details_button.toggled.connect(self._show_details)
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
        card_side = QSplitter(Qt.Orientation.Vertical)
        card_side.addWidget(self.card_view)
        card_side.addWidget(self.details)
        card_side.setChildrenCollapsible(False)
        right = QVBoxLayout()
        right.setContentsMargins(0, 0, 0, 0)
        right.addWidget(card_side, 1)
        right.addWidget(self.details_button, 0, Qt.AlignmentFlag.AlignLeft)
        right_widget = QWidget()
        right_widget.setLayout(right)
        splitter = QSplitter()
        splitter.addWidget(left_widget)
        splitter.addWidget(right_widget)
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

    def _show_details(self, shown: bool) -> None:
        self.details.setVisible(shown)
        self.details_button.setText(DETAILS_HIDE if shown else DETAILS_SHOW)

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
            self.details.clear()
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
            text += "<hr>" + _markdown_html(report.read_text())
        self.card_view.setHtml(text)
        self.details.setPlainText(card_json(bundle.card))


def _markdown_html(markdown: str) -> str:
    """Markdown to HTML through Qt's own converter (no extra dependency)."""
    from PySide6.QtGui import QTextDocument

    doc = QTextDocument()
    doc.setMarkdown(markdown)
    return doc.toHtml()
