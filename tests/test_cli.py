"""The command line: help, exit statuses 0/1/2, one-line errors, export, lazy GUI hand-off."""

from __future__ import annotations

import io
import subprocess
import sys
import types

import pytest

from galaxy_inspector.batch import BatchProgress
from galaxy_inspector.catalogue import read_catalogue
from galaxy_inspector.cli import _ProgressBar, main


@pytest.fixture(scope="module")
def bundle(tiny_bundle_factory):
    return str(tiny_bundle_factory())


@pytest.fixture(scope="module")
def images(tmp_path_factory, write_galaxies):
    return write_galaxies(tmp_path_factory.mktemp("images"), 2)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_help_has_examples_and_exits_zero(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    assert "--batch" in out and "examples:" in out and "--resume" in out and "0-based" in out


@pytest.mark.parametrize("argv, message", [
    (["--batch", "x.fits"], "needs --out"),
    (["--batch", "--out", "c.h5"], "at least one INPUT"),
    (["--samples", "many"], "invalid int"),
    (["--pixel-scale", "-1"], "must be positive"),
    (["--batch", "--export", "a", "b"], "not allowed with"),
])
def test_bad_options_exit_1_with_one_line(capsys, argv, message):
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    assert code == 1
    assert message in _one_line_error(capsys)


def test_unreadable_model_and_unwritable_output_exit_1(tmp_path, capsys, images, bundle):
    assert main(["--batch", str(images[0]), "--out", str(tmp_path / "c.h5"),
                 "--model", str(tmp_path / "nope")]) == 1
    assert "no model bundle" in _one_line_error(capsys)
    assert main(["--batch", str(images[0]), "--out", str(tmp_path / "no" / "dir" / "c.h5"),
                 "--model", bundle]) == 1
    assert "cannot write catalogue" in _one_line_error(capsys)


def test_exit_0_when_all_succeed_2_when_some_fail_and_export(tmp_path, capsys, images, bundle):
    out = tmp_path / "c.h5"
    assert main(["--batch", *map(str, images), "--out", str(out), "--model", bundle,
                 "--samples", "8", "--workers", "1"]) == 0
    assert "2 done, 0 failed" in capsys.readouterr().err
    (tmp_path / "gone.fits").write_bytes(b"")
    assert main(["--batch", str(images[0]), str(tmp_path / "gone.fits"), "--out", str(out),
                 "--model", bundle, "--samples", "8", "--overwrite", "--quiet",
                 "--workers", "1"]) == 2
    assert capsys.readouterr().err == ""
    assert main(["--export", str(out), str(tmp_path / "c.csv")]) == 0
    assert "gone.fits" in (tmp_path / "c.csv").read_text()
    assert list(read_catalogue(out)["status"]) == ["ok", "error"]


def test_input_missing_on_the_command_line_exits_1_before_writing(tmp_path, capsys, images,
                                                                   bundle):
    out = tmp_path / "c.h5"
    assert main(["--batch", str(images[0]), str(tmp_path / "gone.fits"), "--out", str(out),
                 "--model", bundle]) == 1
    assert f"no such file or folder: {tmp_path / 'gone.fits'};" in _one_line_error(capsys)
    assert not out.exists()


def test_progress_bar_counts_inputs_against_the_total():
    stream = io.StringIO()
    _ProgressBar(stream, total=10)(BatchProgress(done=4, failed=1, inputs=5, elapsed=2.0))
    assert "[###############...............] 5/10 inputs, 1 failed" in stream.getvalue()


@pytest.mark.slow
def test_console_script_never_shows_a_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "galaxy_inspector.cli", "--export",
                             str(tmp_path / "missing.h5"), str(tmp_path / "o.csv")],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr == (f"galaxy-inspector: error: no catalogue at {tmp_path / 'missing.h5'}: "
                             "no such file\n")


def test_gui_and_screenshot_are_handed_to_the_gui_module(monkeypatch):
    calls = []
    fake = types.ModuleType("galaxy_inspector.gui.app")
    fake.main = lambda files: calls.append(("main", files)) or 0
    fake.screenshot = lambda out, files: calls.append(("shot", out, files)) or 0
    monkeypatch.setitem(sys.modules, "galaxy_inspector.gui.app", fake)
    import galaxy_inspector.gui as gui

    monkeypatch.setattr(gui, "app", fake, raising=False)
    assert main(["a.fits"]) == 0 and main(["--screenshot", "s.png", "b.fits"]) == 0
    assert calls == [("main", ["a.fits"]), ("shot", "s.png", ["b.fits"])]


def test_sky_subtracted_reaches_every_row(tmp_path, images, bundle):
    out = tmp_path / "c.h5"
    assert main(["--batch", str(images[0]), "--out", str(out), "--model", bundle,
                 "--samples", "8", "--workers", "1", "--quiet", "--sky-subtracted"]) == 0
    assert read_catalogue(out)["calibration"][0].endswith("its sky given as 0")
