"""Engine: batched posteriors, summaries, crop boxes, labels and flags; no Qt imports.

The bundles are tiny untrained ones (``tiny_bundle_factory`` in ``conftest.py``), so the tests
need no shipped model and run in seconds.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from galaxy_inspector.engine import (
    DISPLAY_REFUSAL,
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


#: Card label thresholds under which every galaxy earns a label ("R_e < 1000″") unless its
#: flags forbid one, so a missing label shows the rule, not the untrained model's whim (whose
#: B/T may add a label of its own).
ALWAYS_LABELLED = {"re_small_arcsec": 1000.0}


def test_snr_below_3_is_no_galaxy_and_below_10_a_flagged_posterior_without_label(
        tmp_path, tiny_bundle_factory):
    labelled = load_model(tiny_bundle_factory(tmp_path / "labelled", labels=ALWAYS_LABELLED))
    stamps = [stamp_for(SkyImage.from_array(_galaxy_image(flux=flux), 0.168), 74.5, 74.5,
                        labelled) for flux in (0.0, 100.0, 200.0, 400.0, 800.0, 3e4)]
    bands = set()
    for m in measure_stamps(stamps, labelled, n_samples=20):
        if m.snr < 3:  # not a measurement: the reason instead of a posterior
            bands.add("none")
            assert m.error == f"no galaxy detected: S/N {m.snr:.1f} within 2 R_e"
            assert m.samples.size == 0 and m.summary == {} and m.label == ""
            assert m.flags & Flag.LOW_SNR
        elif m.snr < 10:  # a posterior, flagged, with no claim in words
            bands.add("low")
            assert not m.error and m.samples.shape == (20, 3) and m.flags & Flag.LOW_SNR
            assert m.label == ""
        else:
            bands.add("ok")
            assert not m.error and not m.flags & Flag.LOW_SNR
            assert m.label.endswith("R_e < 1000″")
    assert bands == {"none", "low", "ok"}


def test_outside_training_range_flags_and_drops_the_label(tmp_path, tiny_bundle_factory):
    strict = load_model(tiny_bundle_factory(tmp_path / "strict", labels=ALWAYS_LABELLED,
                                            training_ranges={"re_arcsec": [100.0, 200.0]}))
    galaxy = SkyImage.from_array(_galaxy_image(flux=1e5), 0.168)
    (m,) = measure_stamps([stamp_for(galaxy, 74.5, 74.5, strict)], strict, n_samples=20)
    assert m.flags & Flag.OUTSIDE_TRAINING and not m.flags & Flag.LOW_SNR
    assert m.label == "" and np.isfinite(m.summary["bt_median"])  # the posterior stays


def test_display_images_are_refused_unless_the_model_was_made_for_them(
        tmp_path, model, tiny_bundle_factory):
    jpeg_like = SkyImage.from_array(_galaxy_image(flux=1e5), 0.396, calibrated=False,
                                    flags=int(Flag.NONLINEAR_IMAGE))
    (m,) = measure_stamps([stamp_for(jpeg_like, 74.5, 74.5, model)], model, n_samples=20)
    assert m.error == DISPLAY_REFUSAL and m.samples.size == 0 and m.label == ""
    assert m.flags & Flag.NONLINEAR_IMAGE
    card_input = {**model.bundle.card["input"], "kind": "display"}
    display = load_model(tiny_bundle_factory(tmp_path / "display", input=card_input,
                                             labels=ALWAYS_LABELLED))
    (m,) = measure_stamps([stamp_for(jpeg_like, 74.5, 74.5, display)], display, n_samples=20)
    assert not m.error and m.samples.shape == (20, 3)
    # Its labels were chosen on display images: the stretch withholds none from it.
    assert m.label != ""
    assert not m.flags & (Flag.LOW_SNR | Flag.OUTSIDE_TRAINING)


@pytest.mark.parametrize("flag", [Flag.LOW_SNR, Flag.NONLINEAR_IMAGE, Flag.OUTSIDE_TRAINING])
def test_flags_that_forbid_a_label(flag):
    assert qualitative_label(0.95, 0.5) == "highly bulge-dominated; R_e < 1″"
    assert qualitative_label(0.95, 0.5, flags=flag | Flag.EDGE) == ""
    assert qualitative_label(0.95, 0.5, flags=Flag.EDGE | Flag.BLENDED) != ""


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
    # What the model saw, the scaled stamp, lies inside every range: the row is not flagged.
    assert not noisy.flags & Flag.OUTSIDE_TRAINING


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
