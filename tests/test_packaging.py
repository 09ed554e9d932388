"""Packaging and set-up contracts: README commands = CI, pins, wheel contents, desktop files."""

from __future__ import annotations

import configparser
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DESKTOP_ID = "io.github.galaxy_inspector.GalaxyInspector"


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _ci_command(name: str) -> str:
    match = re.search(rf"^{name}='(.+)'$", (ROOT / ".ci" / "run").read_text(), re.M)
    assert match, f".ci/run defines no {name}"
    return match.group(1)


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    command = f"{_ci_command('INSTALL_CMD')} && {_ci_command('TEST_CMD')}"
    assert f"\n{command}\n" in readme, "README's test command differs from .ci/run's"
    assert os.access(ROOT / ".ci" / "run", os.X_OK)


def test_readme_run_commands_use_the_pinned_install():
    readme = (ROOT / "README.md").read_text()
    assert "pip install -c ci/constraints.txt . && .venv/bin/galaxy-inspector --batch " \
        "resources/samples --out samples.h5" in readme
    assert "Reproducing the shipped model" in readme


def test_torch_is_pinned_for_ci_but_not_for_users():
    constraints = (ROOT / "ci" / "constraints.txt").read_text().split("\n")
    assert "torch==2.13.0" in constraints
    torch_deps = [d for d in _pyproject()["project"]["dependencies"] if d.startswith("torch")]
    assert torch_deps and all("==" not in d and "<" not in d for d in torch_deps)


def test_every_python_package_ships_in_the_wheel():
    """A subpackage missing from [tool.setuptools] packages works in a checkout, not installed."""
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    for top in ("galaxy_inspector", "training"):
        for init in (ROOT / top).rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            name = ".".join(init.parent.relative_to(ROOT).parts)
            assert name in listed, f"package {name} is not listed in pyproject.toml"
    assert "galaxy_inspector.resources" in listed
    config = _pyproject()["tool"]["setuptools"]
    assert config["package-dir"]["galaxy_inspector.resources"] == "resources"
    assert "**/*" in config["package-data"]["galaxy_inspector.resources"]


def test_entry_points_exist():
    scripts = _pyproject()["project"]["scripts"]
    assert scripts == {"galaxy-inspector": "galaxy_inspector.cli:main",
                       "galaxy-inspector-train": "training.cli:main"}


def test_desktop_entry():
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read(ROOT / "packaging" / f"{DESKTOP_ID}.desktop")
    entry = parser["Desktop Entry"]
    assert entry["Type"] == "Application" and entry["Name"] == "Galaxy Inspector"
    assert entry["Exec"].split()[0] in _pyproject()["project"]["scripts"]
    assert (ROOT / "resources" / "icons" / f"{entry['Icon']}.svg").is_file()
    assert "Science" in entry["Categories"].split(";")


def test_appstream_metainfo():
    root = ET.parse(ROOT / "packaging" / f"{DESKTOP_ID}.metainfo.xml").getroot()
    assert root.tag == "component" and root.get("type") == "desktop-application"
    assert root.findtext("id") == DESKTOP_ID
    assert root.findtext("launchable") == f"{DESKTOP_ID}.desktop"
    assert root.findtext("project_license") == _pyproject()["project"]["license"]["text"]
    versions = [r.get("version") for r in root.iter("release")]
    assert _pyproject()["project"]["version"] in versions


def test_icon_is_a_square_svg():
    root = ET.parse(ROOT / "resources" / "icons" / "galaxy-inspector.svg").getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.get("width") == root.get("height")
