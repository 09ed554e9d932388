"""A real ``kill -9`` mid-batch leaves a readable catalogue and no orphan workers; --resume
finishes it with every input exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import h5py
import pytest
from astropy.table import Table

from galaxy_inspector.catalogue import pending_rows

pytestmark = pytest.mark.slow  # a real child process, killed and resumed

N_INPUTS = 160


def _rows(path) -> int:
    """Rows written so far: in the file's last checkpoint and in its journal."""
    try:
        with h5py.File(path, "r") as f:
            return len(f["galaxies"]) + pending_rows(path)
    except (OSError, KeyError):  # not created yet
        return 0


def _children(pid) -> list[int]:
    """Child process ids (Linux /proc; empty elsewhere)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def _alive(pid) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_sigkill_mid_run_then_resume_gives_every_input_once(
        tmp_path, tiny_bundle, write_galaxies):
    paths = write_galaxies(tmp_path / "in", N_INPUTS)
    out = tmp_path / "cat.h5"
    command = [sys.executable, "-m", "galaxy_inspector.cli", "--batch", str(tmp_path / "in"),
               "--out", str(out), "--model", str(tiny_bundle), "--samples", "200",
               "--save-samples", "--quiet", "--workers", "2"]
    run = subprocess.Popen(command, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while _rows(out) < 40 and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    if run.poll() is not None:
        pytest.fail(f"the run ended before it could be killed: {run.stderr.read().decode()}")
    workers = _children(run.pid)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in workers if _alive(p)], "worker processes outlived the batch"

    assert 0 < _rows(out) < N_INPUTS  # the file opens; the rows after its checkpoint wait
    Table.read(out, path="galaxies")  # in the journal for --resume
    resumed = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    table = Table.read(out, path="galaxies")
    assert sorted(table["id"]) == [p.name for p in paths]
    assert set(table["status"]) == {"ok"}
    with h5py.File(out) as f:
        assert f["posterior_samples"].shape[0] == len(table) and f.attrs["complete"]
