"""Exceptions of Galaxy Inspector.

Which to raise:

* ``InputError`` (a ``ValueError``): a user's file, table or option cannot be used. Its message is
  one line that says what is wrong and, where possible, what to do; the CLI and GUI show it as is.
* ``ImageReadError`` (an ``InputError`` and ``OSError``): a file cannot be read as an image.
* ``BundleError`` (an ``InputError``): a model bundle is incomplete, corrupt or of unknown kind.
* ``OutputError`` (an ``OSError``): a result cannot be written (unwritable path, full disk).

Anything else escaping the engine is a bug and is reported as one: ``user_message`` is the one
wording the CLI, the batch catalogue and the GUI all show for any exception.
"""

from __future__ import annotations

import traceback
from pathlib import Path

__all__ = ["GalaxyInspectorError", "InputError", "ImageReadError", "BundleError", "OutputError",
           "first_line", "user_message"]


class GalaxyInspectorError(Exception):
    """Base class of every error a user can cause; ``str(err)`` is a one-line message."""


class InputError(GalaxyInspectorError, ValueError):
    """A user input (file, table, option value) that cannot be used."""


class ImageReadError(InputError, OSError):
    """A file that cannot be read as an image."""


class BundleError(InputError):
    """A model bundle that is incomplete, corrupt (checksum), or of an unknown architecture."""


class OutputError(GalaxyInspectorError, OSError):
    """A result that cannot be written."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type name when it has none (libraries
    such as astropy and h5py append long hints on later lines)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def user_message(exc: BaseException) -> str:
    """One line for a person: our own errors verbatim, memory exhaustion in words, anything else
    marked as an internal error with where it happened, so that a report can locate it."""
    if isinstance(exc, GalaxyInspectorError):
        return first_line(exc)
    if isinstance(exc, MemoryError):
        return "not enough memory to process this image; close other programs or use a smaller one"
    last = traceback.extract_tb(exc.__traceback__)[-1:]
    where = f" at {Path(last[0].filename).name}:{last[0].lineno}" if last else ""
    return f"internal error {type(exc).__name__}: {first_line(exc)}{where} (please report)"
