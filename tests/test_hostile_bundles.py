"""Hostile bundles and options (issue 15): every tampered card refused at load with one line
naming its field, garbled LightGBM text refused without crashing the process, no pickle, and
pixel scales or worker counts that would multiply memory bounded with a message."""

from __future__ import annotations

import inspect
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from galaxy_inspector.errors import BundleError, InputError
from galaxy_inspector.models.bundle import (
    CARD_NAME,
    HYPERPARAMETERS,
    load_bundle,
    sha256_file,
    shipped_bundles,
)
from galaxy_inspector.models.morphology import MorphologyModel
from galaxy_inspector.models.registry import ARCHITECTURES


def _edit_card(folder: Path, edit) -> None:
    card = json.loads((folder / CARD_NAME).read_text())
    edit(card)
    (folder / CARD_NAME).write_text(json.dumps(card))


def _set(path: str, value):
    """An edit that sets the card field at dotted ``path`` (list items by index)."""
    *parents, last = [int(k) if k.isdigit() else k for k in path.split(".")]

    def edit(card):
        node = card
        for key in parents:
            node = node[key]
        node[last] = value
    return edit


def _refusal(folder: Path, model=MorphologyModel) -> str:
    with pytest.raises(BundleError) as caught:
        model(folder, device="cpu")
    message = str(caught.value)
    assert "\n" not in message and len(message) < 400, message
    return message


MORPHOLOGY_TAMPERING = [
    ("hyperparameters.no_such_option", 1, "hyperparameters.no_such_option is not a known field"),
    ("hyperparameters.hidden", "16", "hyperparameters.hidden must be an integer from 1 to 4096"),
    ("hyperparameters.hidden", 10 ** 9, "hyperparameters.hidden must be an integer"),
    ("hyperparameters.dropout", None, "hyperparameters.dropout must be a number in [0, 1)"),
    ("hyperparameters.channels", [8, 8], "hyperparameters.channels must be a list of 4 items"),
    ("hyperparameters.crop_size", 40, "hyperparameters.crop_size must be a multiple of 16"),
    ("hyperparameters.n_params", 2, "hyperparameters.n_params must equal the number of outputs"),
    ("hyperparameters.flux_skip", {"output": 0}, "hyperparameters.flux_skip.mean is missing"),
    ("input", 5, "input must be a JSON object, got 5"),
    ("input.pixel_scale_arcsec", 0, "input.pixel_scale_arcsec must be a number in (0, 3600]"),
    ("input.pixel_scale_arcsec", "0.168", "input.pixel_scale_arcsec must be a number"),
    ("input.stamp_size", 100000, "input.stamp_size must be an integer from 8 to 1024"),
    ("input.stamp_size", 64, "hyperparameters.stamp_size must equal input.stamp_size (64)"),
    ("input.kind", "rgb", 'input.kind must be one of "flux", "display", got "rgb"'),
    ("posterior.dropout", 1.0, "posterior.dropout must be a number in [0, 1), got 1.0"),
    ("posterior.orientations", 9, "posterior.orientations must be an integer from 1 to 8"),
    ("posterior.orientations", "2", "posterior.orientations must be an integer"),
    ("posterior.affine", [[0.0, 1.0]], "posterior.affine must hold one [a, b] pair per output"),
    ("posterior.affine", [[0.0, float("nan")]] * 3, "posterior.affine[0][1] must be a finite"),
    ("posterior.sigma_scale", [1.0, 0.0, 1.0], "posterior.sigma_scale must be 3 positive"),
    ("posterior.n_samples", 0, "posterior.n_samples must be an integer from 1 to 100000"),
    ("training_ranges.re_arcsec", [6.0, 0.1], "training_ranges.re_arcsec must be a pair"),
    ("training_ranges.re_arcsec", "wide", "training_ranges.re_arcsec must be a pair"),
    ("outputs.0.scaler_std", 0.0, "outputs[0].scaler_std must be a number > 0, got 0.0"),
    ("outputs.1.scaler_mean", float("inf"), "outputs[1].scaler_mean must be a finite number"),
    ("outputs.0.clip", [0.9, 0.1], "outputs[0].clip must be [lo, hi] with 0 < lo < hi < 1"),
    ("outputs.2.name", "bt", "outputs must have distinct names"),
    ("labels", {"bt_disk_max": "low"}, "labels.bt_disk_max must be a number in [0, 1]"),
    ("name", "two\nlines", "name must be one line of text"),
    ("posterier", {}, "posterier is not a known field"),
    ("weights.file", "../model.safetensors", "weights.file must be a .safetensors file name"),
    ("weights.sha256", 5, "weights.sha256 must be a SHA-256"),
]


