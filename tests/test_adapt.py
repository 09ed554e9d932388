"""``galaxy-inspector-train adapt`` end to end on synthetic survey images of known properties:
noise of a known per-pixel sigma and correlation, a known Moffat PSF, stars and galaxies."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

PIXEL_SCALE = 0.168
NOISE_SIGMA = 3.0  # nJy per pixel
PSF_FWHM = 0.9  # arcsec
CORRELATION_SIGMA_PX = 0.5  # Gaussian kernel the white noise is smoothed with


def _noise_kernel() -> np.ndarray:
    """The smoothing kernel, of unit L2 norm so that the noise keeps its per-pixel sigma."""
    r = np.arange(-4, 5)
    kernel = np.exp(-0.5 * (r[:, None] ** 2 + r[None, :] ** 2) / CORRELATION_SIGMA_PX ** 2)
    return kernel / math.sqrt(np.sum(kernel ** 2))


def true_lag1_correlation() -> float:
    k = _noise_kernel()
    return float(np.sum(k[:, 1:] * k[:, :-1]))


def write_survey(folder, n_images: int = 3, size: int = 520, seed: int = 0, stars: int = 14,
                 galaxies: int = 3, per_row: int | None = None) -> list[Path]:
    """FITS images in nJy (BUNIT) with a TAN WCS of ``PIXEL_SCALE``: correlated noise,
    ``stars`` Moffat stars and ``galaxies`` exponential discs through the same PSF."""
    import galsim
    from astropy.io import fits
    from astropy.wcs import WCS
    from scipy.ndimage import convolve

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    psf = galsim.Moffat(beta=3.0, fwhm=PSF_FWHM)
    paths = []
    for i in range(n_images):
        data = convolve(rng.normal(0.0, NOISE_SIGMA, (size, size)), _noise_kernel(),
                        mode="wrap")
        sources = [(psf, rng.uniform(4e3, 2e4)) for _ in range(stars)]
        sources += [(galsim.Convolve(galsim.Exponential(half_light_radius=rng.uniform(0.5, 1.5))
                                     .shear(q=rng.uniform(0.4, 1.0),
                                            beta=rng.uniform(0, 180) * galsim.degrees), psf),
                     rng.uniform(2e4, 1e5)) for _ in range(galaxies)]
        for k, (profile, flux) in enumerate(sources):
            if per_row:  # a crowded field: sources on a regular grid
                x, y = (20 + (k % per_row) * (size - 40) / max(per_row - 1, 1),
                        20 + (k // per_row) * (size - 40) / max(per_row - 1, 1))
            else:
                x, y = rng.uniform(25, size - 25, 2)
            stamp = (profile * flux).drawImage(nx=41, ny=41, scale=PIXEL_SCALE,
                                               offset=(x % 1 - 0.5, y % 1 - 0.5)).array
            x0, y0 = int(x) - 20, int(y) - 20
            ys, xs = slice(max(y0, 0), min(y0 + 41, size)), slice(max(x0, 0), min(x0 + 41, size))
            data[ys, xs] += stamp[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
        wcs = WCS(naxis=2)
        wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        wcs.wcs.crval = [150.0 + i * 0.1, 2.0]
        wcs.wcs.crpix = [size / 2, size / 2]
        wcs.wcs.cdelt = [-PIXEL_SCALE / 3600, PIXEL_SCALE / 3600]
        header = wcs.to_header()
        header["BUNIT"] = "nJy"
        path = folder / f"field{i:02d}.fits"
        fits.PrimaryHDU(data.astype(np.float32), header=header).writeto(path)
        paths.append(path)
    return paths


def _adapt_command(images, out, model, *extra) -> list[str]:
    """The tiniest adaptation: 60 galaxies, one epoch, few samples, one worker."""
    return [sys.executable, "-m", "training", "--json", "adapt", "--images", str(images),
            "--out", str(out), "--model", str(model), "--n", "60", "--epochs", "1",
            "--batch-size", "16", "--samples", "20", "--workers", "1", "--device", "cpu",
            *extra]


def _events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


@pytest.mark.slow
def test_adapt_killed_resumes_and_writes_a_bundle_with_the_survey_and_a_before_after_report(
        tmp_path, tiny_bundle):
    write_survey(tmp_path / "survey")
    out = tmp_path / "bundles" / "my-survey"
    command = _adapt_command(tmp_path / "survey", out, tiny_bundle)
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    seen = []
    for line in child.stdout:  # stopped once the galaxies are injected, as the GUI cancels
        seen.append(line)
        if '"step": "train"' in line:
            child.send_signal(signal.SIGTERM)
            break
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == 130
    assert stderr.strip().splitlines()[-1] == (
        "galaxy-inspector-train: adapt interrupted; run it again with --resume to continue "
        "from the last finished step")
    state = json.loads((out / "work" / "state.json").read_text())
    assert state["done"] == ["survey", "inject-train", "inject-calibration", "inject-test"]

    refused = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "add --resume" in refused.stderr
    other = subprocess.run(_adapt_command(tmp_path / "survey", out, tiny_bundle, "--resume",
                                          "--seed", "2"), capture_output=True, text=True,
                           timeout=120)
    assert other.returncode == 1 and "--seed" in other.stderr.splitlines()[-1]

    t0 = time.time()
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True,
                             timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    events = _events(resumed.stdout)
    steps = [e["step"] for e in events if e["event"] == "step"]
    assert steps == ["train", "calibrate", "bundle", "evaluate", "evaluate-before"]
    assert events[-2] == {"event": "bundle", "path": str(out)}
    print(f"resumed adaptation took {time.time() - t0:.0f} s")

    from galaxy_inspector.engine import load_model

    model = load_model(out)  # the app loads it (weights' SHA-256 checked)
    card = model.bundle.card
    assert card["name"] == "my-survey"
    assert card["training"]["adapted_from"]["name"] == "tiny-test-morphology"
    assert card["posterior"]["calibrated"]
    s = card["training"]["survey"]
    assert s["images_used"] == 3 and s["blank_patches"] >= 20
    assert s["pixel_scale_arcsec"]["median"] == pytest.approx(PIXEL_SCALE, rel=1e-6)
    assert s["sky_sigma_njy_per_pixel"]["median"] == pytest.approx(NOISE_SIGMA, rel=0.1)
    assert s["psf_fwhm_arcsec"]["median"] == pytest.approx(PSF_FWHM, rel=0.1)
    from_stars = [i for i in s["per_image"] if i["psf_source"].startswith("measured from")]
    assert len(from_stars) >= 2  # the others get the survey's median, and say so
    assert all(i["psf_fwhm_arcsec"] == pytest.approx(PSF_FWHM, rel=0.1) for i in from_stars)
    assert s["noise_correlation"]["1,0"]["median"] == pytest.approx(true_lag1_correlation(),
                                                                    abs=0.05)
    assert s["binned_noise_ratio"]["median"] > 1.1  # correlated, not white
    assert card["training_ranges"]["sky_sigma_njy"][0] > 0
    report = out / "report"
    comparison = json.loads((report / "adaptation.json").read_text())
    assert comparison["test_galaxies"] == 9
    for figure in comparison["figures"].values():
        assert set(figure) == {"before", "after"} and all(map(math.isfinite, figure.values()))
    assert (report / "before_after.png").stat().st_size > 10_000
    assert (report / "before" / "report.json").is_file()
    assert "## Before and after adaptation" in (report / "report.md").read_text()
    assert "before_adaptation" in card["test"]
    assert not (out / "work").exists()  # the injected sets are gone, the bundle stays

    again = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and '"note": "already adapted"' in again.stdout


def test_too_few_blank_patches_are_refused_with_the_reason(tmp_path, tiny_bundle, capsys):
    from training.cli import main

    write_survey(tmp_path / "crowded", n_images=1, size=300, stars=49, galaxies=0, per_row=7)
    code = main(["adapt", "--images", str(tmp_path / "crowded"), "--out", str(tmp_path / "o"),
                 "--model", str(tiny_bundle), "--psf-fwhm", "0.9"])
    assert code == 1
    message = capsys.readouterr().err.strip()
    assert "\n" not in message
    assert message.startswith("galaxy-inspector-train: error: only 0 blank-sky patches found "
                              "in 1 image(s)")
    assert "20 needed" in message and "no source within 3″ of its centre" in message


def test_an_uncalibrated_image_is_refused_naming_the_zero_point(tmp_path, tiny_bundle, capsys):
    from astropy.io import fits

    from training.cli import main

    (path,) = write_survey(tmp_path / "raw", n_images=1, size=300, stars=3, galaxies=0)
    with fits.open(path, mode="update") as hdul:
        del hdul[0].header["BUNIT"]
    code = main(["adapt", "--images", str(tmp_path / "raw"), "--out", str(tmp_path / "o"),
                 "--model", str(tiny_bundle), "--psf-fwhm", "0.9"])
    assert code == 1
    message = capsys.readouterr().err
    assert "is not flux-calibrated" in message and "give --zero-point" in message


def test_the_survey_measures_noise_correlation_and_psf_of_an_image(tmp_path):
    from galaxy_inspector.engine import StampSpec
    from training import survey

    (path,) = write_survey(tmp_path / "s", n_images=1, size=520, seed=3, stars=20)
    image, problem = survey.read_survey_image(str(path))
    assert problem == ""
    measured, patches = survey.measure_image(image, 0, StampSpec(128, 0.168, 1.0, (0.6, 1.6),
                                                                  True), seed=1)
    assert measured.sky_sigma_njy == pytest.approx(NOISE_SIGMA, rel=0.05)
    assert measured.noise_correlation["1,0"] == pytest.approx(true_lag1_correlation(), abs=0.05)
    assert measured.noise_correlation["0,1"] == pytest.approx(true_lag1_correlation(), abs=0.05)
    assert measured.psf_fwhm_arcsec == pytest.approx(PSF_FWHM, rel=0.05)
    assert 0 < len(patches) <= measured.blank_positions <= 16
    assert patches.data.shape[1:] == (128, 128)
    # A patch is sky: its median is the sky level, its spread the noise.
    assert np.median(patches.data) == pytest.approx(0.0, abs=0.5)
    assert np.median(patches.sky_sigma) == pytest.approx(NOISE_SIGMA, rel=0.15)


@pytest.mark.gui
def test_the_adapt_page_builds_the_command_line(qtbot, gui_settings, tmp_path):
    from galaxy_inspector.gui.training_dialog import TrainingDialog

    dialog = TrainingDialog()
    qtbot.addWidget(dialog)
    dialog.set_field("adapt", "images", str(tmp_path / "survey"))
    dialog.set_field("adapt", "out", str(tmp_path / "bundles" / "my-survey"))
    dialog.set_field("adapt", "n", 600)
    assert dialog.arguments() == [
        "-m", "training", "--json", "adapt", "--images", str(tmp_path / "survey"),
        "--out", str(tmp_path / "bundles" / "my-survey"), "--n", "600", "--epochs", "4",
        "--seed", "1", "--resume"]  # the PSF measured on the stars: no PSF option
    assert dialog.loss_plot.isVisibleTo(dialog)
    dialog.set_field("adapt", "psf-fwhm", 0.75)
    assert dialog.arguments()[6:8] == ["--psf-fwhm", "0.75"]
    dialog.set_field("adapt", "psf", str(tmp_path / "psf.fits"))  # an image replaces the FWHM
    assert "--psf-fwhm" not in dialog.arguments()
    assert dialog.arguments()[6:8] == ["--psf", str(tmp_path / "psf.fits")]


@pytest.mark.gui
@pytest.mark.slow
def test_cancel_stops_an_adaptation(qtbot, gui_settings, tmp_path, tiny_bundle):
    from PySide6.QtCore import QProcess

    from galaxy_inspector.gui.training_dialog import TrainingDialog

    write_survey(tmp_path / "survey")
    out = tmp_path / "adapted"
    dialog = TrainingDialog()
    qtbot.addWidget(dialog)
    dialog.set_field("adapt", "images", str(tmp_path / "survey"))
    dialog.set_field("adapt", "out", str(out))
    dialog.set_field("adapt", "n", 60)
    dialog.set_field("adapt", "model", str(tiny_bundle))
    dialog.start()
    qtbot.waitUntil(lambda: (out / "work" / "state.json").is_file(), timeout=60_000)
    assert dialog.process.state() == QProcess.ProcessState.Running
    # The child's progress line reaches the log through the event loop, after the file.
    qtbot.waitUntil(lambda: "step 1/9: measuring the survey" in dialog.log.toPlainText(),
                    timeout=15_000)
    with qtbot.waitSignal(dialog.process_finished, timeout=15_000):
        dialog.buttons.cancel.click()
    assert dialog.process is None and dialog.cancelled
    assert "Cancelled" in dialog.progress_label.text()
    state = json.loads((out / "work" / "state.json").read_text())
    assert state["done"] == []  # killed in its first step: a restart with --resume redoes it


def test_resuming_into_a_finished_bundle_refuses_another_survey_or_a_plain_bundle(tmp_path,
                                                                               tiny_bundle):
    """A finished folder is returned as it is only for the same adaptation: with other
    settings, or a bundle no adaptation wrote, the user is told instead of getting it back."""
    import shutil

    from training.adapt import AdaptOptions, adapt

    out = tmp_path / "adapted"
    shutil.copytree(tiny_bundle, out)
    options = AdaptOptions(images=str(tmp_path), out=str(out), model=str(tiny_bundle))
    with pytest.raises(ValueError, match="not an adaptation"):
        adapt(options, resume=True)
    card = json.loads((out / "card.json").read_text())
    card.setdefault("training", {})["adapt_options"] = options.settings()
    (out / "card.json").write_text(json.dumps(card))
    assert adapt(options, resume=True) == out.absolute()  # the same adaptation: done
    other = AdaptOptions(images=str(tmp_path), out=str(out), model=str(tiny_bundle), epochs=9)
    with pytest.raises(ValueError, match="other --epochs"):
        adapt(other, resume=True)
