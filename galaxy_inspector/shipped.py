"""Locate the files shipped in ``resources/`` (installed as ``galaxy_inspector.resources``)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["resource_path", "models_dir", "samples_dir"]


def _root() -> Path:
    try:
        return Path(str(resources.files("galaxy_inspector.resources")))
    except ModuleNotFoundError:  # a source checkout that was not pip-installed
        return Path(__file__).resolve().parents[1] / "resources"


def resource_path(*parts: str) -> Path:
    """Path of a shipped resource, from a source checkout or from an installed wheel."""
    return _root().joinpath(*parts)


def models_dir() -> Path:
    return resource_path("models")


def samples_dir() -> Path:
    return resource_path("samples")
