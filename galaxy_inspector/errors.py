"""Exceptions of Galaxy Inspector.

Which to raise:

* ``InputError`` (a ``ValueError``): a user's file, table or option cannot be used. Its message is
  one line that says what is wrong and, where possible, what to do; the CLI and GUI show it as is.
* ``ImageReadError`` (an ``InputError`` and ``OSError``): a file cannot be read as an image.
* ``BundleError`` (an ``InputError``): a model bundle is incomplete, corrupt or of unknown kind.
* ``OutputError`` (an ``OSError``): a result cannot be written (unwritable path, full disk).

Anything else escaping the engine is a bug and is reported as one.
"""

from __future__ import annotations

__all__ = ["GalaxyInspectorError", "InputError", "ImageReadError", "BundleError", "OutputError"]


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
