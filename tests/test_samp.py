"""SAMP against a real ``astropy.samp`` hub started here (its lock file in tmp_path, HOME moved
there too, so no user's hub or ~/.samp is ever touched) and a second client standing in for
TOPCAT: catalogues arrive as VOTables with units and provenance, rows follow both ways,
positions sent to the app are measured, and no hub, a hub gone, a client refusing or silent
are one-line messages within bounded time."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from urllib.parse import unquote, urlparse

import pytest
from interop_catalogue import write_catalogue

from galaxy_inspector.cli import main
from galaxy_inspector.errors import InputError
from galaxy_inspector.interop.samp import (
    HUB_GONE,
    NO_HUB,
    SampClient,
    SampUnavailable,
    _samp,
    send_catalogue_to_hub,
)
from galaxy_inspector.io import read_image

TIMEOUT_S = 10  # any wait here; the bounded-time checks assert far less


class StandIn:
    """A second SAMP client in the role of TOPCAT (or DS9): records what it is sent, answers
    calls as told (``reply``: "ok", "error" or "never")."""

    MTYPES = ("table.load.votable", "image.load.fits")

    def __init__(self, name="TOPCAT", reply="ok"):
        samp = _samp()
        self.reply, self.received, self.arrived = reply, [], threading.Event()
        with samp.conf.set_temp("use_internet", False):
            self.client = samp.SAMPIntegratedClient(name=name)
            self.client.connect()
        for mtype in self.MTYPES:
            self.client.bind_receive_call(mtype, self._on_call, declare=False)
        for mtype in ("table.highlight.row", "table.select.rowList"):
            self.client.bind_receive_notification(mtype, self._on_notification, declare=False)
        self.client.declare_subscriptions()

    def _on_call(self, private_key, sender_id, msg_id, mtype, params, extra):
        self._record(mtype, params)
        if self.reply == "ok":
            self.client.ereply(msg_id, "samp.ok", {})
        elif self.reply == "error":
            self.client.ereply(msg_id, "samp.error", error={"samp.errortxt": "no thanks"})

    def _on_notification(self, private_key, sender_id, mtype, params, extra):
        self._record(mtype, params)

    def _record(self, mtype, params):
        self.received.append((mtype, params))
        self.arrived.set()

    def wait(self, mtype):
        """The params of the first message of ``mtype`` (waiting up to TIMEOUT_S)."""
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            found = [p for m, p in self.received if m == mtype]
            if found:
                return found[0]
            self.arrived.wait(0.05)
            self.arrived.clear()
        raise AssertionError(f"no {mtype} arrived; got {self.received}")

    def send(self, mtype, **params):
        self.client.enotify_all(mtype, **params)

    def close(self):
        if self.client.is_connected:
            self.client.disconnect()


@pytest.fixture
def samp_env(tmp_path, monkeypatch):
    """The lock file a hub of this test writes and clients read: never ~/.samp."""
    lockfile = tmp_path / "samp-hub"
    monkeypatch.setenv("SAMP_HUB", f"std-lockurl:{lockfile.as_uri()}")
    monkeypatch.setenv("HOME", str(tmp_path))  # astropy also lists ~/.samp-1
    return lockfile


@pytest.fixture
def hub(samp_env):
    samp = _samp()
    with samp.conf.set_temp("use_internet", False):
        server = samp.SAMPHubServer(web_profile=False, lockfile=str(samp_env), addr="127.0.0.1")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def stand_ins(hub):
    """``make(name, reply)`` -> a connected ``StandIn``; all disconnected afterwards."""
    made = []

    def make(name="TOPCAT", reply="ok"):
        made.append(StandIn(name, reply))
        return made[-1]

    yield make
    for stand_in in made:
        stand_in.close()


@pytest.fixture
def client(hub):
    """Our client, with what its callbacks received; disconnected afterwards."""
    got = {"point": [], "highlight": [], "select": [], "gone": []}
    made = SampClient(on_point_at=lambda c, s: got["point"].append((c, s)),
                      on_highlight=lambda cat, r: got["highlight"].append((cat, r)),
                      on_select=lambda cat, rows: got["select"].append((cat, rows)),
                      on_hub_gone=got["gone"].append, reply_timeout=2)
    made.got = got
    yield made
    made.disconnect()


def _wait(condition, what):
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _local(url: str) -> str:
    return unquote(urlparse(url).path)


@pytest.fixture
def catalogue(tmp_path):
    return write_catalogue(tmp_path / "cat.h5")


def test_catalogue_arrives_as_a_votable_with_units_descriptions_and_provenance(
        client, stand_ins, catalogue):
    from astropy.io.votable import parse
    from astropy.table import Table

    topcat = stand_ins("TOPCAT")
    deliveries = client.send_catalogue(catalogue)
    assert [(d.client, d.accepted) for d in deliveries] == [("TOPCAT", True)]
    params = topcat.wait("table.load.votable")
    assert params["name"] == "cat.h5" and params["table-id"]
    table = Table.read(_local(params["url"]), format="votable")
    assert list(table["id"]) == ["g1", "g2", "p1", "bad"]
    assert str(table["re_arcsec_mode"].unit) == "arcsec" and str(table["ra"].unit) == "deg"
    assert "posterior mode" in table["re_arcsec_mode"].description
    infos = {i.name: i.value for i in parse(_local(params["url"])).resources[0].infos}
    assert infos["MODEL"] == "morphology-hsc-g" and infos["MODELSHA"] == "5bf6c16a" * 8


def test_rows_follow_both_ways_and_other_tables_are_refused(client, stand_ins, catalogue):
    topcat = stand_ins("TOPCAT")
    client.send_catalogue(catalogue)
    loaded = topcat.wait("table.load.votable")
    assert client.highlight_row(catalogue, 2)
    assert topcat.wait("table.highlight.row") == {
        "table-id": loaded["table-id"], "url": loaded["url"], "row": "2"}
    assert client.select_rows(catalogue, [0, 3])
    assert topcat.wait("table.select.rowList")["row-list"] == ["0", "3"]
    # TOPCAT names the table by its id, or only by the URL it loaded.
    topcat.send("table.highlight.row", **{"table-id": loaded["table-id"], "row": "1"})
    topcat.send("table.select.rowList", url=loaded["url"], **{"row-list": ["1", "2"]})
    _wait(lambda: client.got["highlight"] and client.got["select"], "rows from TOPCAT")
    resolved = str(catalogue.resolve())
    assert client.got["highlight"] == [(resolved, 1)]
    assert client.got["select"] == [(resolved, [1, 2])]
    reply = topcat.client.ecall_and_wait(client._client.get_public_id(), "table.highlight.row",
                                         "5", **{"table-id": "someone-else", "row": "0"})
    assert reply["samp.status"] == "samp.error"
    assert not client.highlight_row(catalogue.with_name("never-sent.h5"), 0)


def test_a_sky_position_arrives_as_skycoord_with_its_sender(client, stand_ins):
    aladin = stand_ins("Aladin")
    client.connect()
    aladin.send("coord.pointAt.sky", ra="150.1", dec="2.2")
    _wait(lambda: client.got["point"], "coord.pointAt.sky")
    coord, sender = client.got["point"][0]
    assert (coord.ra.deg, coord.dec.deg, sender) == (pytest.approx(150.1), pytest.approx(2.2),
                                                      "Aladin")


def test_image_plane_sent_as_fits_with_its_wcs_a_jpeg_refused(client, stand_ins, sample_paths):
    from astropy.io import fits
    from astropy.wcs import WCS

    ds9 = stand_ins("ds9")
    image = read_image(sample_paths["hsc_coadd_cutout.fits"])  # IMAGE is HDU 1, not primary
    assert image.hdu == 1
    assert [d.accepted for d in client.send_image(image)] == [True]
    with fits.open(_local(ds9.wait("image.load.fits")["url"])) as hdul:
        sent_wcs, data = WCS(hdul[0].header), hdul[0].data
    assert data.shape == image.shape and hdul[0].header["BUNIT"] == "nJy"
    assert sent_wcs.all_pix2world([[3.0, 7.0]], 0)[0] == pytest.approx(
        image.pixel_to_sky(3.0, 7.0))
    with pytest.raises(InputError, match="FITS images only"):
        client.send_image(read_image(sample_paths["sdss_gri.jpg"]))


def test_a_refusing_and_a_silent_client_are_said_within_bounded_time(
        client, stand_ins, catalogue):
    stand_ins("TOPCAT", reply="error")
    stand_ins("Silent", reply="never")
    start = time.monotonic()
    deliveries = {d.client: d for d in client.send_catalogue(catalogue)}
    assert time.monotonic() - start < 2 + 3  # reply_timeout 2 s, both asked at once
    assert not deliveries["TOPCAT"].accepted and "no thanks" in deliveries["TOPCAT"].note
    assert deliveries["Silent"].note == "did not answer within 2 s"


def test_no_listener_no_hub_and_a_hub_shut_down_are_one_line(client, hub, catalogue):
    with pytest.raises(SampUnavailable, match="no SAMP client takes tables"):
        client.send_catalogue(catalogue)  # a hub, but nobody loads tables
    hub.stop()
    _wait(lambda: client.got["gone"], "the hub's shutdown notice")
    assert "shut down" in client.got["gone"][0] and not client.connected
    start = time.monotonic()
    with pytest.raises(SampUnavailable) as error:
        client.send_catalogue(catalogue)
    assert str(error.value) == NO_HUB and time.monotonic() - start < 3


def test_cli_samp_exits_0_when_sent_and_1_with_one_line_without_hub(
        samp_env, tmp_path, catalogue, capsys):
    code = main(["--export", str(catalogue), "--samp"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "no SAMP hub is running" in err
    samp = _samp()
    with samp.conf.set_temp("use_internet", False):
        server = samp.SAMPHubServer(web_profile=False, lockfile=str(samp_env), addr="127.0.0.1")
    server.start()
    topcat = None
    try:
        topcat = StandIn("TOPCAT")
        assert main(["--export", str(catalogue), "--samp"]) == 0
        assert "sent to TOPCAT" in capsys.readouterr().err
        assert topcat.wait("table.load.votable")["name"] == "cat.h5"
        assert send_catalogue_to_hub(catalogue)[0].accepted
    finally:
        if topcat is not None:
            topcat.close()
        server.stop()


HUB_PROCESS = """
import sys, time, warnings
warnings.simplefilter("ignore")
from astropy import samp
samp.conf.use_internet = False
samp.SAMPHubServer(web_profile=False, lockfile=sys.argv[1], addr="127.0.0.1").start()
print("started", flush=True)
time.sleep(600)
"""


@pytest.mark.slow
def test_a_hub_killed_mid_session_is_a_message_not_a_hang(samp_env, tmp_path, catalogue):
    process = subprocess.Popen([sys.executable, "-c", HUB_PROCESS, str(samp_env)],
                               stdout=subprocess.PIPE, text=True)
    try:
        for line in process.stdout:  # astropy logs to stdout too
            if line.strip() == "started":
                break
        client = SampClient(reply_timeout=2)
        topcat = StandIn("TOPCAT")
        try:
            assert client.send_catalogue(catalogue)[0].accepted
            process.kill()  # no shutdown notice: the next message finds out
            process.wait(TIMEOUT_S)
            start = time.monotonic()
            with pytest.raises(SampUnavailable) as error:
                client.highlight_row(catalogue, 0)
            assert str(error.value) == HUB_GONE and time.monotonic() - start < 3
            assert not client.connected
        finally:
            client.disconnect()
            topcat.client.client.stop()  # its hub is gone: nothing to unregister from
    finally:
        process.kill()
        process.wait(TIMEOUT_S)


@pytest.mark.gui
@pytest.mark.slow
def test_point_at_sky_measures_there_and_browser_rows_follow_topcat(
        qtbot, make_main_window, stand_ins, sample_paths, catalogue, wait_for_analysis):
    window = make_main_window()
    path = str(sample_paths["hsc_coadd_cutout.fits"])
    window.open_file(path)
    qtbot.waitUntil(lambda: window.state.path == path, timeout=30_000)
    topcat = stand_ins("TOPCAT")
    worker = window.samp.connect_hub()
    qtbot.waitUntil(lambda: not worker.is_running, timeout=TIMEOUT_S * 1000)
    assert window.samp.client.connected, window.statusBar().currentMessage()

    image = window.state.image
    ra, dec = image.pixel_to_sky(40.0, 50.0)
    topcat.send("coord.pointAt.sky", ra=repr(ra), dec=repr(dec))
    analysis = wait_for_analysis(window)
    assert window.state.position == (pytest.approx(40.0, abs=1e-6), pytest.approx(50.0,
                                                                                  abs=1e-6))
    assert analysis.source == image.source

    browser = window.open_catalogue(str(catalogue))
    sending = window.samp.send_catalogue(str(catalogue), where=browser)
    qtbot.waitUntil(lambda: not sending.is_running, timeout=TIMEOUT_S * 1000)
    loaded = topcat.wait("table.load.votable")
    topcat.send("table.highlight.row", **{"table-id": loaded["table-id"], "row": "1"})
    qtbot.waitUntil(lambda: _selected(browser) == [1], timeout=TIMEOUT_S * 1000)
    assert not [m for m, _ in topcat.received if m == "table.highlight.row"]  # not echoed
    browser.select_row(2)  # as a click in the browser
    assert topcat.wait("table.highlight.row")["row"] == "2"
    topcat.send("table.select.rowList", **{"table-id": loaded["table-id"],
                                           "row-list": ["0", "3"]})
    qtbot.waitUntil(lambda: _selected(browser) == [0, 3], timeout=TIMEOUT_S * 1000)


def _selected(browser) -> list[int]:
    return sorted(browser.proxy.mapToSource(i).row()
                  for i in browser.view.selectionModel().selectedRows())


@pytest.mark.gui
def test_gui_without_hub_says_so_in_the_status_bar_quickly(
        qtbot, make_main_window, samp_env, catalogue):
    window = make_main_window()
    start = time.monotonic()
    worker = window.samp.send_catalogue(str(catalogue))
    qtbot.waitUntil(lambda: not worker.is_running, timeout=TIMEOUT_S * 1000)
    qtbot.waitUntil(lambda: NO_HUB in window.statusBar().currentMessage(), timeout=1000)
    assert time.monotonic() - start < 3
    window.samp.pointed_at.emit(150.1, 2.2, "Aladin")  # a position with no image open
    assert "open an image" in window.statusBar().currentMessage()
