"""The issue #15 "Done when": a batch mixing about 140 hostile inputs with good cutouts gives
every hostile input its own error row with a one-line message and every good one an ok row,
with no traceback, crash or hang, with one worker or two; ``--resume`` then finds it done."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hostile_inputs import write_hostile_batch

from galaxy_inspector.catalogue import read_catalogue

pytestmark = pytest.mark.slow  # a real command-line run over ~150 inputs


@pytest.fixture(scope="module")
def bundle(tiny_bundle_factory):
    return str(tiny_bundle_factory())


@pytest.mark.parametrize("workers", [1, 2])
def test_hostile_inputs_each_get_one_error_row_and_good_ones_succeed(
        tmp_path, bundle, write_galaxies, workers):
    inputs, expected = write_hostile_batch(tmp_path, write_galaxies(tmp_path / "cutouts", 10))
    assert list(expected.values()).count("error") >= 140
    out = tmp_path / "cat.h5"
    command = [sys.executable, "-m", "galaxy_inspector.cli", "--batch", *inputs, "--out",
               str(out), "--model", bundle, "--samples", "16", "--workers", str(workers)]
    run = subprocess.run(command, capture_output=True, text=True, errors="backslashreplace",
                         timeout=600)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr and "Error" not in run.stderr.replace(
        "error", ""), run.stderr
    table = read_catalogue(out)
    ids = list(table["id"])
    assert sorted(ids) == sorted(expected), (set(ids) ^ set(expected))
    status = {row["id"]: row["status"] for row in table}
    wrong = {i: (status[i], e) for i, e in expected.items() if status[i] != e}
    assert not wrong, wrong
    for row in table[table["status"] == "error"]:
        message = row["error"]
        assert message and "\n" not in message and "internal error" not in message, (
            row["id"], message)
    resumed = subprocess.run(command + ["--resume"], capture_output=True, text=True,
                             errors="backslashreplace", timeout=600)
    assert resumed.returncode == 0 and "Traceback" not in resumed.stderr, resumed.stderr
    assert f"0 done, 0 failed, {len(expected)} skipped" in resumed.stderr
    assert len(read_catalogue(out)) == len(expected)
