"""Image ▸ Settings…: a pixel scale, zero point or PSF given for the image shown reaches its
next measurement (read through ``io.read_image``, as ``--batch`` reads it), each frame keeps
its own, nothing measured before stays on screen, and what cannot be used changes nothing."""

import dataclasses
import threading
from types import SimpleNamespace

import numpy as np
import pytest
from astropy.io import fits
from PySide6.QtCore import Qt

from galaxy_inspector.flags import Flag
from galaxy_inspector.gui.image_settings import FILE_PSF, GIVEN_FWHM, PSF_IMAGE, STARS
from galaxy_inspector.viewer import tasks
from galaxy_inspector.viewer.state import ImageSettings
from galaxy_inspector.viewer.tasks import ModelCache, read_planes

pytestmark = pytest.mark.gui

#: nJy per count of a zero point of 27 (the HSC sample's).
NJY_PER_COUNT_ZP27 = 10 ** ((31.4 - 27.0) / 2.5)


def _open(qtbot, window, *paths):
    window.open_files([str(p) for p in paths])
    qtbot.waitUntil(lambda: len(window.state.frames) == len(paths) and not window.state.busy,
                    timeout=30_000)


def _dialog(qtbot, window, by_keyboard=False):
    """The settings dialog of the image shown, opened from the menu or with its shortcut (the
    offscreen platform gives a window back no focus once a dialog has closed)."""
    if by_keyboard:
        window.activateWindow()
        qtbot.waitActive(window)
        qtbot.keyClick(window, Qt.Key.Key_I, Qt.KeyboardModifier.ControlModifier)
    else:
        window.image_settings.action.trigger()
    dialog = window.image_settings.dialog
    assert dialog is not None and dialog.isVisible()
    return dialog


def _apply(qtbot, dialog, signal="applied"):
    """Click Apply and wait for the reading to succeed (``applied``) or fail (``failed``)."""
    with qtbot.waitSignal(getattr(dialog.actions, signal), timeout=60_000):
        qtbot.mouseClick(dialog.apply_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not dialog.actions.is_running, timeout=10_000)


def test_a_given_sharp_psf_reaches_the_next_measurement_and_is_matched(
        qtbot, make_main_window, sample_paths, wait_for_analysis):
    window = make_main_window()
    _open(qtbot, window, sample_paths["plain_njy.fits"])
    window.analyse_at(63.5, 63.5)
    before = wait_for_analysis(window)
    assert not np.isfinite(before.measurement.stamp.psf_fwhm)  # the file names no PSF
    window.image_view.view_box.setRange(xRange=(30, 90), yRange=(40, 100), padding=0)
    zoom = window.image_view.view_box.viewRange()

    dialog = _dialog(qtbot, window, by_keyboard=True)
    assert dialog.psf_choice.checkedId() == FILE_PSF and "Now: unknown" in dialog.psf_note.text()
    assert "0.168″/px, from its WCS" in dialog.scale_note.text()
    assert not dialog.zero_point.isEnabled()  # the file is in nJy
    dialog.psf_fwhm.setValue(0.1)  # HST-like: far sharper than the model's training PSFs
    assert dialog.psf_choice.checkedId() == GIVEN_FWHM
    _apply(qtbot, dialog)
    assert window.state.analysis is None and window.posterior.analysis is None  # not stale
    assert window.state.image.psf_fwhm == 0.1 and window.state.image.psf_source == "given"
    assert window.state.position == (63.5, 63.5) and window.state.band == 0
    assert window.image_view.view_box.viewRange() == zoom
    assert "Now: FWHM 0.1″ (given)" in dialog.psf_note.text()
    assert dialog.result.text().startswith("Applied:")

    after = wait_for_analysis(window)  # measured again without another click
    stamp = after.measurement.stamp
    assert (stamp.psf_fwhm, stamp.psf_source) == (0.1, "given")
    assert after.measurement.flags & Flag.PSF_MATCHED
    assert "PSF:</b> FWHM 0.1″ (given)" in window.posterior.flags_text.text()
    assert "PSF_MATCHED" in window.posterior.flags_text.text()


