"""Model bundles: safetensors weights + a JSON model card that carries the whole contract.

A bundle is a folder holding ``card.json`` and the weights file it names (``model.safetensors``),
optionally a ``report/`` with the evaluation figures. The card states the architecture and its
hyper-parameters, the input contract (bands, kind, unit, pixel scale, stamp size, pixel
preprocessing), the outputs with their transforms and standard-scaler values, the training
ranges, the posterior settings it was calibrated for, the calibration and test figures, how it
was trained, and the SHA-256 of the weights, which is checked at every load. Weights are read
only through safetensors, never pickle, so a bundle from a stranger cannot run code.

Every load checks the whole card against ``CARD_SCHEMA`` (``validate_card``): types, ranges,
the architecture's ``HYPERPARAMETERS``, and the agreement between fields. A card that would
load and then fail or mislead (a dropout of 1, a pixel scale of 0, an unknown or misspelt
field, a network of a billion parameters) is refused with one line naming the field.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from galaxy_inspector.errors import BundleError, first_line
from galaxy_inspector.shipped import models_dir

__all__ = ["CARD_NAME", "REQUIRED_FIELDS", "Bundle", "load_bundle", "save_bundle",
           "shipped_bundles", "resolve_bundle_path", "sha256_file", "OutputSpec", "load_weights",
           "model_info", "is_demo", "validate_card", "CARD_SCHEMA", "HYPERPARAMETERS",
           "MAX_CARD_DEPTH", "MAX_STAMP_SIZE"]

CARD_NAME = "card.json"
BUNDLE_FORMAT = "galaxy-inspector-bundle/1"
REQUIRED_FIELDS = ("format", "name", "task", "architecture", "hyperparameters", "input",
                   "outputs", "weights")
REQUIRED_INPUT_FIELDS = ("bands", "kind", "pixel_scale_arcsec", "stamp_size")
TRANSFORMS = ("identity", "log10", "logit")
#: ``OutputSpec.inverse`` clips log10 values to this range before ``10 **``: float32, the
#: catalogue's sample type, holds about 1e-38 to 3e38, far beyond any quantity a model measures.
LOG10_RANGE = (-37.0, 38.0)


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
        """Standard-scaled network space -> physical value(s).

        Out of range, nothing overflows: a logit value saturates at 0 or 1 (``exp`` reaching
        inf gives exactly that limit), and a log10 value beyond ``LOG10_RANGE`` (a network far
        outside its domain, such as an untrained one) becomes 1e-37 or 1e38, finite in the
        catalogue's float32, instead of 0 or inf.
        """
        v = np.asarray(scaled) * self.scaler_std + self.scaler_mean
        if self.transform == "logit":
            with np.errstate(over="ignore"):
                value = 1.0 / (1.0 + np.exp(-v))
            if self.clip is None:
                return value
            lo, hi = self.clip
            tol = 1e-6
            return np.where(value <= lo + tol, 0.0, np.where(value >= hi - tol, 1.0, value))
        if self.transform == "log10":
            return 10.0 ** np.clip(v, *LOG10_RANGE)
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


class _Invalid(Exception):
    """A card value that breaks the schema; the message names its field (``posterior.dropout``)."""


def _join(path: str, key) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else str(key))


def _shown(value) -> str:
    """A card value as JSON, cut to one short line for a message."""
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class _Number:
    """A finite number within bounds (open bounds with ``lo_open``/``hi_open``)."""

    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = False

    def __call__(self, value, path):
        if not (_is_number(value) and math.isfinite(value) and self.lo <= value <= self.hi
                and not (self.lo_open and value == self.lo)
                and not (self.hi_open and value == self.hi)):
            raise _Invalid(f"{path} must be {self.expected}, got {_shown(value)}")

    @property
    def expected(self) -> str:
        if math.isinf(self.lo) and math.isinf(self.hi):
            return "a finite number"
        if math.isinf(self.hi):
            return f"a number {'>' if self.lo_open else '>='} {self.lo:g}"
        return (f"a number in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}"
                f"{')' if self.hi_open else ']'}")


@dataclass(frozen=True)
class _Integer:
    lo: int
    hi: int
    step: int = 1

    def __call__(self, value, path):
        if not (isinstance(value, int) and not isinstance(value, bool)
                and self.lo <= value <= self.hi and value % self.step == 0):
            multiple = f"a multiple of {self.step}" if self.step > 1 else "an integer"
            raise _Invalid(f"{path} must be {multiple} from {self.lo} to {self.hi}, got "
                           f"{_shown(value)}")


@dataclass(frozen=True)
class _Text:
    """A string; ``one_line`` ones (names) hold no control characters, so messages stay one line."""

    max_len: int = 100_000
    one_line: bool = False

    def __call__(self, value, path):
        if not (isinstance(value, str) and len(value) <= self.max_len
                and not (self.one_line and (not value or not value.isprintable()))):
            kind = f"one line of text (at most {self.max_len} characters)" if self.one_line \
                else "text"
            raise _Invalid(f"{path} must be {kind}, got {_shown(value)}")


@dataclass(frozen=True)
class _Choice:
    values: tuple

    def __call__(self, value, path):
        if not any(type(value) is type(v) and value == v for v in self.values):
            raise _Invalid(f"{path} must be one of {', '.join(map(_shown, self.values))}, got "
                           f"{_shown(value)}")


@dataclass(frozen=True)
class _Pattern:
    regex: str
    expected: str

    def __call__(self, value, path):
        if not (isinstance(value, str) and re.fullmatch(self.regex, value)):
            raise _Invalid(f"{path} must be {self.expected}, got {_shown(value)}")


def _flag(value, path):
    if not isinstance(value, bool):
        raise _Invalid(f"{path} must be true or false, got {_shown(value)}")


def _anything(value, path):
    """Informational fields (training history, test figures): read by people, not the code."""


@dataclass(frozen=True)
class _List:
    item: Callable
    min_len: int = 0
    max_len: int = 10_000
    unique: bool = False

    def __call__(self, value, path):
        if not (isinstance(value, list) and self.min_len <= len(value) <= self.max_len):
            size = (f"{self.min_len}" if self.min_len == self.max_len
                    else f"{self.min_len} to {self.max_len}")
            raise _Invalid(f"{path} must be a list of {size} items, got {_shown(value)}")
        for i, item in enumerate(value):
            self.item(item, _join(path, i))
        if self.unique and len({json.dumps(v) for v in value}) < len(value):
            raise _Invalid(f"{path} must not repeat an item, got {_shown(value)}")


@dataclass(frozen=True)
class _Nullable:
    check: Callable

    def __call__(self, value, path):
        if value is not None:
            self.check(value, path)


@dataclass(frozen=True)
class _Object:
    """A JSON object of known ``fields`` (``required`` ones must be present); other keys are
    refused (a misspelt field would otherwise be silently ignored) unless ``other`` checks them."""

    fields: dict
    required: tuple = ()
    other: Callable | None = None

    def __call__(self, value, path):
        if not isinstance(value, dict):
            raise _Invalid(f"{path or 'the card'} must be a JSON object, got {_shown(value)}")
        for key in self.required:
            if key not in value:
                raise _Invalid(f"{_join(path, key)} is missing")
        for key, item in value.items():
            check = self.fields.get(key, self.other)
            if check is None:
                raise _Invalid(f"{_join(path, key)} is not a known field (known: "
                               f"{', '.join(self.fields)})")
            check(item, _join(path, key))


def _range(value, path):
    """A training range: ``[lo, hi]`` or ``{"min": lo, "max": hi}`` of finite numbers, lo <= hi
    (equal for a quantity that was constant in training)."""
    pair = (value.get("min"), value.get("max")) if isinstance(value, dict) else value
    if not (isinstance(pair, (list, tuple)) and len(pair) == 2
            and all(_is_number(v) and math.isfinite(v) for v in pair) and pair[0] <= pair[1]):
        raise _Invalid(f"{path} must be a pair [lo, hi] of finite numbers with lo <= hi, got "
                       f"{_shown(value)}")


_FINITE = _Number()
_POSITIVE = _Number(0.0, lo_open=True)
_DROPOUT = _Number(0.0, 1.0, hi_open=True)
_NAME = _Text(200, one_line=True)
_NAMES = _List(_NAME, 0, 64, unique=True)
_WIDTHS = _List(_Integer(1, 1024), 4, 4)
#: Largest stamp side (pixels) a model may read: 4x the shipped 128, and a bound on memory.
MAX_STAMP_SIZE = 1024
#: Deepest nesting of arrays and objects in a card (the shipped cards reach 7): deeper ones are
#: refused before ``json`` parses them, whose recursion would otherwise overflow the stack.
MAX_CARD_DEPTH = 32
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')

#: Hyper-parameters of each architecture's constructor (``registry.ARCHITECTURES``; a test keeps
#: this table and the constructors' signatures the same), with bounds that keep a network small
#: enough to build (``LoadedModel`` also checks its size against the weights before building).
HYPERPARAMETERS = {
    "gampen-stn-mcdropout-head": {
        "stamp_size": _Integer(16, MAX_STAMP_SIZE), "crop_size": _Integer(16, 512, step=16),
        "n_params": _Integer(1, 16), "dropout": _DROPOUT, "arsinh_scale": _POSITIVE,
        "aperture_radii": _List(_POSITIVE, 1, 16), "aperture_scale": _POSITIVE,
        "channels": _WIDTHS, "hidden": _Integer(1, 4096),
        "flux_skip": _Nullable(_Object(
            {"output": _Integer(0, 15), "mean": _FINITE, "std": _POSITIVE,
             "floor_njy": _POSITIVE}, required=("output", "mean", "std", "floor_njy"))),
        "psf_input": _Nullable(_Object({"centre": _FINITE, "scale": _POSITIVE},
                                       required=("centre", "scale"))),
    },
    "property-resnet": {
        "in_channels": _Integer(1, 16), "n_targets": _Integer(1, 64), "depth": _Choice((18, 34)),
        "widths": _WIDTHS, "stem_stride": _Integer(1, 8), "hidden": _Integer(1, 4096),
        "dropout": _DROPOUT,
    },
}

CARD_SCHEMA = _Object({
    "format": _Choice((BUNDLE_FORMAT,)),
    "name": _NAME,
    "task": _Choice(("morphology", "properties")),
    "method": _Choice(("cnn", "cnn+gbm")),
    "description": _Text(),
    "demo": _flag,
    "synthetic_training_data": _flag,
    "architecture": _NAME,
    "hyperparameters": _Object({}, other=_anything),  # per architecture: HYPERPARAMETERS
    "input": _Object({
        "bands": _List(_NAME, 1, 16, unique=True), "kind": _Choice(("flux", "display")),
        "unit": _Text(200), "pixel_scale_arcsec": _Number(0.0, 3600.0, lo_open=True),
        "stamp_size": _Integer(8, MAX_STAMP_SIZE), "sky_sigma_njy": _POSITIVE,
        "preprocessing": _Object({}, other=_anything),  # per task: PROPERTY_PREPROCESSING
        "centring": _Text(), "needs_redshift": _flag, "photometry": _NAMES,
    }, required=REQUIRED_INPUT_FIELDS),
    "outputs": _List(_Object({
        "name": _NAME, "unit": _Text(200), "transform": _Choice(TRANSFORMS),
        "scaler_mean": _FINITE, "scaler_std": _POSITIVE,
        "clip": _Nullable(_List(_Number(0.0, 1.0, lo_open=True, hi_open=True), 2, 2)),
        "description": _Text(),
    }, required=("name", "transform", "scaler_mean", "scaler_std")), 1, 16),
    "training_ranges": _Object({}, other=_range),
    "posterior": _Object({
        "dropout": _DROPOUT, "sigma_scale": _anything,  # checked against the outputs
        "affine": _List(_List(_FINITE, 2, 2), 1, 16), "n_samples": _Integer(1, 100_000),
        "orientations": _Integer(1, 8), "calibrated": _flag,
        "tail_dof": _List(_Nullable(_Number(2.0, 1000.0, lo_open=True)), 1, 16),
    }),
    "labels": _Object({
        "bt_disk_max": _Number(0.0, 1.0), "bt_bulge_min": _Number(0.0, 1.0),
        "re_small_arcsec": _POSITIVE, "definitions": _anything,
        "validation_accuracy": _anything,
    }),
    "uncertainty": _Object({
        "kind": _Text(), "sigma_scale": _Nullable(_List(_POSITIVE, 1, 64)),
        "conformal_offsets": _Object({}, other=_List(_FINITE, 3, 3)),
        "test_coverage": _anything,
    }),
    "gbm": _Object({
        "cnn_keep": _List(_Integer(0, 4095), 0, 4096, unique=True),
        "luminosity_band": _Integer(0, 15), "pixel_scale": _POSITIVE, "photometry": _NAMES,
        "features": _anything, "feature_groups": _anything, "relative_error_floor": _anything,
        "format": _anything,
    }, required=("pixel_scale",)),
    "weights": _Object({
        "file": _Pattern(r"[^/\\\x00-\x1f]{1,200}\.safetensors",
                         "a .safetensors file name (beside card.json, no folders)"),
        "sha256": _Pattern(r"[0-9a-f]{64}", "a SHA-256 (64 hexadecimal digits)"),
    }, required=("file", "sha256")),
    "package_version": _Text(200),
    **{informational: _anything for informational in
       ("training", "calibration", "test", "test_metrics", "auxiliary_targets")},
}, required=REQUIRED_FIELDS)

#: ``input.preprocessing`` of a property bundle: the pixel scaling ``scaling.scale_stamps`` applies.
PROPERTY_PREPROCESSING = _Object({
    "kind": _Choice(("adaptive_log", "arsinh", "display")), "softening": _POSITIVE,
    "noise_target": _Number(0.0, 1.0, lo_open=True, hi_open=True), "description": _Text(),
}, required=("kind",))


def _nesting_depth(text: str) -> int:
    """Deepest nesting of ``[`` and ``{`` in JSON text, brackets inside strings not counted."""
    skeleton = np.frombuffer(_JSON_STRING.sub("", text).encode(), dtype=np.uint8)
    steps = (np.isin(skeleton, (ord("["), ord("{"))).astype(np.int64)
             - np.isin(skeleton, (ord("]"), ord("}"))))
    return int(np.cumsum(steps).max(initial=0))


def _check_sigma_scale(sigma_scale, n_params: int, path: str) -> None:
    """Spread factors: one positive factor per output, or a table per bin of predicted flux
    (``{"flux_knots": increasing, "factors": one list per output}``), optionally with factors
    per PSF FWHM that multiply them (``"psf_knots"``, ``"psf_factors"``, alike) or, per flux
    knot and PSF knot, replace them (``"psf_flux_factors"``: per output, flux knot, PSF knot)."""
    if sigma_scale is None:
        return

    def knots_ok(key):
        knots = np.asarray(sigma_scale[key], dtype=np.float64)
        return (knots.ndim == 1 and len(knots) >= 1 and bool(np.all(np.diff(knots) > 0))
                and bool(np.isfinite(knots).all()))

    def factors_ok(key, *knot_keys):
        factors = np.asarray(sigma_scale[key], dtype=np.float64)
        return (factors.shape == (n_params, *(len(sigma_scale[k]) for k in knot_keys))
                and bool(np.all(np.isfinite(factors) & (factors > 0))))

    try:
        if isinstance(sigma_scale, dict):
            factors = np.asarray(sigma_scale["factors"], dtype=np.float64)
            keys = set(sigma_scale)
            ok = (keys in ({"flux_knots", "factors"},
                           {"flux_knots", "factors", "psf_knots", "psf_factors"},
                           {"flux_knots", "factors", "psf_knots", "psf_flux_factors"})
                  and knots_ok("flux_knots") and factors_ok("factors", "flux_knots")
                  and ("psf_knots" not in keys or knots_ok("psf_knots"))
                  and ("psf_factors" not in keys or factors_ok("psf_factors", "psf_knots"))
                  and ("psf_flux_factors" not in keys
                       or factors_ok("psf_flux_factors", "flux_knots", "psf_knots")))
        else:
            factors = np.asarray(sigma_scale, dtype=np.float64)
            ok = factors.shape == (n_params,)
        ok = ok and bool(np.all(np.isfinite(factors) & (factors > 0)))
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise _Invalid(f"{path} must be {n_params} positive factors or {{flux_knots: increasing "
                       "list, factors: one list of positive factors per output[, psf_knots, "
                       "psf_factors: alike, or psf_flux_factors: per output a list per flux "
                       "knot]}, got "
                       f"{_shown(sigma_scale)}")


def _check_consistency(card: dict) -> None:
    """What one field says about another: network sizes against inputs and outputs, and the
    posterior, uncertainty and LightGBM settings against the outputs they describe."""
    from galaxy_inspector.models.registry import ARCHITECTURES

    if card["architecture"] not in ARCHITECTURES:
        raise _Invalid(f"unknown architecture {card['architecture']!r}; this version knows "
                       f"{', '.join(sorted(ARCHITECTURES))}")
    hyper_schema = HYPERPARAMETERS[card["architecture"]]
    _Object(hyper_schema)(card["hyperparameters"], "hyperparameters")
    defaults = {name: p.default for name, p in
                inspect.signature(ARCHITECTURES[card["architecture"]]).parameters.items()}
    hyper = {**defaults, **card["hyperparameters"]}
    inp, outputs = card["input"], card["outputs"]
    names = [o["name"] for o in outputs]
    if len(set(names)) < len(names):
        raise _Invalid(f"outputs must have distinct names, got {', '.join(names)}")
    for j, output in enumerate(outputs):
        if output.get("clip") is not None and (output["transform"] != "logit"
                                               or not output["clip"][0] < output["clip"][1]):
            raise _Invalid(f"outputs[{j}].clip must be [lo, hi] with 0 < lo < hi < 1 and only "
                           f"for a logit transform, got {_shown(output['clip'])}")

    def equal(key, value, what):
        if hyper[key] != value:
            raise _Invalid(f"hyperparameters.{key} must equal {what} ({value}), got "
                           f"{_shown(hyper[key])}")

    if card["task"] == "morphology":
        equal("n_params", len(outputs), "the number of outputs")
        equal("stamp_size", inp["stamp_size"], "input.stamp_size")
        if hyper["flux_skip"] and hyper["flux_skip"]["output"] >= len(outputs):
            raise _Invalid(f"hyperparameters.flux_skip.output must be below the number of "
                           f"outputs ({len(outputs)}), got {hyper['flux_skip']['output']}")
        posterior = card.get("posterior", {})
        _check_sigma_scale(posterior.get("sigma_scale"), len(outputs), "posterior.sigma_scale")
        if "affine" in posterior and len(posterior["affine"]) != len(outputs):
            raise _Invalid(f"posterior.affine must hold one [a, b] pair per output "
                           f"({len(outputs)}), got {len(posterior['affine'])}")
        sigma_scale = posterior.get("sigma_scale")
        if (isinstance(sigma_scale, dict) and "psf_knots" in sigma_scale
                and not hyper.get("psf_input")):
            raise _Invalid("posterior.sigma_scale has factors per PSF FWHM (psf_knots) but the "
                           "network does not read the PSF (hyperparameters.psf_input)")
        if "tail_dof" in posterior and len(posterior["tail_dof"]) != len(outputs):
            raise _Invalid(f"posterior.tail_dof must hold one value (or null) per output "
                           f"({len(outputs)}), got {len(posterior['tail_dof'])}")
        return
    if "method" not in card:
        raise _Invalid("method is missing (cnn or cnn+gbm)")
    equal("in_channels", len(inp["bands"]), "the number of input.bands")
    if hyper["n_targets"] < len(outputs):
        raise _Invalid(f"hyperparameters.n_targets must be at least the number of outputs "
                       f"({len(outputs)}), got {hyper['n_targets']}")
    if "preprocessing" not in inp:
        raise _Invalid("input.preprocessing is missing")
    PROPERTY_PREPROCESSING(inp["preprocessing"], "input.preprocessing")
    if inp["preprocessing"]["kind"] == "arsinh" and "softening" not in inp["preprocessing"]:
        raise _Invalid("input.preprocessing.softening is missing (arsinh scaling needs it)")
    uncertainty = card.get("uncertainty", {})
    scale = uncertainty.get("sigma_scale")
    if scale is not None and len(scale) != len(outputs):
        raise _Invalid(f"uncertainty.sigma_scale must hold one factor per output "
                       f"({len(outputs)}), got {len(scale)}")
    unknown = set(uncertainty.get("conformal_offsets", {})) - set(names)
    if unknown:
        raise _Invalid(f"uncertainty.conformal_offsets names {', '.join(sorted(unknown))}, "
                       f"which are not outputs ({', '.join(names)})")
    if card["method"] != "cnn+gbm":
        return
    if "gbm" not in card:
        raise _Invalid("gbm is missing (the LightGBM features of a cnn+gbm bundle)")
    gbm = card["gbm"]
    beyond = [k for k in gbm.get("cnn_keep", []) if k >= hyper["hidden"]]
    if beyond:
        raise _Invalid(f"gbm.cnn_keep must index the {hyper['hidden']} CNN features, got "
                       f"{beyond[0]}")
    if gbm.get("luminosity_band", 0) >= len(inp["bands"]):
        raise _Invalid(f"gbm.luminosity_band must index input.bands ({len(inp['bands'])}), "
                       f"got {gbm['luminosity_band']}")
    missing = set(gbm.get("photometry", [])) - set(inp.get("photometry", []))
    if missing:
        raise _Invalid(f"gbm.photometry names {', '.join(sorted(missing))}, which "
                       "input.photometry does not ask for")


def validate_card(card, where: str = CARD_NAME) -> None:
    """Refuse (``BundleError``, one line naming the field) a card that breaks the schema:
    ``CARD_SCHEMA``'s types and ranges, the architecture's ``HYPERPARAMETERS``, and the
    agreement between fields. A card that passes loads and runs without internal errors."""
    try:
        CARD_SCHEMA(card, "")
        _check_consistency(card)
    except _Invalid as exc:
        raise BundleError(f"{where}: {exc}") from None


def load_bundle(path_or_name) -> Bundle:
    """Read and verify a bundle; raises ``BundleError`` with a one-line reason if it is unusable."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    folder = resolve_bundle_path(path_or_name)
    card_path = folder / CARD_NAME
    try:
        text = card_path.read_text()
        if _nesting_depth(text) > MAX_CARD_DEPTH:
            raise BundleError(f"{card_path}: nested more than {MAX_CARD_DEPTH} levels deep")
        card = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise BundleError(f"cannot read model card {card_path}: {first_line(exc)}") from None
    validate_card(card, str(card_path))
    weights = card["weights"]
    wpath = folder / weights["file"]
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
