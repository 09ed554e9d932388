"""The memory bound every read of a whole image is held to.

A batch keeps in memory the model, one file's image and the stamps cut from it. Large plain and
tile-compressed FITS planes are never read whole: stamps read only their window
(``fits.LAZY_ABOVE_BYTES``). What must be held whole — a gzip'd FITS, which can only be
decompressed from its start, or an image searched for sources (``--detect``) — is refused when
the memory it would take, worked out from the header before any pixel is read, exceeds
``whole_read_limit()``: ``WHOLE_READ_MAX_BYTES``, or a quarter of the memory available now if
that is less (other processes, and the batch's other workers, need the rest).
"""

from __future__ import annotations

import psutil

__all__ = ["WHOLE_READ_MAX_BYTES", "available_memory", "whole_read_limit", "format_bytes"]

WHOLE_READ_MAX_BYTES = 2 ** 30
AVAILABLE_MEMORY_SHARE = 0.25


def available_memory() -> int:
    """Bytes of memory the system can give processes now without swapping."""
    return int(psutil.virtual_memory().available)


def whole_read_limit() -> int:
    """Bytes a whole-image read may take on this machine now."""
    return int(min(WHOLE_READ_MAX_BYTES, AVAILABLE_MEMORY_SHARE * available_memory()))


def format_bytes(n: float) -> str:
    """``"1.6 GB"``, ``"512 MB"``: a size for a message (decimal units)."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.2g} {unit}" if n < 10 * size else f"{n / size:.0f} {unit}"
    return f"{int(n)} bytes"
