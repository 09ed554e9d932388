"""What a loaded model of either task shares: its verified bundle, and its network built from the
card with the bundle's weights, on a device and in evaluation mode.

``MorphologyModel`` and ``PropertyModel`` derive from ``LoadedModel`` and add how they predict.
"""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode

from galaxy_inspector.errors import BundleError
from galaxy_inspector.models.bundle import Bundle, load_bundle, load_weights
from galaxy_inspector.models.memory_format import memory_format_for
from galaxy_inspector.models.registry import build_network

__all__ = ["LoadedModel"]


class LoadedModel:
    """A bundle whose card's ``task`` is ``TASK``, ready for inference.

    Parameters
    ----------
    bundle : Bundle, str or path
        A loaded bundle, a bundle folder, or the name of a shipped bundle.
    device : torch.device
        Where the network runs.
    weights_prefix : str
        Only the bundle's tensors named with this prefix are the network's (the prefix removed);
        a bundle may hold other tensors (a property bundle's LightGBM models).
    """

    #: The card's ``task`` a subclass runs, and how a refusal names such a model.
    TASK = ""
    KIND = ""

    def __init__(self, bundle, device: torch.device, weights_prefix: str = ""):
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        card = self.bundle.card
        if card["task"] != self.TASK:
            raise BundleError(f"bundle {self.bundle.name!r} is a {card['task']!r} model, not a "
                              f"{self.KIND}")
        self.device = device
        state = {name[len(weights_prefix):]: value for name, value in self.bundle.tensors.items()
                 if name.startswith(weights_prefix)}
        try:
            _check_shapes(self.bundle, state)
            self.network = build_network(card["architecture"], card["hyperparameters"])
        except BundleError:
            raise
        except (ValueError, TypeError) as exc:
            raise BundleError(f"bundle {self.bundle.name!r}: {exc}") from None
        load_weights(self.network, state, self.bundle)
        self.network.to(self.device, memory_format=memory_format_for(self.device)).eval()
        self.outputs = self.bundle.outputs

    @property
    def names(self) -> list[str]:
        return [o.name for o in self.outputs]

    @property
    def pixel_scale(self) -> float:
        """Native pixel scale in arcsec per pixel."""
        return float(self.bundle.input["pixel_scale_arcsec"])

    @property
    def stamp_size(self) -> int:
        return int(self.bundle.input["stamp_size"])


class _ParametersWithoutStorage(TorchFunctionMode):
    """Layers made in this mode get their parameters (``torch.empty``) on PyTorch's ``meta``
    device: shapes without storage. Everything else stays on the CPU, so the small buffers a
    constructor computes do not go through the meta device's slow first use (``torch.device
    ("meta")`` as a whole costs 2 s there, importing the compiler stack)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.empty:
            kwargs = {**(kwargs or {}), "device": "meta"}
        return func(*args, **(kwargs or {}))


def _check_shapes(bundle: Bundle, state: dict) -> None:
    """Refuse a card whose network would not take the weights, before any memory is spent on it:
    the network is first built without parameter storage, so a card asking for billions of
    parameters costs nothing and is refused like any other mismatch."""
    card = bundle.card
    with _ParametersWithoutStorage():
        network = build_network(card["architecture"], card["hyperparameters"])
    # A scalar is stored as one element (as ``load_state_dict`` accepts it).
    wanted = {k: tuple(v.shape) or (1,) for k, v in network.state_dict().items()}
    given = {k: tuple(v.shape) or (1,) for k, v in state.items()}
    if wanted == given:
        return
    name = next(iter(sorted(set(wanted) ^ set(given))), None)
    if name is not None:
        where = "weights lack" if name in wanted else "the card's network has no"
        detail = f"the {where} tensor {name!r}"
    else:
        name = next(k for k in sorted(wanted) if wanted[k] != given[k])
        detail = (f"{name} is {'x'.join(map(str, wanted[name]))} in the card's network, "
                  f"{'x'.join(map(str, given[name]))} in the weights")
    raise BundleError(f"weights of {bundle.name!r} do not fit architecture "
                      f"{card['architecture']!r} with the card's hyperparameters: {detail}")

