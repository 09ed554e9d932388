"""The memory layout convolutions run in: channels_last on CUDA, contiguous elsewhere.

On CUDA, cuDNN's channels_last (NHWC) kernels are the fast ones for convolutions with batch norm.
On the CPU, the oneDNN channels_last convolution backward of the pinned torch corrupts the heap
on CPUs whose best instruction set is AVX2 (AMD EPYC, for one): a 50-step training loop of the
property ResNet dies with "double free or corruption" (SIGABRT). The contiguous (NCHW) layout
avoids it, so the CPU always gets that layout, in training and at inference alike, although
channels_last can be faster there: ``benchmarks/memory_format.py`` prints both (on a 2-core
AVX-512 Xeon, channels_last took about a quarter less time per training step and nearly the same
per inference batch of the morphology network).
"""

from __future__ import annotations

import torch

__all__ = ["memory_format_for"]


def memory_format_for(device) -> torch.memory_format:
    """The layout for a network's weights and inputs on ``device`` (a name or torch.device)."""
    return torch.channels_last if torch.device(device).type == "cuda" else torch.contiguous_format
