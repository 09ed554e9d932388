"""One row builder: measurements -> rows -> back to measurements, per-model property errors as
JSON that round-trips, and the GUI's one-galaxy row equal to the batch row of that galaxy."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from galaxy_inspector.catalogue import (
    CatalogueWriter,
    RowBuilder,
    RowOrigin,
    failed_rows,
    property_errors,
    read_catalogue,
    single_row,
    stored_measurement,
)
from galaxy_inspector.engine import Measurement
from galaxy_inspector.errors import InputError
from galaxy_inspector.physical_properties.measure import PropertyMeasurement
from galaxy_inspector.preprocessing import Stamp

PARAMS = ["bt", "re_arcsec", "flux_njy"]
N_SAMPLES = 5
MODELS = [{"name": "morph", "sha256": "m0", "task": "morphology", "outputs": PARAMS},
          {"name": "mass", "sha256": "p1", "task": "properties", "outputs": ["log_mstar"]},
          {"name": "oh; \"v2\"", "sha256": "p2", "task": "properties",
           "outputs": ["metallicity"]}]
ATTRS = {"model_name": "morph", "model_sha256": "m0", "models": MODELS, "parameters": PARAMS,
         "property_parameters": ["log_mstar", "metallicity"], "n_samples_saved": N_SAMPLES,
         "model_pixel_scale": 0.168}


def _stats(name: str, value: float) -> dict:
    return {f"{name}_{s}": value + k for k, s in enumerate(
        ("mode", "median", "mean", "lo68", "hi68", "lo95", "hi95", "lo997", "hi997"))}


def _measurement(mass_error: str = "", oh_error: str = "") -> Measurement:
    stamp = Stamp(data=np.zeros((4, 4), np.float32), x=10.25, y=20.5, ra=150.1, dec=2.2,
                  source_scale=0.168, model_scale=0.168, flags=1, masked_fraction=0.25,
                  sky_sigma=1.0, calibration="FLUXMAG0")
    summary = {**_stats("bt", 0.1), **_stats("re_arcsec", 1.0), **_stats("flux_njy", 1e4)}
    properties = {}
    for name, target, value, error in (("mass", "log_mstar", 9.5, mass_error),
                                       ('oh; "v2"', "metallicity", 8.6, oh_error)):
        properties[name] = PropertyMeasurement(
            model=name, names=[target], units=["dex"],
            summary=_stats(target, math.nan if error else value),
            samples=None if error else np.full((N_SAMPLES, 1), value, np.float32),
            error=error)
    return Measurement(stamp=stamp, names=PARAMS, units=["", "arcsec", "nJy"],
                       samples=np.arange(N_SAMPLES * 3, dtype=np.float32).reshape(-1, 3),
                       summary=summary, stn_scale=0.75, crop_box=(1.0, 2.0, 3.0, 4.0), snr=42.0,
                       label="highly disk-dominated", flags=9, properties=properties)


def _write(path, items) -> None:
    writer = CatalogueWriter.create(path, PARAMS, N_SAMPLES, ATTRS, ["log_mstar", "metallicity"],
                                    units={"log_mstar": "dex", "metallicity": "dex"})
    builder = RowBuilder(writer.dtype, PARAMS, N_SAMPLES, ["log_mstar", "metallicity"])
    writer.append(*builder.build(items))
    writer.finish({})


@pytest.mark.parametrize("reason", [
    'needs a redshift; row 2 of "targets.csv" has none',
    "reads bands g, r, i; uzy.fits has u: z: y",
    "é" * 300,  # longer than the column: shortened, still valid JSON
])
def test_property_errors_round_trip_through_the_file(tmp_path, reason):
    path = tmp_path / "c.h5"
    _write(path, [(RowOrigin("g1", "img.fits", "key1", hdu=0, redshift=0.1),
                   _measurement(oh_error=reason))])
    (row,) = read_catalogue(path)
    assert row["status"] == "ok" and row["error"] == ""
    errors = property_errors(row["property_error"])
    assert list(errors) == ['oh; "v2"']
    if len(reason) < 300:
        assert errors == {'oh; "v2"': reason}
        assert json.loads(row["property_error"]) == errors
    else:
        assert errors['oh; "v2"'].endswith("…") and reason.startswith(errors['oh; "v2"'][:-1])
        assert len(row["property_error"].encode()) <= 400
    stored = stored_measurement(path, 0).properties
    assert stored["mass"].error == "" and stored["mass"].summary["log_mstar_median"] == 10.5
    assert stored['oh; "v2"'].error == errors['oh; "v2"'] and stored['oh; "v2"'].samples is None


def test_every_model_predicting_leaves_property_error_empty(tmp_path):
    path = tmp_path / "c.h5"
    _write(path, [(RowOrigin("g1", "img.fits", "key1"), _measurement())])
    (row,) = read_catalogue(path)
    assert row["property_error"] == "" and property_errors(row["property_error"]) == {}


def test_old_style_property_errors_are_still_read():
    old = "mass: needs a redshift; none given; oh: reads bands g, r, i"
    assert property_errors(old, ["mass", "oh"]) == {"mass": "needs a redshift; none given",
                                                    "oh": "reads bands g, r, i"}
    assert property_errors("mass: no stamp; oh: no stamp") == {"mass": "no stamp",
                                                               "oh": "no stamp"}


def test_stored_measurement_gives_back_what_was_written(tmp_path):
    path = tmp_path / "c.h5"
    m = _measurement(mass_error="needs a redshift")
    _write(path, [(RowOrigin("bad", "missing.fits", "key0", x=3.0, error="no such file"), None),
                  (RowOrigin("g1", "img.fits", "key1", hdu=0, redshift=0.1), m)])
    back = stored_measurement(path, 1)
    assert back.names == PARAMS and back.units == m.units and back.summary == m.summary
    np.testing.assert_array_equal(back.samples, m.samples)
    assert (back.label, back.flags, back.snr, back.stn_scale) == (m.label, 9, 42.0, 0.75)
    assert back.crop_box == m.crop_box and (back.stamp.x, back.stamp.y) == (10.25, 20.5)
    assert back.stamp.calibration == "FLUXMAG0" and back.stamp.masked_fraction == 0.25
    assert back.properties["mass"].error == "needs a redshift"
    oh = back.properties['oh; "v2"']
    assert oh.units == ["dex"] and oh.error == "" and oh.summary["metallicity_mode"] == 8.6
    np.testing.assert_array_equal(oh.samples, np.full((N_SAMPLES, 1), 8.6, np.float32))
    assert failed_rows(path) == [("bad", "no such file")]
    (error_row, _) = read_catalogue(path)
    assert error_row["status"] == "error" and error_row["x"] == 3.0 and np.isnan(error_row["y"])
    with pytest.raises(InputError, match="not measured: no such file"):
        stored_measurement(path, 0)
    with pytest.raises(InputError, match="no row 2"):
        stored_measurement(path, 2)


def test_property_only_row_that_no_model_predicted_is_an_error_row(tmp_path):
    m = _measurement(mass_error="no stamp", oh_error="no redshift")
    m.names, m.summary = [], {}
    rows = RowBuilder(CatalogueWriter(tmp_path / "c.h5", [], None, ["log_mstar"]).dtype, [],
                      None, ["log_mstar"]).build([(RowOrigin("g", "img.fits"), m)]).rows
    assert rows["status"][0] == b"error"
    assert rows["error"][0].decode() == 'mass: no stamp; oh; "v2": no redshift'


def test_single_row_of_a_galaxy_whose_only_property_model_failed_to_load():
    m = _measurement()
    m.properties = {"broken": PropertyMeasurement(model="broken", names=[], units=[], summary={},
                                                  error="cannot be used: no card.json")}
    row = single_row(RowOrigin("g.fits", "g.fits"), m)
    assert row["status"] == "ok" and row["bt_mode"] == 0.1 and "property_error" not in row


@pytest.mark.slow
@pytest.mark.gui
@pytest.mark.parametrize("with_table", [False, True])
def test_gui_row_of_a_stored_galaxy_equals_its_batch_row(tmp_path, monkeypatch, with_table):
    """The catalogue browser's "export this galaxy" writes the row ``--batch`` wrote."""
    from galaxy_inspector.batch import BatchOptions, run_batch
    from galaxy_inspector.gui.posterior_panel import measurement_row
    from galaxy_inspector.shipped import samples_dir
    from galaxy_inspector.viewer.tasks import ModelCache, catalogue_galaxy_task

    monkeypatch.chdir(tmp_path)
    sample = "cube_gri.fits"
    (tmp_path / sample).write_bytes((samples_dir() / sample).read_bytes())
    inputs = [sample]
    if with_table:  # the property model needs a redshift: it predicts only from the table
        (tmp_path / "t.csv").write_text(f"path,id,z\n{sample},cube-z,0.08\n")
        inputs = ["t.csv"]
    run_batch(inputs, "cat.h5", BatchOptions(
        model=["morphology-hsc-g", "properties-dobbels-sim"], n_samples=16,
        save_samples=True))
    (batch_row,) = read_catalogue("cat.h5")
    row = {name: batch_row[name].item() if hasattr(batch_row[name], "item")
           else batch_row[name] for name in batch_row.colnames}
    _, analysis = catalogue_galaxy_task(ModelCache(), "cat.h5", 0, row, "morphology-hsc-g")
    gui_row = measurement_row(analysis)
    assert list(gui_row) == [*batch_row.colnames, "model", "property_models", "demo_models"]
    # The GUI does not know which table row a click was: id and input key name the file.
    own = {"id", "input_key", "input_key_sha256"} if with_table else set()
    for name in set(batch_row.colnames) - own:
        new, old = gui_row[name], row[name]
        assert new == old or (isinstance(old, float) and math.isnan(old) and math.isnan(new)), (
            name, new, old)
    assert (row["property_error"] == "") == with_table == math.isfinite(gui_row["ml_g_median"])
    assert gui_row["demo_models"] == "properties-dobbels-sim"
