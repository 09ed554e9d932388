"""Engine: batched posteriors, summaries, crop boxes, labels and flags; no Qt imports.

The bundles are tiny untrained ones (``tiny_bundle_factory`` in ``conftest.py``), so the tests
need no shipped model and run in seconds.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from galaxy_inspector.engine import (
    analyse_position,
    analyse_sky_position,
    load_model,
    measure_stamps,
    stamp_for,
)
from galaxy_inspector.errors import InputError
from galaxy_inspector.flags import Flag
from galaxy_inspector.io import SkyImage
from galaxy_inspector.labels import DEFAULT_THRESHOLDS, qualitative_label, thresholds_from_card
from galaxy_inspector.posterior import LEVEL_SUFFIXES


@pytest.fixture(scope="module")
def model(tiny_bundle_factory):
    return load_model(tiny_bundle_factory())


def _galaxy_image(scale=0.168, n=150, flux=3e4, noise=2.0, seed=0):
    yy, xx = np.indices((n, n))
    c = (n - 1) / 2
    r = np.hypot(yy - c, xx - c) * scale
    profile = np.exp(-r / 0.5)
    data = flux * profile / profile.sum()
    return data + np.random.default_rng(seed).normal(0, noise, (n, n))


def test_measurements_hold_samples_summaries_and_source_crop_box(model):
    image = SkyImage.from_array(_galaxy_image(scale=0.336, n=80), 0.336)
    stamps = [stamp_for(image, 40.0, 39.0, model), stamp_for(image, 30.0, 45.0, model)]
    first, second = measure_stamps(stamps, model, n_samples=50, seed=3)
    assert first.samples.shape == (50, 3) and first.names == ["bt", "re_arcsec", "flux_njy"]
    expected = {f"{p}_{s}" for p in first.names for s in
                ["mode", "median", "mean"] + [f"{e}{x}" for x in LEVEL_SUFFIXES
                                              for e in ("lo", "hi")]}
    assert set(first.summary) == expected
    s = first.summary
    assert s["bt_lo997"] <= s["bt_lo68"] <= s["bt_median"] <= s["bt_hi68"] <= s["bt_hi997"]
    assert 0 <= s["bt_mode"] <= 1 and s["re_arcsec_mode"] > 0
    # The crop box is centred on the galaxy, stn_scale * 128 model pixels = half as many
    # source pixels (0.336 vs 0.168″/px).
    x0, y0, x1, y1 = first.crop_box
    assert ((x0 + x1) / 2, (y0 + y1) / 2) == pytest.approx((40.0, 39.0))
    assert x1 - x0 == pytest.approx(first.stn_scale * 64)
    assert first.flags & Flag.COARSE_PIXELS and second.stamp.x == 30.0
    again = measure_stamps(stamps, model, n_samples=50, seed=3)[0]
    np.testing.assert_array_equal(again.samples, first.samples)  # reproducible by seed


def test_analyse_position_returns_the_crop_and_sky_positions_need_a_wcs(model):
    image = SkyImage.from_array(_galaxy_image(), 0.168)
    m = analyse_position(image, 74.5, 74.5, model, n_samples=20)
    assert m.crop is not None and m.crop.shape == (64, 64)
    with pytest.raises(InputError, match="no celestial WCS"):
        analyse_sky_position(image, 150.0, 2.0, model)


def test_noise_only_stamp_is_low_snr_and_narrow_training_range_flags(
        tmp_path, model, tiny_bundle_factory):
    noise = SkyImage.from_array(np.random.default_rng(1).normal(0, 2.0, (140, 140)), 0.168)
    (m,) = measure_stamps([stamp_for(noise, 70, 70, model)], model, n_samples=20)
    assert m.flags & Flag.LOW_SNR and m.snr < 10
    strict = load_model(tiny_bundle_factory(tmp_path / "strict",
                                            training_ranges={"re_arcsec": [100.0, 200.0]}))
    galaxy = SkyImage.from_array(_galaxy_image(flux=1e5), 0.168)
    (m,) = measure_stamps([stamp_for(galaxy, 74.5, 74.5, strict)], strict, n_samples=20)
    assert m.flags & Flag.OUTSIDE_TRAINING and not m.flags & Flag.LOW_SNR


def test_stamps_noisier_than_training_are_scaled_into_range_and_flux_scaled_back(
        tmp_path, tiny_bundle_factory):
    ranges = {"bt": [0, 1], "re_arcsec": [0.1, 6.0], "flux_njy": [1e3, 5e6],
              "sky_sigma_njy": [1.0, 5.0]}
    shallow = load_model(tiny_bundle_factory(tmp_path / "shallow", training_ranges=ranges))
    deep = shallow.bundle.card["training_ranges"]["sky_sigma_njy"][1]
    image = SkyImage.from_array(_galaxy_image(flux=2e5, noise=20.0), 0.168)
    stamp = stamp_for(image, 74.5, 74.5, shallow)
    assert stamp.sky_sigma > deep
    k = stamp.sky_sigma / deep
    scaled = replace(stamp, data=(stamp.data / np.float32(k)).astype(np.float32),
                     sky_sigma=stamp.sky_sigma / k)
    (noisy,) = measure_stamps([stamp], shallow, n_samples=30, seed=2)
    (in_range,) = measure_stamps([scaled], shallow, n_samples=30, seed=2)
    flux = noisy.names.index("flux_njy")
    np.testing.assert_allclose(noisy.samples[:, flux], in_range.samples[:, flux] * k, rtol=1e-4)
    np.testing.assert_allclose(noisy.samples[:, :flux], in_range.samples[:, :flux], rtol=1e-4)
    assert noisy.flags & Flag.OUTSIDE_TRAINING


@pytest.mark.parametrize("bt, re, label", [
    (0.9, 2.0, "highly bulge-dominated"), (0.85, 2.0, "highly bulge-dominated"),
    (0.1, 2.0, "highly disk-dominated"), (0.5, 2.0, ""), (0.5, 0.7, "R_e < 1″"),
    (0.95, 0.5, "highly bulge-dominated; R_e < 1″"), (float("nan"), float("nan"), "")])
def test_gampen_labels(bt, re, label):
    assert qualitative_label(bt, re) == label


def test_card_label_thresholds_override_the_defaults():
    t = thresholds_from_card({"labels": {"bt_bulge_min": 0.7}})
    assert t == {**DEFAULT_THRESHOLDS, "bt_bulge_min": 0.7}
    assert qualitative_label(0.75, 2.0, t) == "highly bulge-dominated"