def test_a_zero_point_calibrates_an_uncalibrated_image(qtbot, make_main_window, sample_paths,
                                                       tmp_path):
    with fits.open(sample_paths["plain_njy.fits"]) as hdul:
        header, njy = hdul[0].header.copy(), hdul[0].data.astype(np.float64)
    del header["BUNIT"]
    counts = tmp_path / "counts.fits"
    fits.PrimaryHDU((njy / NJY_PER_COUNT_ZP27).astype(np.float32), header).writeto(counts)
    window = make_main_window()
    _open(qtbot, window, counts)
    assert not window.state.image.calibrated
    dialog = _dialog(qtbot, window)
    assert dialog.zero_point.isEnabled() and "no calibration" in dialog.zero_note.text()
    dialog.zero_point.setValue(27.0)
    _apply(qtbot, dialog)
    image = window.state.image
    assert image.calibrated and "user zero point 27.000" in image.calibration
    np.testing.assert_allclose(image.data, njy, rtol=1e-5, atol=1e-3)
    assert "user zero point 27.000" in dialog.calibration.text()
    assert "user zero point" in window.statusBar().currentMessage()
    assert dialog.zero_point.isEnabled()  # given, so it can be changed back


def test_what_cannot_be_used_is_one_line_in_the_dialog_and_changes_nothing(
        qtbot, make_main_window, sample_paths, tmp_path):
    flat = tmp_path / "flat.fits"
    fits.PrimaryHDU(np.ones((41, 41), np.float32)).writeto(flat)
    window = make_main_window()
    _open(qtbot, window, sample_paths["plain_njy.fits"])
    frame = window.state.shown_frame()
    images = frame.images
    dialog = _dialog(qtbot, window)

    dialog.psf_choice.button(PSF_IMAGE).setChecked(True)  # chosen, but no file named
    qtbot.mouseClick(dialog.apply_button, Qt.MouseButton.LeftButton)
    assert "choose the PSF image" in dialog.result.text()
    assert dialog.actions.worker is None

    dialog.psf_path.setText(str(flat))
    _apply(qtbot, dialog, "failed")
    assert dialog.result.text().startswith("Cannot apply, nothing changed: PSF image "
                                           "flat.fits")
    assert "not a PSF image" in dialog.result.text()
    dialog.psf_choice.button(STARS).setChecked(True)  # one galaxy, no star
    _apply(qtbot, dialog, "failed")
    assert "usable star(s)" in dialog.result.text()
    for text in (dialog.result.text(), window.statusBar().currentMessage()):
        assert "\n" not in text and "Traceback" not in text
    assert frame.images is images and frame.settings == ImageSettings()
    assert window.state.images is images and dialog.apply_button.isEnabled()


def test_stars_measured_on_the_image_are_shown_in_the_dialog(qtbot, make_main_window,
                                                             tmp_path):
    import galsim
    from test_psf import _field  # a field of stars and galaxies of a known PSF

    path = tmp_path / "stars.fits"
    header = fits.Header()
    header["PIXSCALE"] = 0.2
    field = _field(galsim.Moffat(beta=3.0, fwhm=0.8), n_stars=15)
    fits.PrimaryHDU(field.data, header).writeto(path)
    window = make_main_window()
    _open(qtbot, window, path)
    dialog = _dialog(qtbot, window)
    assert "0.2″/px, from its header" in dialog.scale_note.text()
    dialog.psf_choice.button(STARS).setChecked(True)
    _apply(qtbot, dialog)
    image = window.state.image
    assert image.psf_fwhm == pytest.approx(0.8, abs=0.04)
    assert image.psf_source.startswith("measured from ")
    assert f"({image.psf_source})" in dialog.psf_note.text()


def test_each_frame_keeps_its_settings(qtbot, make_main_window, sample_paths):
    window = make_main_window()
    _open(qtbot, window, sample_paths["plain_njy.fits"], sample_paths["hsc_coadd_cutout.fits"])
    dialog = _dialog(qtbot, window)
    dialog.pixel_scale.setValue(0.2)
    dialog.psf_fwhm.setValue(0.7)
    _apply(qtbot, dialog)
    dialog.close()
    given = ImageSettings(pixel_scale=0.2, psf_fwhm=0.7)
    assert window.state.shown_frame().settings == given
    assert window.state.image.pixel_scale == 0.2
    assert "as given, not the file's 0.168\"/px" in window.state.image.calibration

    window.step_frame(1)  # the HSC cutout: its file's own
    assert window.state.image.psf_fwhm is None and window.state.image.pixel_scale != 0.2
    other = _dialog(qtbot, window)
    assert other.pixel_scale.text() == "the file's" and other.psf_choice.checkedId() == FILE_PSF
    other.close()
    window.step_frame(1)  # back: read as it was given
    assert window.state.shown_frame().settings == given
    assert (window.state.image.pixel_scale, window.state.image.psf_fwhm) == (0.2, 0.7)
    again = _dialog(qtbot, window)
    assert again.pixel_scale.value() == 0.2 and again.psf_choice.checkedId() == GIVEN_FWHM
    assert again.psf_fwhm.value() == 0.7 and again.scale_note.text() == "as given"


