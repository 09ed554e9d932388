"""SAMP in the app: the main window's SAMP menu, and catalogue browsers that follow TOPCAT.

``SampBridge`` owns the Qt-free ``interop.samp.SampClient``. Every exchange with the hub runs
in a ``Worker`` on the bridge's own one-thread pool (in order, and never holding a thread the
measurements need); what the client receives arrives on its server thread and is handed to the
GUI thread by signals. Outcomes and failures (no hub, hub gone, a client refusing or silent)
are status-bar messages of the window they concern.

Received ``coord.pointAt.sky`` measures the galaxy there in the image shown, through
``MainWindow.analyse_at`` (what a click calls); ``table.highlight.row`` and
``table.select.rowList`` of a catalogue sent from here select those rows in its browser, and a
row chosen in the browser is highlighted in the other tools (several rows: selected).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QEvent, QItemSelection, QItemSelectionModel, QObject, QThreadPool, Signal
from PySide6.QtWidgets import QAbstractItemView, QFileDialog

from galaxy_inspector.catalogue.regions import image_pixel
from galaxy_inspector.errors import user_message
from galaxy_inspector.gui import settings as stored
from galaxy_inspector.gui.file_filters import CATALOGUE_FILTER
from galaxy_inspector.gui.workers import Worker
from galaxy_inspector.interop.samp import SampClient, delivery_line

__all__ = ["SampBridge", "install", "MESSAGE_MS"]

#: How long a SAMP message stays in the status bar.
MESSAGE_MS = 15_000


def install(window) -> SampBridge:
    """Give the main window a SAMP menu and a bridge (``MainWindow.samp``)."""
    return SampBridge(window)


class SampBridge(QObject):
    """The app's SAMP connection, for ``window`` and the catalogue browsers it follows."""

    pointed_at = Signal(float, float, str)  # ra, dec (deg), sender: from the client's thread
    row_highlighted = Signal(str, int)  # catalogue, row
    rows_selected = Signal(str, object)  # catalogue, rows
    hub_gone = Signal(str)

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.client = SampClient(
            on_point_at=lambda c, sender: self.pointed_at.emit(c.ra.deg, c.dec.deg, sender),
            on_highlight=self.row_highlighted.emit, on_select=self.rows_selected.emit,
            on_hub_gone=self.hub_gone.emit)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(1)  # one exchange at a time, in the order asked
        self.browsers = []
        self._applying = False  # selecting rows another tool chose: not sent back to it
        self._workers = set()
        self.pointed_at.connect(self._measure_at)
        self.row_highlighted.connect(lambda c, row: self._select(c, [row]))
        self.rows_selected.connect(self._select)
        self.hub_gone.connect(self.say)
        window.installEventFilter(self)
        menu = window.menuBar().addMenu("&SAMP")
        self.connect_action = menu.addAction("&Connect to the SAMP hub", self.connect_hub)
        self.disconnect_action = menu.addAction("&Disconnect", self.disconnect_hub)
        menu.addSeparator()
        self.send_image_action = menu.addAction("Send &image to SAMP", self.send_image)
        menu.addAction("Send &catalogue to SAMP…", self.ask_send_catalogue)
        menu.aboutToShow.connect(self.update_actions)

    # -- running exchanges ---------------------------------------------------------------
    def _run(self, func, *args, done=None, where=None) -> Worker:
        """``func(*args)`` on the bridge's thread; ``done(result)`` back on the GUI thread,
        and a failure said in ``where``'s status bar (the window by default)."""
        worker = Worker(func, *args)
        if done is not None:
            worker.signals.returned.connect(done)
        worker.signals.errored.connect(
            lambda exc: self.say(user_message(exc), where))
        worker.signals.finished.connect(lambda: self._workers.discard(worker))
        self._workers.add(worker)
        self.pool.start(worker)
        return worker

    def say(self, text: str, where=None) -> None:
        (where or self.window).statusBar().showMessage(f"SAMP: {text}", MESSAGE_MS)

    def eventFilter(self, watched, event):  # noqa: N802 (Qt naming)
        if watched is self.window and event.type() == QEvent.Type.Close:
            self.shutdown()
        return False

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Finish the exchanges under way and leave the hub (the window closes)."""
        self.pool.waitForDone(int(timeout_s * 1000))
        self.client.disconnect()

    def update_actions(self) -> None:
        connected = self.client.connected
        self.connect_action.setEnabled(not connected)
        self.disconnect_action.setEnabled(connected)
        self.send_image_action.setEnabled(self.window.state.image is not None)

    # -- actions -------------------------------------------------------------------------
    def connect_hub(self) -> Worker:
        return self._run(self.client.connect,
                         done=lambda _: self.say("connected to the hub: positions sent from "
                                                 "DS9 or Aladin are measured here"))

    def disconnect_hub(self) -> Worker:
        return self._run(self.client.disconnect, done=lambda _: self.say("disconnected"))

    def send_image(self) -> Worker | None:
        image = self.window.state.image
        if image is None:
            self.say("open an image first")
            return None
        name = Path(image.source).name
        return self._run(self.client.send_image, image,
                         done=lambda d: self.say(delivery_line(name, d)))

    def ask_send_catalogue(self) -> None:
        folder = stored.get("last_catalogue_folder", "", self.window.settings)
        path, _ = QFileDialog.getOpenFileName(self.window, "Send catalogue to SAMP", folder,
                                              CATALOGUE_FILTER)
        if path:
            self.send_catalogue(path)

    def send_catalogue(self, path, where=None) -> Worker:
        """Send the catalogue; its browsers' rows then follow the other tools' and back."""
        name = Path(path).name
        return self._run(self.client.send_catalogue, path, where=where,
                         done=lambda d: self.say(delivery_line(name, d), where))

    # -- catalogue browsers --------------------------------------------------------------
    def follow(self, browser) -> None:
        """Add a SAMP menu to a catalogue browser and keep its row selection in step with
        the other tools (ctrl/shift-click selects several rows)."""
        menu = browser.menuBar().addMenu("&SAMP")
        menu.addAction("Send this &catalogue to SAMP",
                       lambda: self.send_catalogue(browser.path, where=browser))
        browser.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        browser.view.selectionModel().selectionChanged.connect(
            lambda *_: self._send_selection(browser))
        self.browsers.append(browser)
        browser.destroyed.connect(lambda *_: self.browsers.remove(browser)
                                  if browser in self.browsers else None)

    def _browsers_of(self, catalogue: str) -> list:
        resolved = Path(catalogue).resolve()
        return [b for b in self.browsers if b.path and Path(b.path).resolve() == resolved]

    def _send_selection(self, browser) -> None:
        if self._applying or not self.client.is_sent(browser.path):
            return
        rows = sorted(browser.proxy.mapToSource(i).row()
                      for i in browser.view.selectionModel().selectedRows())
        if len(rows) == 1:
            self._run(self.client.highlight_row, browser.path, rows[0], where=browser)
        elif rows:
            self._run(self.client.select_rows, browser.path, rows, where=browser)

    def _select(self, catalogue: str, rows) -> None:
        """Select ``rows`` (file order) of the catalogue in its browsers, as another tool did."""
        for browser in self._browsers_of(catalogue):
            source = browser.proxy.sourceModel()
            selection = QItemSelection()
            for row in rows:
                index = browser.proxy.mapFromSource(source.index(row, 0))
                if index.isValid():  # a row the filter hides stays unselected
                    selection.select(index, index)
            flags = (QItemSelectionModel.SelectionFlag.ClearAndSelect
                     | QItemSelectionModel.SelectionFlag.Rows)
            self._applying = True
            try:
                browser.view.selectionModel().select(selection, flags)
            finally:
                self._applying = False
            if not selection.isEmpty():
                browser.view.scrollTo(selection.indexes()[0])
            shown = ", ".join(str(r) for r in rows[:5]) + ("…" if len(rows) > 5 else "")
            self.say(f"row{'s' if len(rows) > 1 else ''} {shown} selected in another tool",
                     browser)

    # -- positions -----------------------------------------------------------------------
    def _measure_at(self, ra: float, dec: float, sender: str) -> None:
        """Measure the galaxy at the sky position another tool pointed at, as a click does."""
        where = f"RA={ra:.6f}° Dec={dec:+.6f}°"
        image = self.window.state.image
        if image is None:
            self.say(f"{sender} pointed at {where}; open an image to measure there")
            return
        if image.wcs is None:
            self.say(f"{sender} pointed at {where}, but {Path(image.source).name} has no WCS")
            return
        x, y = image_pixel(image, ra, dec)
        ny, nx = image.shape
        if not (-0.5 <= x < nx - 0.5 and -0.5 <= y < ny - 0.5):
            self.say(f"{sender} pointed at {where}, outside {Path(image.source).name}")
            return
        self.window.analyse_at(x, y)
        self.say(f"{sender} pointed at {where}: measuring the galaxy there")
