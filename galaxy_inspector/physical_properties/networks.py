"""Residual CNN for physical properties from multi-band stamps (Wu & Boada 2019; Dobbels 2019).

Wu & Boada used an ImageNet ResNet-34 on 128x128 gri cutouts with a two-layer fully connected
head (ReLU after the first, none after the second). ``PropertyResNet`` keeps that shape — a stem,
four stages of basic residual blocks (ResNet-18: 2-2-2-2 blocks, ResNet-34: 3-4-6-3), global
average pooling, a hidden fully connected layer (whose activations are the *features* Dobbels'
LightGBM reads) and a linear output — but is narrower and strided early so it trains on a CPU,
and it works at any input size down to 1x1 pixel (for the resolution study).

The output has two numbers per target: the mean and the log standard deviation of a Gaussian in
the standard-scaled target space (the spread is the aleatoric part of the uncertainty).

Tensor conventions: ``(N, C, H, W)`` float32, already scaled by
``galaxy_inspector.physical_properties.scaling.scale_stamps``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["PropertyResNet"]

STAGE_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x), inplace=True)


class PropertyResNet(nn.Module):
    """ResNet-18/34-style regressor with a Gaussian output per target.

    Parameters
    ----------
    in_channels : int
        Bands of the input stamps (3 for gri or RGB, 1 for Dobbels' g band).
    n_targets : int
        Number of regressed quantities.
    depth : int
        18 or 34 (blocks per stage as in He et al. 2016).
    widths : sequence of 4 int
        Channels of the four stages (ResNet uses 64-128-256-512; 16-32-64-128 suits a CPU).
    stem_stride : int
        Stride of the first convolution (2 halves the cost of everything after it).
    hidden : int
        Width of the penultimate fully connected layer (the feature vector).
    dropout : float
        Dropout before the output layer while training.
    """

    def __init__(self, in_channels=3, n_targets=1, depth=18, widths=(16, 32, 64, 128),
                 stem_stride=2, hidden=64, dropout=0.0):
        super().__init__()
        if depth not in STAGE_BLOCKS:
            raise ValueError(f"depth must be one of {sorted(STAGE_BLOCKS)}, got {depth}")
        self.n_targets = n_targets
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, stride=stem_stride, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        layers, c_in = [], widths[0]
        for stage, (c_out, blocks) in enumerate(zip(widths, STAGE_BLOCKS[depth], strict=True)):
            for b in range(blocks):
                stride = 2 if (stage > 0 and b == 0) else 1
                layers.append(BasicBlock(c_in, c_out, stride))
                c_in = c_out
        self.stages = nn.Sequential(*layers)
        self.hidden = nn.Linear(c_in, hidden)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, 2 * n_targets)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer activations ``(N, hidden)``: the CNN features of Dobbels' GBM."""
        h = self.stages(self.stem(x))
        h = F.adaptive_avg_pool2d(h, 1).flatten(1)
        return F.relu(self.hidden(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 2 * n_targets)``: means, then log standard deviations (standard-scaled space)."""
        return self.out(self.dropout(self.features(x)))
