"""Exports: every format holds the same rows and reads back with ``Table.read``; units,
descriptions, models, flag meanings and the command line travel with the table; a user's
mistake is one line and exit 1 from ``galaxy-inspector --export``."""

from __future__ import annotations

import os

import numpy as np
import pytest
from astropy.io import fits, votable
from astropy.table import Table

from galaxy_inspector.catalogue import CatalogueWriter, export_catalogue, read_catalogue
from galaxy_inspector.catalogue.export import FITS_TEXT_POLICY, fits_text
from galaxy_inspector.catalogue.rows import empty_rows, set_text
from galaxy_inspector.cli import main

PARAMS = ["bt", "re_arcsec", "flux_njy"]
SHA = "5bf6c16a" * 8
#: Longer than a FITS card, with a non-ASCII path in it.
COMMAND = ("galaxy-inspector --batch "
           + " ".join(f"/données/champ_{i:02d}.fits" for i in range(30)) + " --out cat.h5")
ATTRS = {"model_name": "morphology-hsc-g", "model_sha256": SHA,
         "model_names": "morphology-hsc-g", "parameters": PARAMS, "n_samples_saved": 0,
         "command_line": COMMAND}
TEXT = {"id": ["m31 é", "ngc 1300", "blank"],
        "source": ["/données/m31 é.fits", "/data/ngc1300.fits", "/data/blank.fits"],
        "status": ["ok", "ok", "error"],
        "error": ["", "", "S/N ≈ 2 — no galaxy detected"],
        "label": ["R_e < 0.98″", "highly disk-dominated; R_e < 0.98″", ""],
        "calibration": ["BUNIT nJy", "FLUXMAG0 6.3e+10 (zp 27.000)", ""]}
FORMATS = [".fits", ".csv", ".ecsv", ".vot", ".h5"]


@pytest.fixture
def catalogue(tmp_path):
    """Three rows with the text that broke FITS (″), accents, other symbols and a NaN."""
    path = tmp_path / "cat.h5"
    writer = CatalogueWriter.create(path, PARAMS, None, ATTRS)
    rows = empty_rows(writer.dtype, 3)
    for name, values in TEXT.items():
        for i, value in enumerate(values):
            set_text(rows, i, name, value)
    for i in range(3):
        set_text(rows, i, "input_key", f"key-{i}")
    rows["x"], rows["y"], rows["flags"] = [10.5, 20.25, 30.0], [1.0, 2.0, 3.0], [0, 33, 0]
    rows["bt_mode"], rows["re_arcsec_median"] = [0.25, 0.75, np.nan], [1.5, 0.9, np.nan]
    rows["flux_njy_hi997"] = [1.2e5, 3.4e3, np.nan]
    writer.append(rows)
    writer.finish({})
    return path


def _text(column) -> list[str]:
    """A read-back text column as str, empty where a reader masked an empty string (a CSV
    column of empty strings only comes back as a masked column of numbers)."""
    return ["" if masked else v.decode("utf-8") if isinstance(v, bytes) else str(v)
            for v, masked in zip(column, np.ma.getmaskarray(column), strict=True)]


def _numbers(column) -> np.ndarray:
    """A read-back numeric column as floats, NaN where a reader masked a NaN."""
    return np.ma.asarray(column).astype(float).filled(np.nan)


@pytest.mark.parametrize("suffix", FORMATS)
def test_every_format_reads_back_the_same_rows_columns_and_values(catalogue, tmp_path, suffix):
    out = tmp_path / f"out{suffix}"
    assert export_catalogue(catalogue, out) == 3
    back, ref = Table.read(out), read_catalogue(catalogue)
    assert back.colnames == ref.colnames and len(back) == len(ref) == 3
    for name in ref.colnames:
        if ref[name].dtype.kind == "U":  # identical text; FITS holds ASCII (its own test)
            expected = [fits_text(v) if suffix == ".fits" else str(v) for v in ref[name]]
            assert _text(back[name]) == expected, name
        else:
            np.testing.assert_allclose(_numbers(back[name]), _numbers(ref[name]), rtol=1e-6,
                                       equal_nan=True, err_msg=name)


