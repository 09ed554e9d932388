"""The eight symmetries of a square stamp (the dihedral group D4), for test-time augmentation.

A galaxy's morphology and its physical properties do not change when its image is rotated by
90 degrees or mirrored, so both the morphology and the property networks read several of these
views of one stamp and combine them (``models.morphology``, ``physical_properties.model``), and
training draws one at random per stamp and epoch.
"""

from __future__ import annotations

import torch

__all__ = ["DIHEDRAL_TRANSFORMS", "dihedral", "dihedral_views"]

#: The 8 symmetries of a square: (number of 90-degree rotations, transpose-like flip first).
DIHEDRAL_TRANSFORMS = tuple((k, flip) for flip in (False, True) for k in range(4))


def dihedral(x: torch.Tensor, index: int) -> torch.Tensor:
    """Transform ``index`` (0-7) of the dihedral group D4 applied to the last two axes."""
    k, flip = DIHEDRAL_TRANSFORMS[index]
    if flip:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, k, dims=(-2, -1)) if k else x


def dihedral_views(x: torch.Tensor, n: int) -> torch.Tensor:
    """The first ``n`` (1-8) dihedral orientations of ``(N, C, H, W)`` images, orientation-major.

    View 0 is the image itself; a galaxy's morphology is the same in all of them, so they serve
    test-time augmentation.
    """
    return torch.cat([dihedral(x, k) for k in range(n)])
