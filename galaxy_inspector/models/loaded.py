"""What a loaded model of either task shares: its verified bundle, and its network built from the
card with the bundle's weights, on a device and in evaluation mode.

``MorphologyModel`` and ``PropertyModel`` derive from ``LoadedModel`` and add how they predict.
"""

from __future__ import annotations

import torch

from galaxy_inspector.errors import BundleError
from galaxy_inspector.models.bundle import Bundle, load_bundle, load_weights
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
        try:
            self.network = build_network(card["architecture"], card["hyperparameters"])
        except (ValueError, TypeError) as exc:
            raise BundleError(f"bundle {self.bundle.name!r}: {exc}") from None
        state = {name[len(weights_prefix):]: value for name, value in self.bundle.tensors.items()
                 if name.startswith(weights_prefix)}
        load_weights(self.network, state, self.bundle)
        self.network.to(self.device).eval()
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