@pytest.mark.parametrize("path, value, message", MORPHOLOGY_TAMPERING,
                         ids=[f"{p}={v!r}"[:40] for p, v, _ in MORPHOLOGY_TAMPERING])
def test_every_tampered_morphology_card_is_refused_with_one_line_naming_its_field(
        tiny_bundle, path, value, message):
    _edit_card(tiny_bundle, _set(path, value))
    refusal = _refusal(tiny_bundle)
    assert refusal.startswith(f"{tiny_bundle / CARD_NAME}: "), refusal
    assert message in refusal


def test_deeply_nested_card_is_refused_before_json_recurses(tiny_bundle):
    card = (tiny_bundle / CARD_NAME).read_text()
    deep = "[" * 100_000 + "]" * 100_000
    (tiny_bundle / CARD_NAME).write_text(card.replace('"training": {', f'"deep": {deep}, '
                                                                        '"training": {', 1))
    assert "nested more than 32 levels deep" in _refusal(tiny_bundle)


def test_card_asking_for_a_huge_network_is_refused_without_building_it(tiny_bundle):
    # Within every field's bound, but 1024 channels at a 512-px crop make the trunk's first
    # dense layer 1024 * 32**2 * 4096 weights: 17 GB of float32 if it were built.
    _edit_card(tiny_bundle, _set("hyperparameters", {
        **json.loads((tiny_bundle / CARD_NAME).read_text())["hyperparameters"],
        "crop_size": 512, "channels": [1024] * 4, "hidden": 4096}))
    message = _refusal(tiny_bundle)
    assert "do not fit" in message and "in the card's network" in message


def test_hyperparameter_tables_are_the_constructors_signatures():
    assert set(HYPERPARAMETERS) == set(ARCHITECTURES)
    for name, cls in ARCHITECTURES.items():
        assert list(HYPERPARAMETERS[name]) == list(inspect.signature(cls).parameters)


@pytest.mark.parametrize("name", list(shipped_bundles()))
def test_shipped_cards_pass_the_schema(name):
    load_bundle(name)


def _copy_bundle(name: str, tmp_path: Path) -> Path:
    folder = tmp_path / name
    shutil.copytree(shipped_bundles()[name], folder)
    return folder


PROPERTY_TAMPERING = [
    ("properties-wu-boada-sim", "method", "xgboost", 'method must be one of "cnn", "cnn+gbm"'),
    ("properties-wu-boada-sim", "hyperparameters.in_channels", 1,
     "hyperparameters.in_channels must equal the number of input.bands (3)"),
    ("properties-wu-boada-sim", "hyperparameters.depth", 20, "hyperparameters.depth must be one"),
    ("properties-wu-boada-sim", "input.preprocessing.kind", "log",
     "input.preprocessing.kind must be one of"),
    ("properties-wu-boada-sim", "input.preprocessing.softening", -1.0,
     "input.preprocessing.softening must be a number > 0"),
    ("properties-wu-boada-sim", "uncertainty.sigma_scale", [1.0],
     "uncertainty.sigma_scale must hold one factor per output (3)"),
    ("properties-dobbels-sim", "gbm.cnn_keep", [2, 4, 64],
     "gbm.cnn_keep must index the 64 CNN features, got 64"),
    ("properties-dobbels-sim", "gbm.luminosity_band", 1, "gbm.luminosity_band must index"),
    ("properties-dobbels-sim", "uncertainty.conformal_offsets.ml_g", [0.1, "x", 0.2],
     "uncertainty.conformal_offsets.ml_g[1] must be a finite number"),
]