def test_a_measurement_of_the_image_as_read_before_is_never_shown(
        qtbot, make_main_window, sample_paths, monkeypatch):
    path = str(sample_paths["plain_njy.fits"])
    answer = ModelCache().analyse(read_planes(path)[0], 63.5, 63.5, None, n_samples=50)
    window = make_main_window()
    _open(qtbot, window, path)
    release, measured = threading.Event(), []

    def slow_analyse(image, x, y, *args, **kwargs):
        measured.append(image)
        release.wait(30)
        return dataclasses.replace(answer, source=f"call {len(measured)}")

    monkeypatch.setattr(window.models, "analyse", slow_analyse)
    window.analyse_at(63.5, 63.5)
    qtbot.waitUntil(lambda: len(measured) == 1)
    dialog = _dialog(qtbot, window)
    dialog.psf_fwhm.setValue(0.3)
    _apply(qtbot, dialog)  # while the first measurement runs
    release.set()
    qtbot.waitUntil(lambda: len(measured) == 2, timeout=10_000)  # measured again, as read now
    assert measured[0].psf_fwhm is None and measured[1].psf_fwhm == 0.3
    qtbot.waitUntil(lambda: window._analysis_worker is None, timeout=10_000)
    assert window.state.analysis.source == "call 2"  # the first answer was dropped


def test_a_display_image_is_measured_with_the_scale_and_psf_given(sample_paths, monkeypatch):
    jpeg = str(sample_paths["sdss_gri.jpg"])
    given = read_planes(jpeg, ImageSettings(pixel_scale=0.262, psf_fwhm=1.2))
    assert [(c.pixel_scale, c.psf_fwhm, c.psf_source) for c in given] == [(0.262, 1.2,
                                                                            "given")] * 3
    measured = []
    monkeypatch.setattr(tasks, "analyse_position",
                        lambda image, *args, **kwargs: measured.append(image) or 1 / 0)
    cache = ModelCache()
    monkeypatch.setattr(cache, "get", lambda name: SimpleNamespace(names=()))  # no model needed
    for channel in (given[1], read_planes(jpeg)[1]):
        with pytest.raises(ZeroDivisionError):
            cache.analyse(channel, 63.5, 63.5, None)
    grey_given, grey_own = measured
    assert (grey_given.pixel_scale, grey_given.psf_fwhm) == (0.262, 1.2)
    assert not grey_given.flags & Flag.PIXEL_SCALE_GUESSED
    assert grey_own.flags & Flag.PIXEL_SCALE_GUESSED and grey_own.psf_fwhm is None
    assert grey_given.data.shape == given[0].shape  # the channels' mean, not one channel


def test_sky_subtracted_is_given_for_fits_and_not_offered_for_a_jpeg(
        qtbot, make_main_window, sample_paths):
    window = make_main_window()
    _open(qtbot, window, sample_paths["plain_njy.fits"])
    dialog = _dialog(qtbot, window)
    assert dialog.sky_subtracted.isEnabled() and not dialog.sky_subtracted.isChecked()
    dialog.sky_subtracted.setChecked(True)
    _apply(qtbot, dialog)
    assert window.state.image.sky_subtracted
    assert window.state.shown_frame().settings == ImageSettings(sky_subtracted=True)
    dialog.close()
    display = make_main_window()
    _open(qtbot, display, sample_paths["sdss_gri.jpg"])
    dialog = _dialog(qtbot, display)
    assert not dialog.sky_subtracted.isEnabled()
    assert not dialog.chosen().sky_subtracted
    with pytest.raises(ValueError, match="--sky-subtracted is for FITS images"):
        read_planes(str(sample_paths["sdss_gri.jpg"]), ImageSettings(sky_subtracted=True))