def test_fits_writes_text_as_ascii_by_a_stated_policy(catalogue, tmp_path):
    out = tmp_path / "out.fits"
    export_catalogue(catalogue, out)
    back = Table.read(out)
    assert _text(back["label"])[:2] == ["R_e < 0.98 arcsec",
                                        "highly disk-dominated; R_e < 0.98 arcsec"]
    assert _text(back["id"])[0] == "m31 e" and _text(back["error"])[2] == (
        "S/N ~ 2 - no galaxy detected")
    header = fits.getheader(out, 1)
    assert header["CMDLINE"] == fits_text(COMMAND) and "/donnees/champ_29.fits" in header[
        "CMDLINE"]
    assert FITS_TEXT_POLICY.split(":")[0] in str(header["COMMENT"])
    assert fits_text("10″ ± 2° 太") == "10 arcsec +/- 2 deg \\u592a"


def test_fits_keeps_units_descriptions_models_flags_and_the_command_line(catalogue, tmp_path):
    out = tmp_path / "out.fits"
    export_catalogue(catalogue, out)
    header = fits.getheader(out, 1)
    column = {header[f"TTYPE{i}"]: i for i in range(1, header["TFIELDS"] + 1)}
    i = column["re_arcsec_median"]
    assert header[f"TUNIT{i}"] == "arcsec" and "posterior median" in header[f"TCOMM{i}"]
    assert header[f"TUNIT{column['x']}"] == "pix" and header[f"TUNIT{column['ra']}"] == "deg"
    assert "FLAGn" in header[f"TCOMM{column['flags']}"]
    assert header["MODEL"] == "morphology-hsc-g" and header["MODELSHA"] == SHA
    assert len(header["CMDLINE"]) > 300  # on CONTINUE cards
    assert header["FLAG0"].startswith("EDGE (1): ") and header["FLAG5"].startswith("LOW_SNR (32)")


def test_votable_keeps_units_descriptions_and_provenance(catalogue, tmp_path):
    out = tmp_path / "out.vot"
    export_catalogue(catalogue, out)
    parsed = votable.parse(str(out))
    infos = {info.name: info.value for info in parsed.resources[0].infos}
    assert infos["MODEL"] == "morphology-hsc-g" and infos["MODELSHA"] == SHA
    assert infos["CMDLINE"] == COMMAND
    table = parsed.get_first_table()
    field = table.get_field_by_id("re_arcsec_median")
    assert str(field.unit) == "arcsec" and "posterior median" in field.description
    params = {p.name: p for p in table.params}
    assert params["flag_LOW_SNR"].value == 32 and "signal-to-noise" in params[
        "flag_LOW_SNR"].description


@pytest.mark.parametrize("suffix", [".ecsv", ".h5"])
def test_ecsv_and_hdf5_keep_units_descriptions_and_provenance_in_meta(catalogue, tmp_path,
                                                                     suffix):
    out = tmp_path / f"out{suffix}"
    export_catalogue(catalogue, out)
    back = Table.read(out)
    assert str(back["re_arcsec_median"].unit) == "arcsec"
    assert "posterior median" in back["re_arcsec_median"].description
    assert back.meta["MODELSHA"] == SHA and back.meta["CMDLINE"] == COMMAND
    assert back.meta["flag_EDGE"].startswith("1: ")


def test_csv_is_plain_so_every_csv_reader_opens_it(catalogue, tmp_path, capsys):
    out = tmp_path / "out.csv"
    assert main(["--export", str(catalogue), str(out)]) == 0
    assert out.read_text(encoding="utf-8").startswith("id,source,hdu,x,y,")
    assert "export to .ecsv to keep them" in capsys.readouterr().err


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and err.startswith(
        "galaxy-inspector: error: ")
    return err


@pytest.mark.parametrize(("target", "expected"), [
    ("out.xlsx", "use one of .fits"),
    ("folder", "is a folder"),
    ("missing/out.fits", "folder"),
    ("cat.h5", "would overwrite it"),
])
def test_a_bad_target_is_one_line_and_exit_1(catalogue, tmp_path, capsys, target, expected):
    (tmp_path / "folder").mkdir()
    assert main(["--export", str(catalogue), str(tmp_path / target)]) == 1
    assert expected in _one_line_error(capsys)
    assert len(read_catalogue(catalogue)) == 3


