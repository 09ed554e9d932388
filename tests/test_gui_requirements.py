"""The desktop app names the Debian packages Qt's X11 plugin lacks, instead of Qt aborting."""

from __future__ import annotations

import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

from galaxy_inspector import gui_requirements
from galaxy_inspector.cli import main
from galaxy_inspector.gui_requirements import (
    DEBIAN_PACKAGES,
    XCB_PACKAGES,
    gui_start_problem,
    missing_libraries,
    xcb_plugin,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11 is Linux's")

# What ldd prints for libqxcb.so on a stock Debian desktop (two libraries missing), plus one
# library the package table does not know.
LDD_REPORT = """\
\tlinux-vdso.so.1 (0x00007ffd5a1f2000)
\tlibQt6XcbQpa.so.6 => /venv/PySide6/Qt/lib/libQt6XcbQpa.so.6 (0x00007f26deb51000)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-util.so.1 => /lib/x86_64-linux-gnu/libxcb-util.so.1 (0x00007f26deb2c000)
\tlibxcb-keysyms.so.1 => not found
\tlibxcb-icccm.so.4 => not found
\tlibunheard-of.so.7 => not found
"""
X11_SESSION = {"DISPLAY": ":0"}


@pytest.fixture
def fake_ldd(monkeypatch, tmp_path):
    """``ldd`` answers ``LDD_REPORT`` for the fake plugin it returns; the calls are recorded."""
    plugin = tmp_path / "libqxcb.so"
    plugin.write_bytes(b"\x7fELF")
    calls = []

    def run(argv, **kwargs):
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, stdout=LDD_REPORT, stderr="")

    monkeypatch.setattr(gui_requirements.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(gui_requirements.subprocess, "run", run)
    monkeypatch.setattr(gui_requirements, "xcb_plugin", lambda: plugin)
    return types.SimpleNamespace(plugin=plugin, calls=calls)


def test_missing_libraries_are_ldds_not_found_lines_once_each(fake_ldd):
    assert missing_libraries(fake_ldd.plugin) == ["libunheard-of.so.7", "libxcb-icccm.so.4",
                                                  "libxcb-keysyms.so.1"]
    assert fake_ldd.calls == [["/usr/bin/ldd", str(fake_ldd.plugin)]]


def test_problem_names_the_debian_packages_in_one_line(fake_ldd):
    problem = gui_start_problem(X11_SESSION)
    assert "\n" not in problem
    assert "sudo apt-get install libxcb-icccm4 libxcb-keysyms1;" in problem
    assert "apt-file search" in problem and "libunheard-of.so.7" in problem
    assert "--batch works without them" in problem


@pytest.mark.parametrize("environ", [
    {"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"},   # CI and the tests: no xcb at all
    {"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"},   # Qt tries Wayland first
    {"QT_QPA_PLATFORM": "wayland;xcb"},
])
def test_nothing_is_checked_where_qt_will_not_load_xcb(fake_ldd, environ):
    assert gui_start_problem(environ) == "" and fake_ldd.calls == []


def test_xcb_asked_for_is_checked_and_no_display_is_said(fake_ldd):
    assert "libxcb-icccm4" in gui_start_problem({"DISPLAY": ":1", "QT_QPA_PLATFORM": "xcb"})
    assert gui_start_problem({}).startswith("no display to open the app on")


def test_without_ldd_or_plugin_qt_is_left_to_speak(fake_ldd, monkeypatch):
    monkeypatch.setattr(gui_requirements, "xcb_plugin", lambda: None)
    assert gui_start_problem(X11_SESSION) == ""
    monkeypatch.setattr(gui_requirements.shutil, "which", lambda name: None)
    assert missing_libraries(fake_ldd.plugin) == []


def test_cli_refuses_before_loading_qt(fake_ldd, monkeypatch, capsys):
    for name in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DISPLAY", ":99")
    started = []
    fake_app = types.ModuleType("galaxy_inspector.gui.app")
    fake_app.main = lambda files: started.append(files) or 0
    monkeypatch.setitem(sys.modules, "galaxy_inspector.gui.app", fake_app)
    import galaxy_inspector.gui as gui

    monkeypatch.setattr(gui, "app", fake_app, raising=False)
    assert main(["a.fits"]) == 1 and started == []
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sudo apt-get install libxcb-icccm4 libxcb-keysyms1" in err


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("readelf") is None, reason="needs readelf (binutils)")
def test_every_system_library_of_the_installed_plugin_has_its_package():
    plugin = xcb_plugin()
    if plugin is None:
        pytest.skip("PySide6 has no xcb plugin here")
    bundled = plugin.parents[2] / "lib"  # PySide6/Qt/lib
    runtime = ("libc.so", "libm.so", "libdl.so", "libpthread.so", "librt.so", "libstdc++.so",
               "libgcc_s.so", "ld-linux")  # glibc and the C++ runtime
    needed, to_read = set(), [plugin]
    while to_read:  # the plugin and the bundled Qt libraries it loads, recursively
        report = subprocess.run(["readelf", "-d", str(to_read.pop())], capture_output=True,
                                text=True, check=True).stdout
        names = {line.split("[")[1].rstrip("]") for line in report.splitlines()
                 if "(NEEDED)" in line}
        to_read += [bundled / n for n in names - needed if (bundled / n).exists()]
        needed |= names
    system = {name for name in needed
              if not (bundled / name).exists() and not name.startswith(runtime)}
    assert "libxcb-icccm.so.4" in system
    assert system == DEBIAN_PACKAGES.keys()


def test_readme_install_line_is_exactly_the_packages_the_check_names():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    (line,) = [t for t in readme.splitlines() if t.startswith("sudo apt-get install")]
    assert line.split()[3:] == list(XCB_PACKAGES)
    assert set(XCB_PACKAGES) == set(DEBIAN_PACKAGES.values())
