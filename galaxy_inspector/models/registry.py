"""Every network architecture a model card may name, for both tasks.

A bundle's card says ``architecture`` and ``hyperparameters``; ``build_network`` turns them into
an ``nn.Module`` before the safetensors weights are loaded. The registry is neutral ground: the
morphology network (``models.morphology_network``) and the physical-property network
(``physical_properties.networks``) each define their classes, and only this module knows both.
"""

from __future__ import annotations

from torch import nn

from galaxy_inspector.models.morphology_network import MorphologyNet
from galaxy_inspector.physical_properties.networks import PropertyResNet

__all__ = ["ARCHITECTURES", "build_network"]

#: Architecture name in a model card -> network class.
ARCHITECTURES = {"gampen-stn-mcdropout-head": MorphologyNet, "property-resnet": PropertyResNet}


def build_network(architecture: str, hyperparameters: dict) -> nn.Module:
    """Instantiate a network named in a model card (``ValueError`` for an unknown name)."""
    try:
        cls = ARCHITECTURES[architecture]
    except KeyError:
        raise ValueError(f"unknown architecture {architecture!r}; "
                         f"known: {', '.join(sorted(ARCHITECTURES))}") from None
    return cls(**hyperparameters)