@pytest.mark.parametrize(("source", "expected"), [
    ("missing.h5", "no such file"),
    ("folder", "it is a folder"),
    ("image.fits", "is not a catalogue"),
])
def test_a_bad_catalogue_is_one_line_and_exit_1(tmp_path, capsys, source, expected):
    (tmp_path / "folder").mkdir()
    fits.PrimaryHDU(np.zeros((4, 4), np.float32)).writeto(tmp_path / "image.fits")
    assert main(["--export", str(tmp_path / source), str(tmp_path / "out.csv")]) == 1
    assert expected in _one_line_error(capsys)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="needs a folder this user cannot write (root writes anywhere)")
@pytest.mark.parametrize("suffix", FORMATS)
def test_an_unwritable_folder_is_one_line_and_exit_1(catalogue, tmp_path, capsys, suffix):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert main(["--export", str(catalogue), str(locked / f"out{suffix}")]) == 1
    finally:
        locked.chmod(0o700)
    assert "cannot write" in _one_line_error(capsys)


@pytest.mark.parametrize("suffix", FORMATS)
def test_a_path_the_system_refuses_is_one_line_and_exit_1(catalogue, capsys, suffix):
    if not os.path.isdir("/proc"):
        pytest.skip("needs /proc, where no file can be created")
    assert main(["--export", str(catalogue), f"/proc/galaxy-inspector-test{suffix}"]) == 1
    assert "cannot write /proc/" in _one_line_error(capsys)


def _save_dialog_answering(monkeypatch, answer):
    """Make every save dialog answer ``answer(proposed_path)``; returns the proposals seen."""
    from PySide6.QtWidgets import QFileDialog

    proposed = []

    def ask(_parent, _title, path, _filter, *args, **kwargs):
        proposed.append(path)
        return str(answer(path)), ""
    monkeypatch.setattr(QFileDialog, "getSaveFileName", ask)
    return proposed


@pytest.mark.gui
def test_catalogue_browser_exports_to_its_default_fits_and_says_why_not(
        qtbot, gui_settings, catalogue, tmp_path, monkeypatch):
    from galaxy_inspector.gui.catalogue_browser import CatalogueBrowser
    from galaxy_inspector.viewer.tasks import ModelCache

    browser = CatalogueBrowser(ModelCache())
    qtbot.addWidget(browser)
    assert browser.load(str(catalogue))
    proposed = _save_dialog_answering(monkeypatch, lambda path: path)
    browser._ask_export()
    assert proposed == [str(tmp_path / "cat.fits")]
    assert browser.status.text() == f"3 rows written to {tmp_path / 'cat.fits'}"
    assert _text(Table.read(tmp_path / "cat.fits")["label"])[0] == "R_e < 0.98 arcsec"
    _save_dialog_answering(monkeypatch, lambda path: tmp_path / "missing" / "cat.fits")
    browser._ask_export()
    shown = browser.status.text()
    assert "Export failed: cannot write" in shown and "does not exist" in shown
    assert "report" not in shown and "\n" not in shown


@pytest.mark.gui
def test_posterior_panel_row_export_carries_units_and_provenance(
        qtbot, gui_settings, catalogue, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    from galaxy_inspector.catalogue import stored_measurement
    from galaxy_inspector.gui.posterior_panel import PosteriorPanel
    from galaxy_inspector.viewer.tasks import GalaxyAnalysis

    panel = PosteriorPanel()
    qtbot.addWidget(panel)
    panel.analysis = GalaxyAnalysis(stored_measurement(catalogue, 0), "/data/m31 é.fits",
                                    "morphology-hsc-g", (), model_sha256=SHA)
    _save_dialog_answering(monkeypatch, lambda _path: tmp_path / "row.fits")
    panel._ask_export_row()
    row = Table.read(tmp_path / "row.fits")
    assert len(row) == 1 and _text(row["label"]) == ["R_e < 0.98 arcsec"]
    assert str(row["re_arcsec_median"].unit) == "arcsec" and row["re_arcsec_median"][0] == 1.5
    header = fits.getheader(tmp_path / "row.fits", 1)
    assert header["MODEL"] == "morphology-hsc-g" and header["MODELSHA"] == SHA
    assert header["FLAG0"].startswith("EDGE (1)")
    warnings = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _parent, _title, text: warnings.append(text))
    _save_dialog_answering(monkeypatch, lambda _path: tmp_path / "row.xlsx")
    panel._ask_export_row()
    assert len(warnings) == 1 and "use one of .fits" in warnings[0] and "\n" not in warnings[0]