@pytest.mark.parametrize("name, path, value, message", PROPERTY_TAMPERING,
                         ids=[f"{p}={v!r}"[:40] for _, p, v, _ in PROPERTY_TAMPERING])
def test_every_tampered_property_card_is_refused_with_one_line(tmp_path, name, path, value,
                                                               message):
    from galaxy_inspector.physical_properties.model import PropertyModel

    folder = _copy_bundle(name, tmp_path)
    _edit_card(folder, _set(path, value))
    assert message in _refusal(folder, PropertyModel)


def _fix_tree_sizes(text: str) -> str:
    """The header's tree_sizes recomputed for edited trees (as LightGBM would write them)."""
    head, rest = text.split("\nTree=", 1)
    body, end = ("\nTree=" + rest).split("\nend of trees", 1)
    trees = body.split("\nTree=")[1:]
    sizes = " ".join(str(len("Tree=") + len(tree) + 1) for tree in trees)
    head = re.sub(r"tree_sizes=.*", f"tree_sizes={sizes}", head)
    return head + "".join("\nTree=" + tree for tree in trees) + "\nend of trees" + end


def _garbled_dobbels(tmp_path: Path, garble) -> Path:
    """A copy of the Dobbels bundle whose ``gbm.ml_g.point`` text is ``garble(text)``, with the
    card's SHA-256 fixed so that it loads (a hostile bundle, not a corrupted one)."""
    from safetensors.numpy import load_file, save_file

    folder = _copy_bundle("properties-dobbels-sim", tmp_path)
    weights = folder / "model.safetensors"
    tensors = load_file(str(weights))
    text = garble(tensors["gbm.ml_g.point"].tobytes().decode())
    tensors["gbm.ml_g.point"] = np.frombuffer(text.encode(), dtype=np.uint8).copy()
    save_file(tensors, str(weights))
    _edit_card(folder, _set("weights.sha256", sha256_file(weights)))
    return folder


