"""Model bundles: safetensors + card round trip, checksums, card validation, no pickle."""

from __future__ import annotations

import json
import pathlib
import pickle

import numpy as np
import pytest

from galaxy_inspector.errors import BundleError
from galaxy_inspector.models.bundle import (
    CARD_NAME,
    REQUIRED_FIELDS,
    OutputSpec,
    load_bundle,
    resolve_bundle_path,
    save_bundle,
    sha256_file,
)
from galaxy_inspector.models.morphology import MorphologyModel


def _edit_card(folder, edit):
    path = folder / CARD_NAME
    card = json.loads(path.read_text())
    edit(card)
    path.write_text(json.dumps(card))


def test_round_trip_keeps_weights_and_card(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    assert bundle.name == "tiny-test-morphology"
    assert bundle.sha256 == sha256_file(tiny_bundle / "model.safetensors")
    assert [o.name for o in bundle.outputs] == ["bt", "re_arcsec", "flux_njy"]
    assert bundle.input["pixel_scale_arcsec"] == 0.168 and bundle.input["stamp_size"] == 128
    # Saving what was loaded gives the same tensors back.
    again = load_bundle(save_bundle(tiny_bundle.parent / "copy", {
        k: v for k, v in bundle.card.items() if k not in ("format", "weights")}, bundle.tensors))
    assert again.tensors.keys() == bundle.tensors.keys()
    for k in bundle.tensors:
        np.testing.assert_array_equal(again.tensors[k], bundle.tensors[k])
    assert again.sha256 == bundle.sha256


def test_card_path_and_folder_resolve_to_the_same_bundle(tiny_bundle):
    assert resolve_bundle_path(tiny_bundle / CARD_NAME) == tiny_bundle
    assert resolve_bundle_path(str(tiny_bundle)) == tiny_bundle


def test_unknown_bundle_name_is_a_bundle_error(tmp_path):
    with pytest.raises(BundleError, match="no model bundle"):
        load_bundle("no-such-model-anywhere")
    with pytest.raises(BundleError, match=CARD_NAME):
        load_bundle(tmp_path)  # a folder without a card


def test_loaded_model_predicts_physical_samples(tiny_bundle):
    model = MorphologyModel(tiny_bundle, device="cpu")
    rng = np.random.default_rng(0)
    stamps = rng.normal(0, 2.5, (2, 128, 128)).astype(np.float32)
    pred = model.predict(stamps, n_samples=32, seed=4)
    assert pred.samples.shape == (2, 32, 3) and pred.names == ["bt", "re_arcsec", "flux_njy"]
    bt, re, flux = pred.samples[..., 0], pred.samples[..., 1], pred.samples[..., 2]
    assert ((bt >= 0) & (bt <= 1)).all() and (re > 0).all() and (flux > 0).all()
    np.testing.assert_array_equal(model.predict(stamps, n_samples=32, seed=4).samples,
                                  pred.samples)  # reproducible for a seed
    assert np.allclose(pred.stn_scale, 1.0, atol=1e-5)  # untrained STN is the identity


def test_checksum_mismatch_is_an_error(tiny_bundle):
    weights = tiny_bundle / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # flip one byte of the last tensor
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="checksum mismatch"):
        load_bundle(tiny_bundle)


@pytest.mark.parametrize("field", REQUIRED_FIELDS)
def test_missing_card_field_is_named(tiny_bundle, field):
    _edit_card(tiny_bundle, lambda card: card.pop(field))
    with pytest.raises(BundleError, match=field):
        load_bundle(tiny_bundle)


@pytest.mark.parametrize("field", ["bands", "kind", "pixel_scale_arcsec", "stamp_size"])
def test_missing_input_contract_field_is_named(tiny_bundle, field):
    _edit_card(tiny_bundle, lambda card: card["input"].pop(field))
    with pytest.raises(BundleError, match=field):
        load_bundle(tiny_bundle)


def test_unknown_architecture_is_an_error(tiny_bundle):
    _edit_card(tiny_bundle, lambda card: card.update(architecture="vgg16-from-the-future"))
    with pytest.raises(BundleError, match="unknown architecture 'vgg16-from-the-future'"):
        load_bundle(tiny_bundle)


