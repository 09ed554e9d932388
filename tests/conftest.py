"""Shared fixtures. Qt runs offscreen: this is set before anything can import Qt.

Fixtures
--------
tiny_bundle
    Folder of a small *untrained* morphology bundle with the shipped model's contract (g band,
    nJy, 0.168″/px, 128 px stamps, outputs bt / re_arcsec / flux_njy), built in ``tmp_path``.
tiny_bundle_factory
    ``factory(folder=None, **card_overrides)`` -> bundle folder, for variants of the card.
sample_paths
    ``{file name: Path}`` of every file in ``resources/samples`` (located like the app does).
sample_truth
    Rows of ``resources/samples/truth.csv`` as dicts (floats where numeric).
"""

from __future__ import annotations

import os

# Before any test module (or pytest-qt) imports Qt.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PYTEST_QT_API", "pyside6")

import copy  # noqa: E402
import csv  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

TINY_HYPERPARAMETERS = {
    "stamp_size": 128, "crop_size": 32, "n_params": 3, "dropout": 0.1, "arsinh_scale": 2.0,
    "aperture_radii": [2, 4, 8, 16, 32, 60], "aperture_scale": 10.0,
    "channels": [4, 4, 8, 8], "hidden": 16,
}


def tiny_card() -> dict:
    """A complete morphology model card (without ``format``/``weights``, which save adds)."""
    from galaxy_inspector import __version__
    from galaxy_inspector.models.bundle import OutputSpec

    specs = [
        OutputSpec("bt", "", "logit", 0.0, 2.0, clip=(0.01, 0.99),
                   description="bulge-to-total flux ratio"),
        OutputSpec("re_arcsec", "arcsec", "log10", 0.0, 0.4,
                   description="circular half-light radius of the intrinsic light"),
        OutputSpec("flux_njy", "nJy", "log10", 4.5, 0.8, description="total intrinsic flux"),
    ]
    return {
        "name": "tiny-test-morphology",
        "task": "morphology",
        "description": "untrained test fixture (tests/conftest.py); predictions are meaningless",
        "architecture": "gampen-stn-mcdropout-head",
        "hyperparameters": dict(TINY_HYPERPARAMETERS),
        "input": {
            "bands": ["g"], "kind": "flux", "unit": "nJy", "pixel_scale_arcsec": 0.168,
            "stamp_size": 128,
            "preprocessing": {
                "pixels": "arsinh(x / 2.0 nJy) inside the network",
                "centring": "galaxy at the stamp centre ((size-1)/2, 0-based)",
                "fill": "masked or non-finite pixels replaced before the network",
            },
        },
        "outputs": [s.to_card() for s in specs],
        "training_ranges": {"bt": [0.0, 1.0], "re_arcsec": [0.1, 6.0], "flux_njy": [1e3, 5e6]},
        "posterior": {"dropout": 0.1, "n_samples": 64, "sigma_scale": [1.0, 1.0, 1.0],
                      "calibrated": False},
        "training": {"data": "none (random initialisation)", "seed": 0},
        "package_version": __version__,
    }


def make_tiny_bundle(folder, seed: int = 0, **card_overrides) -> Path:
    """Write a tiny untrained bundle into ``folder``; top-level card keys can be overridden."""
    import torch

    from galaxy_inspector.models.bundle import save_bundle
    from galaxy_inspector.models.morphology_network import MorphologyNet

    card = copy.deepcopy(tiny_card())
    card.update(card_overrides)
    torch.manual_seed(seed)
    net = MorphologyNet(**card["hyperparameters"])
    tensors = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    return save_bundle(folder, card, tensors)


@pytest.fixture
def tiny_bundle(tmp_path) -> Path:
    return make_tiny_bundle(tmp_path / "tiny-bundle")


@pytest.fixture
def tiny_bundle_factory(tmp_path):
    counter = iter(range(1_000_000))

    def factory(folder=None, **card_overrides) -> Path:
        folder = folder or tmp_path / f"bundle-{next(counter)}"
        return make_tiny_bundle(folder, **card_overrides)

    return factory


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    from galaxy_inspector.shipped import samples_dir as shipped_samples

    return shipped_samples()


@pytest.fixture(scope="session")
def sample_paths(samples_dir) -> dict[str, Path]:
    paths = {p.name: p for p in sorted(samples_dir.iterdir()) if p.is_file()}
    if not paths:
        pytest.fail(f"no sample files in {samples_dir}; run python -m training.make_samples")
    return paths


@pytest.fixture(scope="session")
def sample_truth(samples_dir) -> list[dict]:
    rows = []
    with open(samples_dir / "truth.csv", newline="") as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                try:
                    row[key] = float(value)
                except ValueError:
                    pass
            rows.append(row)
    return rows
