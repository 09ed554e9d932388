"""Per-galaxy random seeds: a galaxy's posterior draws depend only on the run's ``--seed`` and
its own stamp, never on the galaxies that share its batch, the batch size, ``--workers`` or the
cluster node that measured it, so every way of running a batch draws the same samples (the
network's float32 outputs they transform can still differ in their last bits, about 1e-6
relative, with the shape of the batch it ran in)."""

from __future__ import annotations

import zlib

import numpy as np

__all__ = ["galaxy_seed", "galaxy_seeds"]


def galaxy_seed(seed: int, pixels: np.ndarray) -> int:
    """The seed of the galaxy whose stamp is ``pixels`` (as the network reads them: float32)
    in a run seeded ``seed``."""
    digest = zlib.crc32(np.ascontiguousarray(pixels, dtype=np.float32).tobytes())
    return (int(seed) * 1_000_003 + digest) % (2 ** 63)


def galaxy_seeds(seed: int, stamps) -> list[int]:
    """``galaxy_seed`` of each of ``stamps`` (first axis: galaxies)."""
    return [galaxy_seed(seed, stamp) for stamp in stamps]
