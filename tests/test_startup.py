"""Start-up of a batch: a one-file batch is read without worker processes (issue 13: a
one-galaxy batch answers in under 3 s, and starting a worker alone took more than a second)."""

from __future__ import annotations

import pytest

from galaxy_inspector import batch
from galaxy_inspector.batch import BatchOptions, run_batch
from galaxy_inspector.catalogue import read_catalogue


def _no_workers(*args, **kwargs):
    raise AssertionError("worker processes were started")


def test_a_lone_file_is_read_without_starting_workers(tmp_path, tiny_bundle, write_galaxies,
                                                      monkeypatch):
    path, = write_galaxies(tmp_path / "in", 1)
    monkeypatch.setattr(batch, "ordered_map", _no_workers)
    result = run_batch([path], tmp_path / "cat.h5",
                       BatchOptions(model=str(tiny_bundle), n_samples=16, workers=2))
    assert (result.done, result.failed) == (1, 0)
    assert list(read_catalogue(tmp_path / "cat.h5")["status"]) == ["ok"]


def test_two_files_still_go_to_the_workers(tmp_path, tiny_bundle, write_galaxies,
                                           monkeypatch):
    write_galaxies(tmp_path / "in", 2)
    monkeypatch.setattr(batch, "ordered_map", _no_workers)
    with pytest.raises(AssertionError, match="worker processes"):
        run_batch([tmp_path / "in"], tmp_path / "cat.h5",
                  BatchOptions(model=str(tiny_bundle), n_samples=16, workers=2))
