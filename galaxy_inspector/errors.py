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
import unicodedata
from pathlib import Path

__all__ = ["GalaxyInspectorError", "InputError", "ImageReadError", "BundleError", "OutputError",
           "first_line", "user_message", "printable", "isolate_failures"]


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


def printable(text: str) -> str:
    """``text`` as one line of valid UTF-8: control characters (a newline in a file name) and
    the bytes of a file name that are not UTF-8 (Python's surrogate escapes) written as
    backslash escapes, so that a message stays one line and can be printed and stored."""
    out = []
    for c in str(text):
        if 0xDC80 <= ord(c) <= 0xDCFF:  # an undecodable byte of a file name (surrogateescape)
            out.append(f"\\x{ord(c) - 0xDC00:02x}")
        elif unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp"):
            out.append(c.encode("unicode_escape").decode("ascii"))
        else:
            out.append(c)
    return "".join(out)


def user_message(exc: BaseException) -> str:
    """One line for a person: our own errors verbatim, memory exhaustion in words, anything else
    marked as an internal error with where it happened, so that a report can locate it.

    Our own messages are one line by design, so a newline in one can only come from a name
    quoted in it and is escaped (``printable``); other messages keep their first line."""
    if isinstance(exc, GalaxyInspectorError):
        return printable(str(exc).strip()) or type(exc).__name__
    if isinstance(exc, MemoryError):
        return "not enough memory to process this image; close other programs or use a smaller one"
    last = traceback.extract_tb(exc.__traceback__)[-1:]
    where = f" at {Path(last[0].filename).name}:{last[0].lineno}" if last else ""
    return f"internal error {type(exc).__name__}: {printable(first_line(exc))}{where} (please report)"


def isolate_failures(measure, items: list, failed) -> list:
    """``measure(items)`` (one result per item), or, when that raises, ``measure([item])`` for
    each item alone and ``failed(item, message)`` for those that still raise: a batch fails as
    a whole (one bad stamp makes a network's input non-finite), and one bad item must not fail
    the items batched with it."""
    try:
        return list(measure(items))
    except Exception as exc:  # any failure: retried item by item below
        if len(items) == 1:
            return [failed(items[0], user_message(exc))]
    out = []
    for item in items:
        try:
            out.extend(measure([item]))
        except Exception as exc:  # the item's own failure becomes its result
            out.append(failed(item, user_message(exc)))
    return out
