"""Model bundles: safetensors weights + a JSON model card that carries the whole contract.

A bundle is a folder holding ``card.json`` and the weights file it names (``model.safetensors``),
optionally a ``report/`` with the evaluation figures. The card states the architecture and its
hyper-parameters, the input contract (bands, kind, unit, pixel scale, stamp size, pixel
preprocessing), the outputs with their transforms and standard-scaler values, the training
ranges, the posterior settings it was calibrated for, the calibration and test figures, how it
was trained, and the SHA-256 of the weights, which is checked at every load. Weights are read
only through safetensors, never pickle, so a bundle from a stranger cannot run code.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from galaxy_inspector.errors import BundleError, first_line
from galaxy_inspector.shipped import models_dir

__all__ = ["CARD_NAME", "REQUIRED_FIELDS", "Bundle", "load_bundle", "save_bundle",
           "shipped_bundles", "resolve_bundle_path", "sha256_file", "OutputSpec", "load_weights",
           "model_info", "is_demo"]

CARD_NAME = "card.json"
BUNDLE_FORMAT = "galaxy-inspector-bundle/1"
REQUIRED_FIELDS = ("format", "name", "task", "architecture", "hyperparameters", "input",
                   "outputs", "weights")
REQUIRED_INPUT_FIELDS = ("bands", "kind", "pixel_scale_arcsec", "stamp_size")
TRANSFORMS = ("identity", "log10", "logit")


@dataclass(frozen=True)
class OutputSpec:
    """One predicted quantity and how the network's output maps back to physical units.

    ``network = (transform(value) - scaler_mean) / scaler_std``; ``logit`` clips the value into
    ``clip`` first (B/T of exactly 0 or 1 has no logit). The network was trained on clipped
    targets, so its output at or beyond the clip means "at the bound or beyond": ``inverse``
    censors such values to the bound itself (B/T of exactly 0 or 1, as for one-component
    galaxies), which gives the posterior its point masses at 0 and 1.
    """

    name: str
    unit: str
    transform: str
    scaler_mean: float
    scaler_std: float
    clip: tuple[float, float] | None = None
    description: str = ""

    def forward(self, value):
        """Physical value(s) -> standard-scaled network space."""
        v = np.asarray(value, dtype=float)
        if self.transform == "logit":
            lo, hi = self.clip or (1e-6, 1 - 1e-6)
            v = np.clip(v, lo, hi)
            v = np.log(v / (1.0 - v))
        elif self.transform == "log10":
            v = np.log10(v)
        return (v - self.scaler_mean) / self.scaler_std

    def inverse(self, scaled):
        """Standard-scaled network space -> physical value(s)."""
        v = np.asarray(scaled) * self.scaler_std + self.scaler_mean
        if self.transform == "logit":
            value = 1.0 / (1.0 + np.exp(-v))
            if self.clip is None:
                return value
            lo, hi = self.clip
            tol = 1e-6
            return np.where(value <= lo + tol, 0.0, np.where(value >= hi - tol, 1.0, value))
        if self.transform == "log10":
            return 10.0 ** v
        return v

    def to_card(self) -> dict:
        d = {"name": self.name, "unit": self.unit, "transform": self.transform,
             "scaler_mean": self.scaler_mean, "scaler_std": self.scaler_std,
             "description": self.description}
        if self.clip is not None:
            d["clip"] = list(self.clip)
        return d

    @classmethod
    def from_card(cls, d: dict) -> OutputSpec:
        try:
            spec = cls(name=d["name"], unit=d.get("unit", ""), transform=d["transform"],
                       scaler_mean=float(d["scaler_mean"]), scaler_std=float(d["scaler_std"]),
                       clip=tuple(d["clip"]) if d.get("clip") else None,
                       description=d.get("description", ""))
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"model card output entry {d!r} is incomplete ({exc})") from None
        if spec.transform not in TRANSFORMS:
            raise BundleError(f"model card output {spec.name!r} has unknown transform "
                              f"{spec.transform!r}; known: {', '.join(TRANSFORMS)}")
        return spec


@dataclass
class Bundle:
    """A loaded bundle: its card, weights (name -> numpy array) and folder."""

    path: Path
    card: dict
    tensors: dict = field(repr=False)

    @property
    def name(self) -> str:
        return self.card["name"]

    @property
    def sha256(self) -> str:
        return self.card["weights"]["sha256"]

    @property
    def outputs(self) -> list[OutputSpec]:
        return [OutputSpec.from_card(o) for o in self.card["outputs"]]

    @property
    def input(self) -> dict:
        return self.card["input"]

    def report_path(self) -> Path | None:
        p = self.path / "report" / "report.md"
        return p if p.exists() else None


def model_info(model) -> dict:
    """Provenance of a loaded model (anything holding a ``bundle``) for catalogue attributes:
    name, SHA-256, path, task, method, outputs, and whether it is a demo trained on synthetic
    data."""
    bundle = model.bundle
    card = bundle.card
    return {"name": bundle.name, "sha256": bundle.sha256, "path": str(bundle.path),
            "task": card.get("task"), "method": card.get("method", ""),
            "outputs": [o.name for o in bundle.outputs],
            "demo": bool(card.get("demo", False)),
            "synthetic_training_data": bool(card.get("synthetic_training_data", False))}


def is_demo(model) -> bool:
    """Whether a loaded model's bundle says it is a demonstration or was trained on synthetic
    labels (its numbers are then not measurements of real galaxies)."""
    info = model_info(model)
    return info["demo"] or info["synthetic_training_data"]


def load_weights(network, state: dict, bundle: Bundle) -> None:
    """Load ``state`` (name -> numpy array) into ``network``; a mismatch is a ``BundleError``."""
    import torch

    try:
        network.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    except RuntimeError as exc:
        raise BundleError(f"weights of {bundle.name!r} do not fit architecture "
                          f"{bundle.card['architecture']!r}: {first_line(exc)}") from None


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shipped_bundles() -> dict[str, Path]:
    """Names and folders of the bundles shipped under ``resources/models``."""
    root = models_dir()
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if (p / CARD_NAME).is_file()}


def resolve_bundle_path(path_or_name) -> Path:
    """A bundle folder from a folder, a card path, or the name of a shipped bundle."""
    p = Path(path_or_name).expanduser()
    if p.is_file() and p.name.endswith(".json"):
        return p.parent
    if p.is_dir():
        if not (p / CARD_NAME).is_file():
            raise BundleError(f"{p} is not a model bundle: it has no {CARD_NAME}")
        return p
    shipped = shipped_bundles()
    if str(path_or_name) in shipped:
        return shipped[str(path_or_name)]
    known = ", ".join(shipped) or "none"
    raise BundleError(f"no model bundle at {path_or_name!r} (shipped bundles: {known})")


def load_bundle(path_or_name) -> Bundle:
    """Read and verify a bundle; raises ``BundleError`` with a one-line reason if it is unusable."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    folder = resolve_bundle_path(path_or_name)
    try:
        card = json.loads((folder / CARD_NAME).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"cannot read model card {folder / CARD_NAME}: {exc}") from None
    if not isinstance(card, dict):
        raise BundleError(f"model card {folder / CARD_NAME} is not a JSON object")
    missing = [k for k in REQUIRED_FIELDS if k not in card]
    if missing:
        raise BundleError(f"model card {folder / CARD_NAME} is missing field(s): "
                          f"{', '.join(missing)}")
    if card["format"] != BUNDLE_FORMAT:
        raise BundleError(f"model card format {card['format']!r} is not {BUNDLE_FORMAT!r}")
    missing = [k for k in REQUIRED_INPUT_FIELDS if k not in card["input"]]
    if missing:
        raise BundleError(f"model card input contract is missing field(s): {', '.join(missing)}")
    from galaxy_inspector.models.registry import ARCHITECTURES

    if card["architecture"] not in ARCHITECTURES:
        raise BundleError(f"unknown architecture {card['architecture']!r} in {folder}; "
                          f"this version knows {', '.join(sorted(ARCHITECTURES))}")
    weights = card["weights"]
    if not isinstance(weights, dict) or "file" not in weights or "sha256" not in weights:
        raise BundleError("model card field 'weights' needs 'file' and 'sha256'")
    wpath = folder / weights["file"]
    if not wpath.suffix == ".safetensors":
        raise BundleError(f"weights must be a .safetensors file, not {wpath.name}")
    if not wpath.is_file():
        raise BundleError(f"weights file {wpath} is missing")
    actual = sha256_file(wpath)
    if actual != weights["sha256"]:
        raise BundleError(f"checksum mismatch for {wpath.name}: card says "
                          f"{weights['sha256'][:12]}..., file is {actual[:12]}...; "
                          "the bundle is corrupt or was modified")
    try:
        tensors = load_file(str(wpath))
    except (SafetensorError, OSError, ValueError) as exc:
        raise BundleError(f"cannot read weights {wpath}: {exc}") from None
    for output in card["outputs"]:
        OutputSpec.from_card(output)  # raises BundleError on a malformed entry
    return Bundle(path=folder, card=card, tensors=tensors)


def save_bundle(folder, card: dict, tensors: dict) -> Path:
    """Write ``tensors`` (name -> numpy array) as safetensors and the card with their SHA-256."""
    from safetensors.numpy import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    wname = "model.safetensors"
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(folder / wname))
    card = {"format": BUNDLE_FORMAT, **card,
            "weights": {"file": wname, "sha256": sha256_file(folder / wname)}}
    (folder / CARD_NAME).write_text(json.dumps(card, indent=2) + "\n")
    return folder
