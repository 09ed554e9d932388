"""Catalogues written today equal the reference catalogues written before the layout refactor.

``tests/data/reference/*.h5`` were written by the commands below, from the repository root, with
the code of commit 19141d5. Each is rewritten here and compared column by column, with the
sample datasets and the root attributes (run-specific ones such as the creation time aside).
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from galaxy_inspector.catalogue import property_errors
from galaxy_inspector.cli import main

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = Path("tests/data/reference")
#: Where the reference files were written: absolute paths inside them start here.
REFERENCE_ROOT = "/work/main"
#: Root attributes that differ between any two runs (times, the command typed, the version).
VOLATILE_ATTRS = {"created", "finished", "resumed", "command_line", "app_version"}

pytestmark = pytest.mark.slow

RUNS = {
    "morphology": ["--batch", "resources/samples", "--save-samples"],
    "wu_boada": ["--batch", "resources/samples/galaxies_radec.csv",
                 str(REFERENCE / "targets_z.csv"), "--model", "morphology-hsc-g",
                 "--model", "properties-wu-boada-sim", "--save-samples"],
    "dobbels": ["--batch", str(REFERENCE / "targets_z.csv"), "--model",
                "properties-dobbels-sim", "--save-samples"],
    "detect": ["--batch", "resources/samples/field_3gal.fits", "--detect"],
}


def _relative(text: str, root: str) -> str:
    """An absolute path (or a text holding some) made relative to the checkout it came from."""
    return text.replace(root.rstrip("/") + "/", "")


def _assert_same_values(name: str, new: np.ndarray, old: np.ndarray) -> None:
    assert new.shape == old.shape, name
    if new.dtype.kind == "f":
        assert (np.isnan(new) == np.isnan(old)).all(), f"{name}: NaNs differ"
        finite = ~np.isnan(old)
        np.testing.assert_allclose(new[finite], old[finite], rtol=1e-6, atol=0, err_msg=name)
    else:
        assert (new == old).all(), f"{name}: {new} != {old}"


def _assert_same_rows(new: np.ndarray, old: np.ndarray) -> None:
    assert new.dtype == old.dtype  # the same columns, types and widths, in the same order
    for column in old.dtype.names:
        if column == "property_error":
            assert ([property_errors(v.decode()) for v in new[column]]
                    == [property_errors(v.decode()) for v in old[column]])
        elif column == "input_key":
            assert ([_relative(v.decode(), str(ROOT)) for v in new[column]]
                    == [_relative(v.decode(), REFERENCE_ROOT) for v in old[column]])
        else:
            _assert_same_values(column, new[column], old[column])


def _assert_same_column_meta(new, old) -> None:
    """Units, types and descriptions equal; only property_error's description changed (the
    column holds JSON since the refactor)."""
    from astropy.table import meta

    new_cols, old_cols = (meta.get_header_from_yaml(line.decode() for line in lines)["datatype"]
                          for lines in (new, old))
    assert [c["name"] for c in new_cols] == [c["name"] for c in old_cols]
    for new_col, old_col in zip(new_cols, old_cols, strict=True):
        if new_col["name"] == "property_error":
            assert "JSON" in new_col.pop("description") and old_col.pop("description")
        assert new_col == old_col


def _comparable_attrs(attrs, root: str) -> dict:
    out = {}
    for key, value in attrs.items():
        if key in VOLATILE_ATTRS:
            continue
        if key == "models":  # bundle folders are absolute paths
            value = [{**m, "path": _relative(m["path"], root)} for m in json.loads(value)]
        elif key == "summary":  # counts of the run, without its duration
            value = {k: v for k, v in json.loads(value).items() if k != "seconds"}
        out[key] = value.item() if isinstance(value, np.generic) else value
    return out


@pytest.mark.parametrize("name", list(RUNS))
def test_catalogue_equals_the_reference_written_before_the_refactor(name, tmp_path,
                                                                    monkeypatch):
    monkeypatch.chdir(ROOT)  # ``source`` holds the paths as given, relative to the root
    out = tmp_path / f"{name}.h5"
    assert main([*RUNS[name], "--out", str(out), "--quiet"]) in (0, 2)
    with h5py.File(out) as new, h5py.File(REFERENCE / f"{name}.h5") as old:
        assert sorted(new) == sorted(old)
        _assert_same_rows(new["galaxies"][:], old["galaxies"][:])
        _assert_same_column_meta(new["galaxies.__table_column_meta__"],
                                 old["galaxies.__table_column_meta__"])
        if "posterior_samples" in old:
            _assert_same_values("posterior_samples", new["posterior_samples"][:],
                                old["posterior_samples"][:])
            assert dict(new["posterior_samples"].attrs) == dict(old["posterior_samples"].attrs)
        for target in old.get("property_samples", {}):
            dataset = f"property_samples/{target}"
            assert sorted(new["property_samples"]) == sorted(old["property_samples"])
            _assert_same_values(dataset, new[dataset][:], old[dataset][:])
            assert dict(new[dataset].attrs) == dict(old[dataset].attrs)
        assert sorted(new.attrs) == sorted(old.attrs)
        assert (_comparable_attrs(new.attrs, str(ROOT))
                == _comparable_attrs(old.attrs, REFERENCE_ROOT))