GARBLED_TEXT = {
    "split feature out of range": (
        lambda t: _fix_tree_sizes(re.sub(r"split_feature=\d+", "split_feature=99999", t,
                                         count=1)),
        "gbm.ml_g.point: tree 0: split_feature indexes a feature outside 0 to 55"),
    "children in a loop": (
        lambda t: _fix_tree_sizes(re.sub(r"left_child=\S+", "left_child=0", t, count=1)),
        "left_child/right_child do not form trees"),
    "truncated": (lambda t: t[:len(t) // 2], "it is not a complete LightGBM text model"),
    "tree sizes": (lambda t: re.sub(r"tree_sizes=\d+", "tree_sizes=5", t, count=1),
                   "its tree_sizes do not match its trees"),
    "not numbers": (lambda t: _fix_tree_sizes(re.sub(r"threshold=\S+", "threshold=x", t, count=1)),
                    "threshold holds a value that is not a number"),
    "header": (lambda t: t.replace("max_feature_idx=55", "max_feature_idx=5"),
               "its header says max_feature_idx=5, not 55"),
}


@pytest.mark.slow  # spawns LightGBM's checking process
@pytest.mark.parametrize("kind", list(GARBLED_TEXT))
def test_garbled_lightgbm_text_is_refused_with_one_line(tmp_path, kind):
    from galaxy_inspector.physical_properties.model import PropertyModel

    garble, reason = GARBLED_TEXT[kind]
    message = _refusal(_garbled_dobbels(tmp_path, garble), PropertyModel)
    assert message.startswith("the LightGBM models of bundle 'properties-dobbels-sim' cannot "
                              "be read: ") and reason in message, message


@pytest.mark.slow  # runs the CLI in a subprocess: before the fix it aborted the process
def test_lightgbm_text_that_crashes_lightgbm_fails_the_run_with_one_line(tmp_path):
    # Every check of the structure passes, but LightGBM aborts (SIGABRT) parsing a tree whose
    # leaf_weight array is one value short: only the checking child process dies.
    folder = _garbled_dobbels(tmp_path, lambda t: _fix_tree_sizes(
        re.sub(r"leaf_weight=\S+ ", "leaf_weight=", t, count=1)))
    image = shipped_bundles()["properties-dobbels-sim"].parents[1] / "samples" / "plain_njy.fits"
    out = tmp_path / "cat.h5"
    run = subprocess.run(
        [sys.executable, "-c", "import sys; from galaxy_inspector.cli import main; "
                               "sys.exit(main())", "--batch", str(image), "--out", str(out),
         "--model", str(folder), "--quiet"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, (run.returncode, run.stderr[-2000:])
    assert run.stderr.strip().splitlines() == [
        "galaxy-inspector: error: the LightGBM models of bundle 'properties-dobbels-sim' cannot "
        "be read: LightGBM crashed reading them (signal 6)"]
    assert not out.exists()  # refused before any row was written


def test_a_refused_bundle_writes_no_catalogue(tiny_bundle, tmp_path, capsys):
    from galaxy_inspector.cli import main

    _edit_card(tiny_bundle, _set("posterior.dropout", 1.0))
    image = shipped_bundles()["morphology-hsc-g"].parents[1] / "samples" / "plain_njy.fits"
    out = tmp_path / "cat.h5"
    assert main(["--batch", str(image), "--out", str(out), "--model", str(tiny_bundle)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "posterior.dropout must be a number in [0, 1), got 1.0" in err[0]
    assert not out.exists()


@pytest.mark.slow  # spawns LightGBM's checking process
def test_loading_every_shipped_bundle_unpickles_nothing(monkeypatch):
    import pickle
    from multiprocessing.reduction import ForkingPickler

    import torch

    from galaxy_inspector.engine import load_models

    def refuse(*args, **kwargs):
        raise AssertionError("a bundle load unpickled something")

    for owner, name in ((pickle, "load"), (pickle, "loads"), (torch, "load"), (np, "load"),
                        (ForkingPickler, "loads")):
        monkeypatch.setattr(owner, name, refuse)
    for name in shipped_bundles():  # one at a time: two of them predict the same quantity
        load_models([name])


def test_pixels_far_finer_than_the_model_are_refused_before_the_cut():
    from galaxy_inspector.io.image import SkyImage
    from galaxy_inspector.preprocessing import make_stamp

    # CDELT 3e-7 deg on a 96x96 image: a 28,000-px cut (6.3 GB of float64) before the fix.
    image = SkyImage.from_array(np.random.default_rng(0).normal(0, 1, (96, 96)), 3e-7 * 3600)
    with pytest.raises(InputError, match=r"the image's pixel scale 0\.0011″ is 156x finer than "
                                         r"the model's 0\.168″ .*rebin the image by 156"):
        make_stamp(image, 48, 48, 128, 0.168)


@pytest.mark.parametrize("cores, available_gb, asked, expected", [
    ((0, 1), 64.0, 64, 2),  # bounded by the cores
    ((0, 1, 2, 3), 1.2, 4, 2),  # bounded by the memory
    ((0, 1), 0.1, 8, 1),  # always at least one
    ((0, 1), 64.0, 2, 2),  # what fits is kept, without a note
])
def test_worker_count_is_bounded_by_cores_and_memory_with_a_note(monkeypatch, cores,
                                                                  available_gb, asked, expected):
    import os
    from types import SimpleNamespace

    import psutil

    from galaxy_inspector import batch

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(cores), raising=False)
    monkeypatch.setattr(psutil, "virtual_memory",
                        lambda: SimpleNamespace(available=int(available_gb * 1e9)))
    options, notes = batch._bounded_workers(batch.BatchOptions(workers=asked))
    assert options.workers == expected
    if expected == asked:
        assert notes == []
    else:
        (note,) = notes
        assert note.startswith(f"note: --workers {asked} lowered to {expected}: this machine has "
                               f"{len(cores)} core(s)")
