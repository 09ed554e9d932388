"""Headless GUI logic: state, readout, display scaling (no window needed)."""

import numpy as np
import pytest
from astropy.wcs import WCS

from galaxy_inspector.io.image import SkyImage
from galaxy_inspector.viewer.display import display_levels, lupton_composite, normalize
from galaxy_inspector.viewer.state import COMPOSITE_BAND, STRETCHES, ViewerState


def _image(value=1.0, shape=(20, 30), wcs=None):
    data = np.full(shape, value, dtype=np.float32)
    data[5, 7] = 42.0
    return SkyImage.from_array(data, pixel_scale=0.2, wcs=wcs)


def _wcs():
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [10.0, 8.0]
    w.wcs.cdelt = [-0.2 / 3600, 0.2 / 3600]
    return w


def test_callbacks_fire_once_per_change():
    state = ViewerState()
    seen = []
    state.add_callback("stretch", seen.append)
    state.stretch = "log"
    state.stretch = "log"
    assert seen == ["log"]
    with pytest.raises(ValueError, match="stretch must be one of"):
        state.stretch = "cubic"
    with pytest.raises(AttributeError):
        state.add_callback("nonsense", print)


def test_delay_callbacks_notifies_once_after_the_block_with_the_whole_change():
    state = ViewerState()
    seen = []
    state.add_callback("model", lambda m: seen.append(("model", m, state.property_models)))
    state.add_callback("property_models", lambda p: seen.append(("properties", p, state.model)))
    state.add_callback("stretch", lambda s: seen.append(("stretch", s)))
    with state.delay_callbacks():
        state.property_models = ("a",)
        state.model = "first"
        with state.delay_callbacks():  # nested: only the outermost block notifies
            state.model = "second"
        state.stretch = "log"
        state.stretch = "asinh"  # back to where it was: no notification
        assert seen == []
    assert seen == [("properties", ("a",), "second"), ("model", "second", ("a",))]
    seen.clear()
    with pytest.raises(RuntimeError), state.delay_callbacks():
        state.model = "third"
        raise RuntimeError
    assert seen == [("model", "third", ("a",))]  # what changed is still heard
    state.model = "fourth"  # and notifications are immediate again
    assert seen[-1] == ("model", "fourth", ("a",))


def test_readout_agrees_with_astropy_and_states_origin():
    wcs = _wcs()
    state = ViewerState()
    state.set_images("x.fits", [_image(wcs=wcs)])
    text = state.readout(7.2, 4.8)  # nearest pixel centre (7, 5), value 42
    ra, dec = wcs.pixel_to_world_values(7, 5)
    assert "x=7 y=5 (0-based)" in text
    assert f"RA={ra:.6f}°" in text and f"Dec={dec:+.6f}°" in text
    assert "value=42 nJy" in text
    state.pixel_origin = 1
    assert "x=8 y=6 (1-based)" in state.readout(7.2, 4.8)
    assert state.readout(-3, 2) == ""


def test_cube_defaults_to_colour_composite_and_forgets_old_galaxy():
    state = ViewerState()
    state.analysis = object()
    state.set_images("cube.fits", [_image(v) for v in (1.0, 2.0, 3.0)])
    assert state.band == COMPOSITE_BAND and state.analysis is None
    assert state.image is state.images[0]
    state.set_images("one.fits", [_image()])
    assert state.band == 0


@pytest.mark.parametrize("stretch", STRETCHES)
@pytest.mark.parametrize("interval", ["zscale", "99.5%", "min-max"])
def test_normalize_maps_into_unit_range_without_touching_input(stretch, interval):
    rng = np.random.default_rng(0)
    data = rng.normal(10, 2, (40, 40)).astype(np.float32)
    data[0, 0] = np.nan
    before = data.copy()
    out = normalize(data, stretch, interval)
    assert out.shape == data.shape and np.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1
    np.testing.assert_array_equal(data, before)


def test_contrast_bias_levels_and_composite():
    assert display_levels(1.0, 0.5) == (0.0, 1.0)
    lo, hi = display_levels(4.0, 0.3)
    assert hi - lo == pytest.approx(0.25) and (lo + hi) / 2 == pytest.approx(0.3)
    rgb = lupton_composite(*(np.random.default_rng(i).normal(0, 1, (16, 16)) for i in range(3)))
    assert rgb.shape == (16, 16, 3) and rgb.dtype == np.uint8
