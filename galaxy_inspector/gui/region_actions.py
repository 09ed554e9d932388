"""DS9 regions in the app: "Load regions…" marks a region file's positions on the image shown and
measures them all; "Export regions…" writes a catalogue's galaxies (``catalogue.regions``).

Loading measures through the batch dialog (``run_batch``, what ``--batch`` runs): the
positions, placed on the image shown (sky regions through its WCS), become the position table
``REGIONS.reg.positions.ecsv`` beside the region file, measured into ``REGIONS.h5`` there, with
the dialog's progress, cancel and "Open in catalogue browser". The marks stay until another
image is shown.
"""

from __future__ import annotations

from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import QObject
from PySide6.QtWidgets import QFileDialog

from galaxy_inspector.catalogue import export_catalogue
from galaxy_inspector.catalogue.regions import (
    REGION_SUFFIX,
    pixel_positions,
    read_positions,
    write_position_table,
)
from galaxy_inspector.errors import user_message
from galaxy_inspector.gui import settings as stored
from galaxy_inspector.gui.file_filters import REGION_FILTER

__all__ = ["RegionActions", "install", "install_browser", "MESSAGE_MS"]

MESSAGE_MS = 15_000
#: Export entries of a browser: (menu text, ``regions.REGION_SHAPES`` name).
EXPORTS = (("Export regions (circles of R_e)…", "circle"),
           ("Export regions (STN crop boxes)…", "box"))


def install(window) -> RegionActions:
    """Give the main window a Regions menu (``MainWindow.regions``)."""
    return RegionActions(window)


def install_browser(browser) -> None:
    """Give a catalogue browser a Regions menu that exports its galaxies."""
    menu = browser.menuBar().addMenu("&Regions")
    for text, shape in EXPORTS:
        menu.addAction(text, lambda s=shape: _ask_export(browser, s))


def _ask_export(browser, shape: str) -> None:
    if not browser.path:
        return
    out, _ = QFileDialog.getSaveFileName(browser, "Export regions",
                                         str(Path(browser.path).with_suffix(REGION_SUFFIX)),
                                         REGION_FILTER)
    if out:
        export_regions(browser, out, shape)


def export_regions(browser, out, shape: str = "circle") -> int:
    """Write the browser's catalogue to the region file ``out``; the outcome is said in the
    browser's status bar. Returns the number of regions (0 on failure)."""
    try:
        n = export_catalogue(browser.path, out, region_shape=shape)
    except Exception as exc:  # a user's file or folder: said, not raised
        browser.statusBar().showMessage(f"Cannot export regions: {user_message(exc)}",
                                        MESSAGE_MS)
        return 0
    browser.statusBar().showMessage(f"{n} regions written to {out}", MESSAGE_MS)
    return n


class RegionActions(QObject):
    """The main window's Regions menu and the marks of the last region file loaded."""

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.marks = pg.ScatterPlotItem(size=12, symbol="o", brush=None,
                                        pen=pg.mkPen("#39ff14", width=2))
        self.marks.setZValue(12)
        window.image_view.view_box.addItem(self.marks)
        window.state.add_callback("path", lambda _path: self.marks.clear())
        menu = window.menuBar().addMenu("&Regions")
        menu.addAction("&Load regions and measure them…", self.ask_load)
        menu.addAction("&Clear region marks", self.marks.clear)

    def ask_load(self) -> None:
        folder = stored.get("last_region_folder", "", self.window.settings)
        path, _ = QFileDialog.getOpenFileName(self.window, "Load regions", folder, REGION_FILTER)
        if path:
            self.window.settings.setValue("last_region_folder", str(Path(path).parent))
            self.load(path)

    def load(self, path):
        """Mark the regions of ``path`` on the image shown and start measuring them all;
        returns the batch dialog, or None (the reason in the status bar)."""
        image = self.window.state.image
        if image is None:
            self._say("open the image the regions belong to first")
            return None
        try:
            placed, reasons = pixel_positions(read_positions(path), image)
            if placed:
                table = Path(f"{path}.positions.ecsv")
                write_position_table(placed, Path(self.window.state.path).resolve(), table)
        except Exception as exc:  # a user's file: said, not raised
            self._say(f"cannot load regions: {user_message(exc)}")
            return None
        if not placed:
            self._say(f"no region of {Path(path).name} can be placed: {reasons[0]}")
            return None
        self.marks.setData([x for _, x, _ in placed], [y for _, _, y in placed])
        dialog = self.window.open_batch_dialog()
        dialog.add_inputs([str(table)])
        # The plane shown, as a click measures it (not the file's first plane).
        dialog.image_plane = (image.hdu if image.hdu >= 0 else None, image.plane)
        # Not REGIONS.h5: a region file exported from CAT.h5 is CAT.reg, and the catalogue
        # it came from must not be the one these measurements go to.
        out = Path(f"{path}.measured.h5")
        dialog.output_edit.setText(str(out))
        dialog.start()
        skipped = f"; {len(reasons)} left out ({reasons[0]})" if reasons else ""
        self._say(f"{len(placed)} regions of {Path(path).name} marked, measuring them on plane "
                  f"{image.plane} into {out.name}{skipped}")
        return dialog

    def _say(self, text: str) -> None:
        self.window.statusBar().showMessage(f"Regions: {text}", MESSAGE_MS)
