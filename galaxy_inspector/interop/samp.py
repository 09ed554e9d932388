"""A SAMP client (``astropy.samp``, the IVOA's Simple Application Messaging Protocol): what the
GUI and ``galaxy-inspector --export CAT.h5 --samp`` use to talk to TOPCAT, DS9 and Aladin.

Messages sent
    ``table.load.votable``: a catalogue, written by ``catalogue.export.write_table`` (units,
    descriptions, models and flag meanings as the VOTable export has them). ``image.load.fits``:
    the image plane shown. ``table.highlight.row`` and ``table.select.rowList``: rows of a table
    sent before, counted from 0 in file order as TOPCAT counts them.
Messages received
    ``coord.pointAt.sky`` (``on_point_at(SkyCoord, sender)``), ``table.highlight.row`` and
    ``table.select.rowList`` for a table sent from here (``on_highlight(catalogue, row)``,
    ``on_select(catalogue, rows)``), the hub's shutdown (``on_hub_gone(message)``). Callbacks
    run on the client's server thread: a GUI hands them to its own thread.

Every exchange is bounded in time: ``HUB_TIMEOUT_S`` for the hub (a hub that has frozen
cannot hang the caller) and ``reply_timeout`` for a receiving client, which is asked with a
call and waited for, so a table is known to be loaded (or refused, or unanswered) when
``send_catalogue`` returns. No hub, a hub gone mid-session and a message nobody takes are a
``SampUnavailable`` with one line that says what to do; a client that refuses or does not
answer is a ``Delivery`` that says so.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import threading
import warnings
import xmlrpc.client
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass
from pathlib import Path

from galaxy_inspector.errors import GalaxyInspectorError, InputError, first_line, user_message

__all__ = ["SampClient", "SampUnavailable", "Delivery", "delivery_line", "send_catalogue_to_hub",
           "HUB_TIMEOUT_S", "REPLY_TIMEOUT_S"]

#: Longest wait for the hub itself (connecting, registering, relaying a notification).
HUB_TIMEOUT_S = 5.0
#: Longest wait for a receiving client to load a table or an image and reply.
REPLY_TIMEOUT_S = 30
APP_NAME = "Galaxy Inspector"
NO_HUB = ("no SAMP hub is running: start TOPCAT, Aladin or DS9 (each runs one) or the samp_hub "
          "command, then try again")
HUB_GONE = "the SAMP hub has gone; start one (TOPCAT, Aladin, DS9 or samp_hub) and connect again"
RECEIVED = ("coord.pointAt.sky", "table.highlight.row", "table.select.rowList")
HUB_EVENTS = ("samp.hub.event.shutdown", "samp.hub.disconnect")


class SampUnavailable(GalaxyInspectorError):
    """The SAMP hub cannot be reached, or no client there takes the message."""


@dataclass(frozen=True)
class Delivery:
    """What one receiving client did with a message: ``accepted``, with its warning or the
    reason it refused or stayed silent in ``note``."""

    client: str
    accepted: bool
    note: str = ""


def delivery_line(what: str, deliveries) -> str:
    """'cat.h5 sent to TOPCAT, DS9; Aladin: did not answer within 30 s' (one line)."""
    taken = [d.client + (f" ({d.note})" if d.note else "") for d in deliveries if d.accepted]
    refused = [f"{d.client}: {d.note}" for d in deliveries if not d.accepted]
    parts = [f"{what} sent to {', '.join(taken)}" if taken else f"{what} was not taken"]
    return "; ".join(parts + refused)


def send_catalogue_to_hub(path, reply_timeout: float = REPLY_TIMEOUT_S) -> list[Delivery]:
    """Connect, send the catalogue ``path`` to every client that loads tables, wait for their
    replies and disconnect (``galaxy-inspector --export CAT.h5 --samp``)."""
    with SampClient(reply_timeout=reply_timeout) as client:
        return client.send_catalogue(path)


def _samp():
    """``astropy.samp``, whose import warns that pyvo.samp (not installed here, same API) will
    replace it: the warning is the library's plan, not something a user can act on."""
    from astropy.utils.exceptions import AstropyDeprecationWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyDeprecationWarning)
        from astropy import samp
    return samp


