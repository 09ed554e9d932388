"""Frames (several open images) and stale state in the Qt-free ``ViewerState``; absolute
paths from the batch's inputs and the catalogue reader."""

import os
from pathlib import Path

import numpy as np
import pytest

from galaxy_inspector.catalogue.reader import resolve_source
from galaxy_inspector.io import expand_inputs
from galaxy_inspector.io.image import SkyImage
from galaxy_inspector.viewer.state import COMPOSITE_BAND, ViewerState


def _planes(n=1, value=1.0):
    return [SkyImage.from_array(np.full((20, 30), value + k, np.float32), pixel_scale=0.2)
            for k in range(n)]


def _measured(state, position, answer):
    """Mark ``position`` and give the state a measurement of it, as a worker would."""
    state.position = position
    assert state.accept_analysis(state.measurement_key(), answer)


def test_each_frame_keeps_its_band_galaxy_and_measurement():
    state = ViewerState()
    state.open_frame("/d/cube.fits", _planes(3))
    assert state.band == COMPOSITE_BAND  # a cube's default band when first shown
    state.band = 1
    state.redshift = 0.3
    _measured(state, (3.0, 4.0), "cube plane 1")
    state.open_frame("/d/b.fits", _planes(1), show=False)
    assert state.path == "/d/cube.fits" and len(state.frames) == 2
    state.step_frame(1)
    assert (state.path, state.band, state.position, state.analysis, state.redshift) == \
        ("/d/b.fits", 0, None, None, None)
    state.step_frame(1)  # wraps round to the first, as it was left
    assert (state.path, state.band, state.position, state.analysis, state.redshift) == \
        ("/d/cube.fits", 1, (3.0, 4.0), "cube plane 1", 0.3)
    assert not state.needs_measurement()
    state.close_frame()
    assert state.path == "/d/b.fits" and state.frame == 0
    state.close_frame()
    assert (state.frames, state.frame, state.path, state.image, state.position) == \
        ((), -1, "", None, None)


def test_band_or_position_change_forgets_the_measurement():
    state = ViewerState()
    state.open_frame("/d/cube.fits", _planes(3))
    _measured(state, (3.0, 4.0), "composite")
    state.band = 2
    assert state.analysis is None and state.position == (3.0, 4.0)
    assert state.needs_measurement()  # of the same galaxy, in the plane now shown
    _measured(state, (3.0, 4.0), "plane 2")
    state.position = (8.0, 9.0)
    assert state.analysis is None


def test_another_sample_count_asks_for_a_new_measurement():
    state = ViewerState()
    state.open_frame("/d/a.fits", _planes(1))
    _measured(state, (3.0, 4.0), "500 samples")
    assert not state.needs_measurement()
    state.n_samples = 2000
    assert state.needs_measurement()


def test_a_late_result_goes_to_what_it_measured_or_nowhere():
    state = ViewerState()
    state.open_frame("/d/a.fits", _planes())
    state.position = (3.0, 4.0)
    for_a = state.measurement_key()
    state.open_frame("/d/b.fits", _planes())  # the user moved on before the answer came
    assert not state.accept_analysis(for_a, "a at (3, 4)")
    assert state.analysis is None  # not shown over b
    state.select_frame(0)
    assert state.analysis == "a at (3, 4)" and not state.needs_measurement()
    state.position = (5.0, 5.0)
    stale = state.measurement_key()
    state.position = (6.0, 6.0)  # clicked again: the first answer is for nothing shown
    assert not state.accept_analysis(stale, "a at (5, 5)")
    assert state.analysis is None and state.needs_measurement()
    shown = state.measurement_key()
    state.model = "another-model"  # a result of the old model is not the one on screen
    assert not state.accept_analysis(shown, "old model")


def test_closing_a_frame_before_the_shown_one_keeps_showing_it():
    state = ViewerState()
    for name in "abc":
        state.open_frame(f"/d/{name}.fits", _planes())
    state.close_frame(0)
    assert state.path == "/d/c.fits" and state.frame == 1
    assert state.frame_index("/d/a.fits") == -1 and state.frame_index("/d/b.fits") == 0


def test_batch_sources_are_absolute_whatever_the_working_folder(tmp_path, monkeypatch,
                                                                sample_paths):
    folder = sample_paths["plain_njy.fits"].parent
    monkeypatch.chdir(folder)
    table = tmp_path / "list.csv"
    table.write_text(f"path\n{os.path.relpath(folder / 'cube_gri.fits', tmp_path)}\n")
    targets = list(expand_inputs(["plain_njy.fits", str(table), "missing.fits"]))
    assert [t.path for t in targets] == [str(folder / "plain_njy.fits"),
                                         str(folder / "cube_gri.fits"),
                                         str(folder / "missing.fits")]


def test_reader_resolves_legacy_relative_sources(tmp_path, monkeypatch):
    catalogue = tmp_path / "cats" / "old.h5"
    (tmp_path / "cats" / "img").mkdir(parents=True)
    (tmp_path / "cats" / "img" / "a.fits").write_bytes(b"")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "b.fits").write_bytes(b"")
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert resolve_source(catalogue, "/abs/c.fits") == "/abs/c.fits"
    assert resolve_source(catalogue, "img/a.fits") == str(tmp_path / "cats" / "img" / "a.fits")
    assert resolve_source(catalogue, "b.fits") == str(tmp_path / "elsewhere" / "b.fits")
    assert resolve_source(catalogue, "gone.fits") == str(tmp_path / "cats" / "gone.fits")
    assert resolve_source(catalogue, "") == ""


@pytest.mark.slow
def test_read_catalogue_gives_absolute_sources_for_a_legacy_catalogue(tmp_path):
    import shutil

    from galaxy_inspector.catalogue import read_catalogue

    reference = Path(__file__).parent / "data" / "reference" / "detect.h5"
    copy = tmp_path / "detect.h5"
    shutil.copy(reference, copy)
    (tmp_path / "resources" / "samples").mkdir(parents=True)
    (tmp_path / "resources" / "samples" / "field_3gal.fits").write_bytes(b"")
    table = read_catalogue(copy)
    assert set(table["source"]) == {str(tmp_path / "resources/samples/field_3gal.fits")}
    assert table["source"].description == "input image path"
