"""How images look: display images as they are, in colour; masked pixels kept out of the limits
and shown by a toggled overlay; a display image's readout in its own levels."""

import numpy as np
import pytest
from PIL import Image

from galaxy_inspector.io import SkyImage
from galaxy_inspector.viewer.display import MASK_COLOUR, normalize

pytestmark = pytest.mark.gui


def _open(qtbot, window, path):
    window.open_file(str(path))
    qtbot.waitUntil(lambda: window.state.path == str(path) or bool(window.state.message),
                    timeout=30_000)
    assert window.state.path == str(path), window.state.message


def _file_rgb(path) -> np.ndarray:
    """The file's pixels, rows flipped as the viewer draws them (y up, FITS orientation)."""
    with Image.open(path) as im:
        return np.flipud(np.asarray(im.convert("RGB")))


def test_jpeg_is_shown_in_colour_as_it_is_with_its_channels_to_choose(
        qtbot, make_main_window, sample_paths):
    window = make_main_window()
    path = sample_paths["sdss_gri.jpg"]
    _open(qtbot, window, path)
    view, pixels = window.image_view, _file_rgb(path)
    shown = view.image_item.image
    assert shown.shape == pixels.shape
    np.testing.assert_array_equal(shown, pixels)
    np.testing.assert_array_equal(view.image_item.levels, [[0, 255]] * 3)
    items = [window.band_box.itemText(i) for i in range(window.band_box.count())]
    assert items == ["R", "G", "B", "colour"] and window.band_box.currentText() == "colour"
    assert not window.stretch_box.isEnabled() and not window.interval_box.isEnabled()
    # No contrast/bias drag on an image already stretched.
    view.view_box.contrast_bias_dragged.emit(4.0, 0.1)
    assert (window.state.contrast, window.state.bias) == (1.0, 0.5)
    window.band_box.setCurrentIndex(1)
    np.testing.assert_array_equal(view.image_item.image, pixels[..., 1])
    np.testing.assert_array_equal(view.image_item.levels, [0, 255])
    _open(qtbot, window, sample_paths["hsc_coadd_cutout.fits"])
    assert window.stretch_box.isEnabled() and window.band_box.currentText() == "plane 0"


def test_jpeg_readout_gives_channel_levels_not_flux(qtbot, make_main_window, sample_paths):
    window = make_main_window()
    path = sample_paths["sdss_gri.jpg"]
    _open(qtbot, window, path)
    r, g, b = _file_rgb(path)[20, 30]
    window.image_view.hovered.emit(30.0, 20.0)
    text = window.readout.text()
    assert f"R={r} G={g} B={b} (display level 0-255)" in text
    assert "nJy" not in text and "uncalibrated" not in text
    window.band_box.setCurrentIndex(2)
    window.image_view.hovered.emit(30.0, 20.0)
    assert f"B={b} (display level" in window.readout.text() and "R=" not in window.readout.text()


def _galaxy(n=64):
    yy, xx = np.mgrid[:n, :n]
    rng = np.random.default_rng(3)
    return (1000 * np.exp(-((xx - 32) ** 2 + (yy - 30) ** 2) / 40)
            + rng.normal(0, 5, (n, n))).astype(np.float32)


def test_masked_hot_pixels_do_not_change_the_display_limits(qtbot, make_main_window):
    clean = _galaxy()
    mask = np.zeros(clean.shape, bool)
    mask[:, 7] = True  # a bad column
    mask[50:53, 40:43] = True  # a saturated star
    hot = clean.copy()
    hot[mask] = 5e6
    window = make_main_window()
    window.state.stretch, window.state.interval = "linear", "99.5%"
    window.state.set_images("hot.fits", [SkyImage.from_array(hot, 0.2, mask=mask)])
    with_hot = window.image_view.image_item.image.copy()
    window.state.set_images("clean.fits", [SkyImage.from_array(clean, 0.2, mask=mask)])
    np.testing.assert_allclose(with_hot[~mask], window.image_view.image_item.image[~mask])
    # Unmasked, the hot pixels would have squeezed the galaxy into the darkest grey levels.
    assert normalize(hot, "linear", "99.5%")[30, 32] < 0.5 * with_hot[30, 32]


def test_mask_overlay_is_drawn_over_masked_pixels_and_toggles_from_the_view_menu(
        qtbot, make_main_window, sample_paths):
    window = make_main_window()
    _open(qtbot, window, sample_paths["hsc_coadd_cutout.fits"])
    view, action = window.image_view, window.image_view.mask_overlay_action
    view_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&View")
    assert action in view_menu.actions() and action.isEnabled() and action.isChecked()
    mask = window.state.image.mask
    assert mask.any() and view.mask_item.isVisible()
    layer = view.mask_item.image
    assert (layer[mask] == MASK_COLOUR).all() and (layer[~mask][:, 3] == 0).all()
    action.trigger()
    assert not action.isChecked() and not view.mask_item.isVisible()
    action.trigger()
    assert view.mask_item.isVisible()
    _open(qtbot, window, sample_paths["plain_njy.fits"])  # no mask: nothing to show
    assert not action.isEnabled() and not view.mask_item.isVisible()


def test_a_jpeg_channel_is_measured_on_the_grey_plane_batch_measures(sample_paths):
    from galaxy_inspector.engine import analyse_position, default_model_for
    from galaxy_inspector.io import read_image
    from galaxy_inspector.viewer.tasks import ModelCache, read_planes

    path = sample_paths["sdss_gri.jpg"]
    red = read_planes(str(path))[0]
    models = ModelCache()
    shown = models.analyse(red, 63.5, 63.5, None).measurement
    # --batch on this JPEG alone picks the display model, as the window does.
    batch = analyse_position(read_image(path), 63.5, 63.5,
                             models.get(default_model_for([str(path)])))
    np.testing.assert_array_equal(shown.stamp.data, batch.stamp.data)
    assert shown.flags == batch.flags and shown.error == batch.error
