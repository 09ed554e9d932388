"""Persistent settings (QSettings): last folders, recent files, model, stretch, window layout.

Everything goes through ``app_settings()`` so tests can point the whole app at a temporary
file by setting ``GALAXY_INSPECTOR_SETTINGS`` (an INI path) before creating windows.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QSettings

__all__ = ["app_settings", "recent_files", "add_recent_file", "get", "string_list", "MAX_RECENT",
           "SETTINGS_ENV"]

SETTINGS_ENV = "GALAXY_INSPECTOR_SETTINGS"
MAX_RECENT = 10


def app_settings() -> QSettings:
    """The application's settings store (an INI file when ``GALAXY_INSPECTOR_SETTINGS`` is set)."""
    path = os.environ.get(SETTINGS_ENV)
    if path:
        return QSettings(path, QSettings.Format.IniFormat)
    return QSettings("GalaxyInspector", "Galaxy Inspector")


def _as_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    return [str(v) for v in value]


def string_list(key: str, settings: QSettings | None = None) -> list[str]:
    """A stored list of strings (an INI file gives back a lone string or nothing for short
    lists, so this normalises it)."""
    settings = settings or app_settings()
    return _as_list(settings.value(key, []))


def recent_files(settings: QSettings | None = None) -> list[str]:
    """Most recently opened files, newest first, as absolute paths. Relative entries (older
    versions stored paths as typed, relative to wherever the app was started then) are left
    out: from another working folder they would open another file, or none."""
    settings = settings or app_settings()
    return [p for p in _as_list(settings.value("recent_files", [])) if Path(p).is_absolute()]


def add_recent_file(path: str, settings: QSettings | None = None) -> list[str]:
    """Put ``path`` (made absolute) first in the recent-files list (at most ``MAX_RECENT``)
    and return the list."""
    settings = settings or app_settings()
    path = os.path.abspath(path)
    files = [path] + [p for p in recent_files(settings) if p != path]
    files = files[:MAX_RECENT]
    settings.setValue("recent_files", files)
    return files


def get(key: str, default, settings: QSettings | None = None):
    """A stored value converted to the type of ``default``."""
    settings = settings or app_settings()
    value = settings.value(key, default)
    if value is None:
        return default
    try:
        return type(default)(value) if not isinstance(default, bool) else value in (True, "true")
    except (TypeError, ValueError):
        return default