def test_unknown_output_transform_is_an_error(tiny_bundle):
    _edit_card(tiny_bundle, lambda card: card["outputs"][1].update(transform="sqrt"))
    with pytest.raises(BundleError, match=r"outputs\[1\]\.transform must be one of .*\"sqrt\""):
        load_bundle(tiny_bundle)


def test_weights_of_another_shape_are_a_bundle_error(tiny_bundle_factory):
    folder = tiny_bundle_factory()
    _edit_card(folder, lambda card: card["hyperparameters"].update(hidden=32))
    with pytest.raises(BundleError, match="do not fit"):
        MorphologyModel(folder, device="cpu")


def test_a_non_morphology_bundle_is_refused_by_the_morphology_model(tiny_bundle_factory):
    with pytest.raises(BundleError, match="task must be one of"):
        load_bundle(tiny_bundle_factory(task="metallicity"))
    with pytest.raises(BundleError, match="not a morphology model"):
        MorphologyModel("properties-wu-boada-sim", device="cpu")


def test_pickle_weights_are_never_unpickled(tmp_path, tiny_bundle):
    """A weights file holding a malicious pickle is refused without running its code."""
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (pathlib.Path.touch, (marker,))

    weights = tiny_bundle / "model.safetensors"
    weights.write_bytes(pickle.dumps({"w": Evil()}))
    _edit_card(tiny_bundle, lambda card: card["weights"].update(sha256=sha256_file(weights)))
    with pytest.raises(BundleError, match="cannot read weights"):
        load_bundle(tiny_bundle)
    assert not marker.exists()
    # And a .pt/.pkl weights file is refused by name before anything reads it.
    pt = tiny_bundle / "model.pt"
    pt.write_bytes(pickle.dumps({"w": Evil()}))
    _edit_card(tiny_bundle, lambda card: card["weights"].update(file="model.pt",
                                                                  sha256=sha256_file(pt)))
    with pytest.raises(BundleError, match="safetensors"):
        load_bundle(tiny_bundle)
    assert not marker.exists()


def test_model_code_has_no_pickle_loader():
    import galaxy_inspector.models as models

    for path in pathlib.Path(models.__file__).parent.glob("*.py"):
        text = path.read_text()
        for forbidden in ("import pickle", "torch.load(", "pickle.load", "np.load("):
            assert forbidden not in text, f"{path.name} uses {forbidden}"


@pytest.mark.parametrize("spec,values", [
    (OutputSpec("bt", "", "logit", 0.1, 1.7, clip=(0.01, 0.99)), [0.02, 0.5, 0.98]),
    (OutputSpec("re_arcsec", "arcsec", "log10", -0.1, 0.4), [0.05, 1.0, 12.0]),
    (OutputSpec("x", "", "identity", 3.0, 2.0), [-1.0, 0.0, 7.0]),
])
def test_output_spec_round_trip(spec, values):
    np.testing.assert_allclose(spec.inverse(spec.forward(values)), values, rtol=1e-12)
    assert OutputSpec.from_card(spec.to_card()) == spec


def test_logit_clips_exact_zero_and_one_and_censors_back():
    spec = OutputSpec("bt", "", "logit", 0.0, 1.0, clip=(0.01, 0.99))
    scaled = spec.forward([0.0, 1.0, 0.3])
    assert np.isfinite(scaled).all()
    # Network outputs at or beyond the clip mean "at the bound": B/T of exactly 0 or 1.
    np.testing.assert_allclose(spec.inverse(scaled), [0.0, 1.0, 0.3])
    np.testing.assert_array_equal(spec.inverse(spec.forward([0.005, 0.995])), [0.0, 1.0])
    assert 0.0 < spec.inverse(spec.forward(0.011)) < 0.02


@pytest.mark.parametrize("spec", [OutputSpec("re_arcsec", "arcsec", "log10", 0.0, 80.0),
                                  OutputSpec("bt", "", "logit", 0.0, 80.0)])
def test_inverse_of_far_out_of_range_outputs_is_finite_without_warnings(spec):
    # An untrained network scaled by calibration's search reaches |log10 value| of hundreds.
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # what numpy warns of
        values = spec.inverse(np.array([-20.0, 20.0]))
    assert np.isfinite(values.astype(np.float32)).all()
    assert values[0] < values[1]
