"""One input cannot fail its neighbours, crash or hang the run, or be measured wrongly in
silence (issue #15): each hostile input gets its own row with a one-line message."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from galaxy_inspector import batch
from galaxy_inspector.batch import BatchOptions, run_batch
from galaxy_inspector.catalogue import CatalogueWriter, read_catalogue
from galaxy_inspector.cli import main
from galaxy_inspector.errors import InputError, printable, user_message
from galaxy_inspector.io import read_raster

#: The real one, for the stand-in below (which replaces it in the parent process only).
_prepare_unit = batch.prepare_unit


@pytest.fixture(scope="module")
def bundle(tiny_bundle_factory):
    return str(tiny_bundle_factory())


def _options(bundle, **kw):
    return BatchOptions(model=bundle, n_samples=16, **kw)


def _rows(out) -> dict:
    table = read_catalogue(out)
    assert len(set(table["id"])) == len(table), "an input has more than one row"
    return {row["id"]: row for row in table}


def write_overflowing_image(path) -> None:
    """Uncalibrated, sky noise 1e-30 and a core of 1e30: scaled to the nominal sky noise, the
    core overflows float32."""
    data = np.random.default_rng(1).normal(0, 1e-30, (100, 100)).astype(np.float32)
    data[45:55, 45:55] = 1e30
    fits.PrimaryHDU(data).writeto(path)


@pytest.fixture
def no_hang():
    """Fail instead of hanging (a named pipe opened for reading waits forever for a writer)."""
    def expired(*_):
        raise TimeoutError("the batch hung")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")
@pytest.mark.parametrize("checked_first", [True, False])
def test_an_overflowing_image_fails_alone(tmp_path, bundle, write_galaxies, monkeypatch,
                                          checked_first):
    """Its stamp is refused before batching; without that check, the batch the network refuses
    is measured again stamp by stamp, so its neighbours still succeed."""
    write_galaxies(tmp_path / "in", 4)
    write_overflowing_image(tmp_path / "in" / "gal0001b.fits")
    if not checked_first:
        monkeypatch.setattr(batch, "_check_stamp", lambda stamp: None)
    result = run_batch([tmp_path / "in"], tmp_path / "cat.h5", _options(bundle))
    rows = _rows(tmp_path / "cat.h5")
    assert (result.done, result.failed) == (4, 1)
    bad = rows.pop("gal0001b.fits")
    assert bad["status"] == "error"
    assert ("overflow" if checked_first else "NaN or infinite") in bad["error"]
    assert {row["status"] for row in rows.values()} == {"ok"}


def test_resume_retry_errors_measures_error_rows_again_and_keeps_one_row_each(
        tmp_path, bundle, write_galaxies):
    paths = write_galaxies(tmp_path / "in", 3)
    good = paths[1].read_bytes()
    paths[1].write_bytes(b"not a FITS file")
    out = tmp_path / "cat.h5"
    options = _options(bundle, save_samples=True)
    assert run_batch([tmp_path / "in"], out, options).failed == 1
    paths[1].write_bytes(good)  # the user fixes the file
    plain = run_batch([tmp_path / "in"], out, _options(bundle, save_samples=True, resume=True))
    assert (plain.done, plain.skipped) == (0, 3)  # a plain resume keeps error rows
    again = run_batch([tmp_path / "in"], out,
                      _options(bundle, save_samples=True, resume=True, retry_errors=True))
    assert (again.done, again.failed, again.skipped) == (1, 0, 2)
    table = read_catalogue(out)
    assert sorted(table["id"]) == [p.name for p in paths]
    assert set(table["status"]) == {"ok"}
    with h5py.File(out) as f:  # the samples stay row-aligned after the old row is dropped
        samples = f["posterior_samples"][:]
        assert f.attrs["complete"]
    assert samples.shape[0] == 3 and np.isfinite(samples).all()
    np.testing.assert_allclose(np.median(samples[:, :, 1], axis=1), table["re_arcsec_median"],
                               rtol=1e-5)
    with pytest.raises(InputError, match="needs --resume"):
        run_batch([tmp_path / "in"], tmp_path / "other.h5", _options(bundle, retry_errors=True))


def test_a_retry_cut_short_before_dropping_old_rows_is_tidied_by_the_next_resume(
        tmp_path, bundle, write_galaxies, monkeypatch):
    paths = write_galaxies(tmp_path / "in", 2)
    good = paths[0].read_bytes()
    paths[0].write_bytes(b"")
    out = tmp_path / "cat.h5"
    run_batch([tmp_path / "in"], out, _options(bundle))
    paths[0].write_bytes(good)
    with monkeypatch.context() as m:  # as if killed between the new rows and the drop
        m.setattr(CatalogueWriter, "drop_superseded_rows", lambda self: 0)
        run_batch([tmp_path / "in"], out, _options(bundle, resume=True, retry_errors=True))
    assert len(read_catalogue(out)) == 3
    again = run_batch([tmp_path / "in"], out, _options(bundle, resume=True))
    assert (again.done, again.skipped) == (0, 2)  # the new rows count, the old one goes
    rows = _rows(out)
    assert sorted(rows) == [p.name for p in paths]
    assert {row["status"] for row in rows.values()} == {"ok"}


def test_names_and_special_files_each_get_one_row_and_resume_skips_them(
        tmp_path, bundle, write_galaxies, no_hang):
    folder = tmp_path / "in"
    (good,) = write_galaxies(folder, 1)
    non_utf8 = os.fsdecode(os.fsencode(folder) + b"/g\xff.fits")
    shutil.copy(good, non_utf8)
    shutil.copy(good, folder / "new\nline.fits")
    os.mkfifo(folder / "pipe.fits")
    os.symlink("loop_b.fits", folder / "loop_a.fits")
    os.symlink("loop_a.fits", folder / "loop_b.fits")
    os.symlink("missing.fits", folder / "dangling.fits")
    (tmp_path / "empty.fits").mkdir()  # a folder named like an image, holding none
    os.mkfifo(tmp_path / "pipe.csv")
    inputs = [folder, tmp_path / "empty.fits", tmp_path / "pipe.csv"]
    out = tmp_path / "cat.h5"
    result = run_batch(inputs, out, _options(bundle))
    rows = _rows(out)
    assert {k: rows[k]["status"] for k in ("gal0000.fits", "g\\xff.fits", "new\\nline.fits")} \
        == dict.fromkeys(("gal0000.fits", "g\\xff.fits", "new\\nline.fits"), "ok")
    assert "named pipe" in rows["pipe.fits"]["error"]
    assert "named pipe" in rows["pipe.csv"]["error"]
    assert "loops" in rows["loop_a.fits"]["error"] and "loops" in rows["loop_b.fits"]["error"]
    assert "points to nothing" in rows["dangling.fits"]["error"]
    assert "holds no images" in rows["empty.fits"]["error"]
    assert (result.done, result.failed) == (3, 6) and len(rows) == 9
    assert all("\n" not in row["source"] for row in rows.values())
    again = run_batch(inputs, out, _options(bundle, resume=True))
    assert (again.done, again.failed, again.skipped) == (0, 0, 9)  # keys exact, nothing twice


def test_table_rows_with_unusable_positions_are_error_rows(tmp_path, bundle, write_galaxies):
    """NaN or text coordinates are errors, not the image centre; an empty cell means no
    position; the byte-order mark Excel writes is read."""
    (path,) = write_galaxies(tmp_path, 1)
    rows = [f"{path.name},{ident},{x},{y}" for ident, x, y in [
        ("given", 49.5, 49.5), ("nan", "nan", "nan"), ("text", "abc", 49.5),
        ("infinite", "inf", 49.5), ("blank", "", "")]]
    (tmp_path / "t.csv").write_text("\ufeffpath,id,x,y\n" + "\n".join(rows) + "\n",
                                    encoding="utf-8")
    run_batch([tmp_path / "t.csv"], tmp_path / "cat.h5", _options(bundle))
    rows = _rows(tmp_path / "cat.h5")
    assert rows["given"]["status"] == rows["blank"]["status"] == "ok"
    assert "no usable position (x 'nan', y 'nan'" in rows["nan"]["error"]
    assert "(x 'abc': not a finite number)" in rows["text"]["error"]
    assert "x 'inf'" in rows["infinite"]["error"]


def test_a_fits_table_with_bytes_that_are_not_utf8_is_read(tmp_path, bundle, write_galaxies):
    (path,) = write_galaxies(tmp_path, 1)
    odd = os.fsencode(tmp_path) + b"/g\xe9.fits"  # a Latin-1 name
    shutil.copy(path, os.fsdecode(odd))
    fits.BinTableHDU.from_columns([
        fits.Column("path", "40A", array=[os.path.basename(odd)]),
        fits.Column("id", "8A", array=[b"caf\xe9"])]).writeto(tmp_path / "t.fits")
    run_batch([tmp_path / "t.fits"], tmp_path / "cat.h5", _options(bundle))
    (row,) = read_catalogue(tmp_path / "cat.h5")
    assert row["status"] == "ok" and row["id"] == "caf\ufffd" and row["source"].endswith(
        "g\\xe9.fits")


def test_16_bit_png_keeps_its_levels(tmp_path):
    levels = np.arange(0, 65536, 16, dtype=np.uint16).reshape(64, 64)
    Image.fromarray(levels).save(tmp_path / "deep.png")
    image = read_raster(tmp_path / "deep.png")
    np.testing.assert_allclose(np.flipud(image.data), levels * (255 / 65535), rtol=1e-6)


def test_messages_escape_control_characters_and_undecodable_bytes():
    name = os.fsdecode(b"bad\nname\xff.fits")
    message = user_message(InputError(f"{name} is empty (0 bytes)"))
    assert message == "bad\\nname\\xff.fits is empty (0 bytes)"
    assert printable(message) == message and message.encode("utf-8")


@pytest.mark.parametrize("argv, message", [
    (["--samples", "0"], "--samples 0 must be at least 1"),
    (["--zero-point", "inf"], "--zero-point inf is not an AB zero point"),
    (["--zero-point", "1000"], "between 0 and 60"),
    (["--zero-point", "nan"], "not an AB zero point"),
    (["--seed", "1e23"], "invalid int value"),
    (["--seed", str(2 ** 64)], "out of range"),
    (["--seed", "-1"], "out of range"),
    (["--pixel-scale", "inf"], "must be positive and finite"),
    (["--retry-errors"], "--retry-errors needs --resume"),
])
def test_options_that_would_give_wrong_rows_are_refused(tmp_path, capsys, bundle, argv,
                                                        message):
    (tmp_path / "in").mkdir()
    try:
        code = main(["--batch", str(tmp_path / "in"), "--out", str(tmp_path / "cat.h5"),
                     "--model", bundle, "--quiet", *argv])
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 1 and message in err and err.count("\n") == 1
    assert not (tmp_path / "cat.h5").exists()


def test_a_special_file_as_output_is_refused(tmp_path, capsys, bundle):
    (tmp_path / "in").mkdir()
    code = main(["--batch", str(tmp_path / "in"), "--out", os.devnull, "--overwrite",
                 "--model", bundle, "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "not a regular file" in err and err.count("\n") == 1


def _die_on_marked_units(targets, *args, **kwargs):
    """Stands in for ``prepare_unit`` in the workers: the reader of a file named *die* is
    killed, as the out-of-memory killer would."""
    if "die" in Path(targets[0].path).name:
        os.kill(os.getpid(), signal.SIGKILL)
    return _prepare_unit(targets, *args, **kwargs)


@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_only_its_file_fails(tmp_path, bundle, write_galaxies,
                                                             monkeypatch):
    paths = write_galaxies(tmp_path / "in", 7)
    shutil.copy(paths[3], tmp_path / "in" / "gal0003_die.fits")
    monkeypatch.setattr(batch, "prepare_unit", _die_on_marked_units)
    result = run_batch([tmp_path / "in"], tmp_path / "cat.h5", _options(bundle, workers=2))
    rows = _rows(tmp_path / "cat.h5")
    assert (result.done, result.failed) == (7, 1) and len(rows) == 8
    assert rows.pop("gal0003_die.fits")["error"] == (
        "the worker reading this file died (signal 9, SIGKILL: killed, often by the "
        "out-of-memory killer)")
    assert {row["status"] for row in rows.values()} == {"ok"}


@pytest.mark.slow
def test_ctrl_c_with_workers_stops_quietly_and_resume_finishes(tmp_path, bundle,
                                                               write_galaxies):
    """Ctrl-C at a terminal signals the whole process group, workers included."""
    write_galaxies(tmp_path / "in", 60)
    out = tmp_path / "cat.h5"
    command = [sys.executable, "-m", "galaxy_inspector.cli", "--batch", str(tmp_path / "in"),
               "--out", str(out), "--model", bundle, "--samples", "16", "--workers", "2",
               "--quiet"]
    run = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while not out.exists() and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)  # the workers are starting
    os.killpg(run.pid, signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert err.strip().splitlines()[-1].startswith("galaxy-inspector: interrupted")
    finish = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=300)
    assert finish.returncode == 0, finish.stderr
    assert sorted(read_catalogue(out)["id"]) == [f"gal{i:04d}.fits" for i in range(60)]
