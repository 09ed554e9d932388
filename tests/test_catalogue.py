"""The HDF5 catalogue: astropy reads it with units, resume cuts half-written rows, exports.
Crash safety, the lock and resume checks: ``test_catalogue_crash.py``."""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest
from astropy.table import Table

from galaxy_inspector.catalogue import CatalogueWriter, export_catalogue, read_catalogue
from galaxy_inspector.catalogue.rows import empty_rows, set_text
from galaxy_inspector.catalogue.schema import key_digest
from galaxy_inspector.errors import InputError

PARAMS = ["bt", "re_arcsec", "flux_njy"]
ATTRS = {"model_name": "m", "model_sha256": "abc", "parameters": PARAMS, "n_samples_saved": 4}


def _rows(writer, keys, status="ok"):
    rows = empty_rows(writer.dtype, len(keys))
    for i, key in enumerate(keys):
        set_text(rows, i, "input_key", key)
        set_text(rows, i, "input_key_sha256", key_digest(key))
        set_text(rows, i, "id", f"id-{key}")
        set_text(rows, i, "status", status)
        rows["re_arcsec_median"][i] = 1.5 + i
    return rows


def test_rows_and_samples_are_readable_by_astropy_with_units(tmp_path):
    path = tmp_path / "c.h5"
    writer = CatalogueWriter.create(path, PARAMS, 4, ATTRS)
    writer.append(_rows(writer, ["a", "b"]), np.ones((2, 4, 3), np.float32))
    writer.append(_rows(writer, ["c"]), np.full((1, 4, 3), 2.0, np.float32))
    writer.checkpoint()
    table = Table.read(path, path="galaxies")
    assert len(table) == 3 and str(table["re_arcsec_median"].unit) == "arcsec"
    assert list(table["id"]) == ["id-a", "id-b", "id-c"]
    assert np.isnan(table["bt_mode"]).all() and (table["hdu"] == -1).all()
    decoded = read_catalogue(path)
    assert list(decoded["status"]) == ["ok"] * 3 and decoded.meta["MODELSHA"] == "abc"
    with h5py.File(path) as f:
        assert f["posterior_samples"].shape == (3, 4, 3)
        assert f["posterior_samples"][2].max() == 2.0 and f["posterior_samples"].compression
        assert f.attrs["flag_EDGE"].startswith("1:") and not f.attrs["complete"]
    writer.close()


def test_long_text_is_cut_without_breaking_utf8(tmp_path):
    writer = CatalogueWriter.create(tmp_path / "c.h5", PARAMS, None, ATTRS)
    rows = empty_rows(writer.dtype, 1)
    set_text(rows, 0, "label", "é" * 100)  # 2 bytes each, column holds 64 bytes
    assert rows["label"][0].decode("utf-8") == "é" * 32


def test_resume_cuts_the_half_written_rows_of_files_appended_in_place(tmp_path):
    """Versions before the journal appended in place: a kill between resize and write left
    blank rows at the end, which resume still cuts off."""
    path = tmp_path / "c.h5"
    writer = CatalogueWriter.create(path, PARAMS, 4, ATTRS)
    writer.append(_rows(writer, ["a", "b"]), np.zeros((2, 4, 3), np.float32))
    writer.finish({})
    with h5py.File(path, "a") as f:  # what a kill between resize and write left
        f["galaxies"].resize((4,))
        f["posterior_samples"].resize(3, axis=0)
    writer, done = CatalogueWriter.resume(path, ATTRS)
    assert len(done) == 2 and "a" in done and "b" in done and "c" not in done
    writer.finish({})
    with h5py.File(path) as f:
        assert len(f["galaxies"]) == 2 and len(f["posterior_samples"]) == 2


def test_resume_refuses_another_model_or_samples_setting(tmp_path):
    path = tmp_path / "c.h5"
    CatalogueWriter.create(path, PARAMS, 4, ATTRS).close()
    with pytest.raises(InputError, match="same model"):
        CatalogueWriter.resume(path, {**ATTRS, "model_sha256": "other"})
    with pytest.raises(InputError, match="save-samples"):
        CatalogueWriter.resume(path, {**ATTRS, "n_samples_saved": 0})


@pytest.mark.parametrize("suffix", [".fits", ".csv", ".vot", ".ecsv"])
def test_export_formats_round_trip(tmp_path, suffix):
    path = tmp_path / "c.h5"
    writer = CatalogueWriter.create(path, PARAMS, None, ATTRS)
    writer.append(_rows(writer, ["a", "b"]))
    writer.finish({})
    out = tmp_path / f"out{suffix}"
    assert export_catalogue(path, out) == 2
    fmt = {".csv": "ascii.csv", ".vot": "votable", ".ecsv": "ascii.ecsv"}.get(suffix)
    back = Table.read(out, format=fmt) if fmt else Table.read(out)
    assert len(back) == 2 and back["re_arcsec_median"][1] == pytest.approx(2.5)
    assert str(back["id"][0]) == "id-a"


def test_export_to_unknown_format_is_refused(tmp_path):
    path = tmp_path / "c.h5"
    CatalogueWriter.create(path, PARAMS, None, ATTRS).close()
    with pytest.raises(InputError, match="use one of"):
        export_catalogue(path, tmp_path / "x.xlsx")


@pytest.mark.slow
def test_writing_goes_on_while_a_reader_in_another_process_holds_the_file(tmp_path):
    path = tmp_path / "c.h5"
    writer = CatalogueWriter.create(path, PARAMS, None, ATTRS)
    reader = subprocess.Popen(
        [sys.executable, "-c", f"import h5py, time; f = h5py.File({str(path)!r}, 'r'); "
                               "print('open', flush=True); time.sleep(0.5); "
                               "print(len(f['galaxies']), flush=True)"],
        stdout=subprocess.PIPE, text=True)
    reader.stdout.readline()
    writer.append(_rows(writer, ["a"]))  # in place, h5py would refuse: "unable to lock file"
    writer.finish({})
    assert reader.stdout.readline().strip() == "0"  # the reader keeps the checkpoint it opened
    reader.wait()
    assert len(read_catalogue(path)) == 1