def _as_unavailable(exc: BaseException) -> BaseException:
    """A one-line ``SampUnavailable`` for what the hub connection raised (anything else, a bug,
    is given back as it is)."""
    samp = _samp()
    if isinstance(exc, SampUnavailable):
        return exc
    if isinstance(exc, OSError):  # refused, reset: the hub's process is gone
        return SampUnavailable(HUB_GONE)
    if not isinstance(exc, (xmlrpc.client.Fault, samp.SAMPHubError, samp.SAMPClientError)):
        return exc
    text = exc.faultString if isinstance(exc, xmlrpc.client.Fault) else first_line(exc)
    if "Unable to find a running SAMP Hub" in text:
        return SampUnavailable(NO_HUB)
    if "expired or invalid" in text:  # the hub restarted and forgot this client
        return SampUnavailable(HUB_GONE)
    return SampUnavailable(f"the SAMP hub refused: {first_line(Exception(text))}")


def _within(seconds: float, what: str, func, *args):
    """``func(*args)`` on a daemon thread, given up after ``seconds``: astropy's XML-RPC has no
    timeout, and a frozen hub must not freeze the caller."""
    outcome = {}

    def run():
        try:
            outcome["value"] = func(*args)
        except BaseException as exc:  # handed to the caller below
            outcome["error"] = exc

    thread = threading.Thread(target=run, name=f"samp: {what}", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise SampUnavailable(f"the SAMP hub did not answer within {seconds:g} s ({what}); "
                              "is it frozen? restart it and connect again")
    if "error" in outcome:
        error = _as_unavailable(outcome["error"])
        if error is outcome["error"]:
            raise error
        raise error from None
    return outcome.get("value")


class SampClient:
    """Galaxy Inspector as a SAMP client: connect, send, follow rows, receive positions.

    Parameters
    ----------
    on_point_at, on_highlight, on_select, on_hub_gone : callable, optional
        Called on the client's server thread (see the module docstring).
    hub_timeout : float
        Seconds to wait for the hub.
    reply_timeout : float
        Seconds a receiving client has to load what was sent and reply (whole seconds).
    """

    def __init__(self, *, on_point_at=None, on_highlight=None, on_select=None,
                 on_hub_gone=None, hub_timeout: float = HUB_TIMEOUT_S,
                 reply_timeout: float = REPLY_TIMEOUT_S):
        self.on_point_at, self.on_highlight = on_point_at, on_highlight
        self.on_select, self.on_hub_gone = on_select, on_hub_gone
        self.hub_timeout = hub_timeout
        self.reply_timeout = max(1, int(reply_timeout))
        self._client = None
        self._gone = False
        self._folder: Path | None = None  # the files sent, kept until disconnect
        self._sent: dict[str, tuple[str, str]] = {}  # table-id -> (catalogue, url)
        self._numbers = itertools.count(1)

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc_info):
        self.disconnect()

    # -- connection ----------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """Registered with a hub that has not said it is gone (it may have died silently:
        the next message finds out)."""
        return self._client is not None and not self._gone and self._client.is_connected

    def connect(self) -> None:
        """Register with the running hub (``SAMP_HUB`` or ``~/.samp``, as the SAMP standard
        says); ``SampUnavailable`` when there is none or it does not answer."""
        if self.connected:
            return
        self.disconnect()
        self._client = _within(self.hub_timeout, "connecting", self._register)
        self._gone = False
        self._folder = Path(tempfile.mkdtemp(prefix="galaxy-inspector-samp-"))

    def _register(self):
        samp = _samp()
        with samp.conf.set_temp("use_internet", False):  # else it probes google.com
            client = samp.SAMPIntegratedClient(
                name=APP_NAME, description="Galaxy morphology posteriors and catalogues")
            client.connect()
        for mtype in RECEIVED:
            client.bind_receive_message(mtype, self._on_message, declare=False)
        for mtype in HUB_EVENTS:
            client.bind_receive_notification(mtype, self._on_hub_event, declare=False)
        client.declare_subscriptions()
        return client

    def disconnect(self) -> None:
        """Unregister (when the hub is still there), stop listening, delete the files sent."""
        client, self._client = self._client, None
        if client is not None:
            if not self._gone:
                try:
                    _within(self.hub_timeout, "disconnecting", client.client.unregister)
                except SampUnavailable:  # gone already: nothing to unregister from
                    pass
            if client.client.is_running:
                client.client.stop()
            client.hub.disconnect()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
        self._sent.clear()

    def _call_hub(self, what: str, func, *args):
        """A hub call, bounded; a hub found gone is forgotten (``connected`` turns False)."""
        if not self.connected:
            self.connect()
        try:
            return _within(self.hub_timeout, what, func, *args)
        except SampUnavailable as exc:
            if str(exc) == HUB_GONE:
                self._gone = True
            raise

    # -- sending -------------------------------------------------------------------------
    def send_catalogue(self, path) -> list[Delivery]:
        """Send the HDF5 catalogue ``path`` as a VOTable to every client that loads tables and
        wait for their replies; later highlights and selections of its rows follow it."""
        from galaxy_inspector.catalogue.export import write_table
        from galaxy_inspector.catalogue.reader import read_catalogue

        table = read_catalogue(path)  # a bad file is the user's error before any hub call
        if not self.connected:
            self.connect()
        catalogue = str(Path(path).resolve())
        vot = self._folder / f"{Path(path).stem}-{next(self._numbers)}.vot"
        write_table(table, vot)
        table_id = f"galaxy-inspector:{catalogue}"
        self._sent[table_id] = (catalogue, vot.as_uri())
        deliveries = self._call_all("table.load.votable", "tables",
                                    {"url": vot.as_uri(), "table-id": table_id,
                                     "name": Path(path).name})
        if not any(d.accepted for d in deliveries):  # (a reconnect meanwhile cleared it)
            self._sent.pop(table_id, None)
        return deliveries

    def send_image(self, image) -> list[Delivery]:
        """Send the plane ``image`` (a ``SkyImage`` read from FITS) to every client that loads
        FITS images: its file when it is the first plane of the primary HDU, else the plane
        with its WCS written to a one-HDU file (DS9 shows the primary HDU of a file it is
        sent, and a cube's first plane)."""
        if image.hdu < 0:
            raise InputError(f"{Path(image.source).name} is not a FITS image: SAMP sends FITS "
                             "images only (image.load.fits)")
        if not self.connected:
            self.connect()
        path = Path(image.source)
        if image.hdu != 0 or image.plane != 0:
            path = self._folder / f"{path.stem}-hdu{image.hdu}-plane{image.plane}.fits"
            _write_plane(image, path)
        name = Path(image.source).name
        return self._call_all("image.load.fits", "FITS images",
                              {"url": path.resolve().as_uri(), "name": name,
                               "image-id": f"galaxy-inspector:{path.resolve()}"})

    def highlight_row(self, catalogue, row: int) -> bool:
        """Tell every client to highlight ``row`` of the catalogue sent before (False when it
        was not sent: nobody has it)."""
        return self._notify_rows(catalogue, "table.highlight.row", {"row": str(int(row))})

    def select_rows(self, catalogue, rows) -> bool:
        """Tell every client to select ``rows`` of the catalogue sent before (False when it was
        not sent)."""
        return self._notify_rows(catalogue, "table.select.rowList",
                                 {"row-list": [str(int(r)) for r in rows]})

    def is_sent(self, catalogue) -> bool:
        return self._table_id(catalogue) is not None

    def _table_id(self, catalogue) -> str | None:
        resolved = str(Path(catalogue).resolve())
        return next((tid for tid, (path, _) in self._sent.items() if path == resolved), None)

    def _notify_rows(self, catalogue, mtype: str, params: dict) -> bool:
        table_id = self._table_id(catalogue)
        if table_id is None or not self.connected:
            return False
        message = {"samp.mtype": mtype, "samp.params": {
            "table-id": table_id, "url": self._sent[table_id][1], **params}}
        self._call_hub(f"sending {mtype}", self._client.notify_all, message)
        return True

    def _call_all(self, mtype: str, what: str, params: dict) -> list[Delivery]:
        """Call every other client subscribed to ``mtype`` at once and wait for each reply."""
        client = self._live_client()
        subscribed = self._call_hub("listing clients", client.get_subscribed_clients, mtype)
        me = client.get_public_id()
        recipients = [r for r in subscribed if r != me]
        if not recipients:
            raise SampUnavailable(f"no SAMP client takes {what} ({mtype}): start TOPCAT, DS9 "
                                  "or Aladin and connect it to the hub")
        message = {"samp.mtype": mtype, "samp.params": params}
        pool = ThreadPoolExecutor(len(recipients), thread_name_prefix="samp-call")
        futures = [pool.submit(self._deliver, r, message) for r in recipients]
        wait_for(futures, timeout=self.reply_timeout + self.hub_timeout)
        pool.shutdown(wait=False)
        if not all(f.done() for f in futures):
            raise SampUnavailable(f"the SAMP hub did not relay {mtype} within "
                                  f"{self.reply_timeout + self.hub_timeout:g} s")
        return [f.result() for f in futures]

    def _live_client(self):
        """The registered client; ``SampUnavailable`` once ``disconnect`` (the window closing,
        while a call was still waiting for its replies) has let it go."""
        client = self._client
        if client is None:
            raise SampUnavailable("disconnected from the SAMP hub")
        return client

    def _deliver(self, recipient: str, message: dict) -> Delivery:
        name = self._name(recipient)
        try:
            response = self._live_client().call_and_wait(recipient, message,
                                                         str(self.reply_timeout))
        except xmlrpc.client.Fault as fault:
            if "Timeout expired" in fault.faultString:
                return Delivery(name, False, f"did not answer within {self.reply_timeout} s")
            return Delivery(name, False, first_line(Exception(fault.faultString)))
        except OSError:
            self._gone = True
            raise SampUnavailable(HUB_GONE) from None
        error = (response.get("samp.error") or {}).get("samp.errortxt", "")
        if response.get("samp.status") == "samp.error":
            return Delivery(name, False, f"refused it ({error or 'no reason given'})")
        return Delivery(name, True, error)

    def _name(self, client_id: str) -> str:
        """A client's application name (``samp.name``), or its id when it gives none."""
        try:
            metadata = _within(self.hub_timeout, "asking a client's name",
                               self._client.get_metadata, client_id)
        except SampUnavailable:
            return client_id
        return str(metadata.get("samp.name") or client_id)

    # -- receiving -----------------------------------------------------------------------
    def _on_message(self, private_key, sender_id, msg_id, mtype, params, extra):
        """One received message: the callback runs, a call gets its reply (errors included:
        a bad message from another tool is answered, never raised here)."""
        try:
            handled = self._handle(mtype, params, sender_id)
            status, error = "samp.ok", None
            if not handled:
                status, error = "samp.error", "not a table Galaxy Inspector sent"
        except Exception as exc:  # another tool's malformed message: it gets the reason
            status, error = "samp.error", user_message(exc)
        if msg_id is not None and self._client is not None:
            try:
                _within(self.hub_timeout, "replying", self._client.ereply, msg_id, status,
                        {} if error is None else None,
                        None if error is None else {"samp.errortxt": error})
            except SampUnavailable:
                pass  # the sender or hub left: nobody is waiting for this reply

    def _handle(self, mtype: str, params: dict, sender_id: str) -> bool:
        if mtype == "coord.pointAt.sky":
            from astropy.coordinates import SkyCoord

            try:
                coord = SkyCoord(float(params["ra"]), float(params["dec"]), unit="deg")
            except (KeyError, TypeError, ValueError):
                raise InputError(f"coord.pointAt.sky needs ra and dec in degrees, got {params}") \
                    from None
            if self.on_point_at is not None:
                self.on_point_at(coord, self._name(sender_id))
            return True
        catalogue = self._sent_catalogue(params)
        if catalogue is None:
            return False
        if mtype == "table.highlight.row" and self.on_highlight is not None:
            self.on_highlight(catalogue, int(params["row"]))
        elif mtype == "table.select.rowList" and self.on_select is not None:
            self.on_select(catalogue, [int(r) for r in params.get("row-list", [])])
        return True

    def _sent_catalogue(self, params: dict) -> str | None:
        """The catalogue a row message is about (by table-id, else by URL), if sent from here."""
        table_id, url = params.get("table-id"), params.get("url")
        for tid, (catalogue, sent_url) in self._sent.items():
            if tid == table_id or (url and sent_url == url):
                return catalogue
        return None

    def _on_hub_event(self, private_key, sender_id, mtype, params, extra):
        self._gone = True
        if self.on_hub_gone is not None:
            what = "shut down" if mtype.endswith("shutdown") else "disconnected Galaxy Inspector"
            self.on_hub_gone(f"the SAMP hub {what}; start one and connect again")


def _write_plane(image, path: Path) -> None:
    """The plane as a one-HDU FITS file with its WCS (distortions kept) and unit."""
    import numpy as np
    from astropy.io import fits

    header = image.wcs.to_header(relax=True) if image.wcs is not None else fits.Header()
    if image.calibrated:
        header["BUNIT"] = "nJy"
    header["ORIGIN"] = "Galaxy Inspector"
    header.add_history(f"HDU {image.hdu}, plane {image.plane} of {Path(image.source).name}")
    fits.PrimaryHDU(np.asarray(image.data), header=header).writeto(path, overwrite=True)
