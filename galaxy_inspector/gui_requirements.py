"""Whether the desktop app can open a window here, checked before anything of Qt is loaded.

Qt aborts (SIGABRT, core dumped) when its X11 platform plugin cannot load, and its hint names
``libxcb-cursor0`` whatever is actually missing; on a stock Debian desktop it is usually
``libxcb-icccm4`` and ``libxcb-keysyms1``. So before the GUI starts, ``gui_start_problem`` asks
the dynamic loader (``ldd``, part of every glibc system) which libraries PySide6's
``libqxcb.so`` needs, directly or through its dependencies, and cannot find, and names the
Debian packages that provide them. Without ``ldd`` the check says nothing and Qt speaks.

``ldd`` reports the whole tree: the plugin, the bundled Qt libraries it loads (``libQt6XcbQpa``,
``libQt6Gui``, ``libQt6Core``, ``libQt6DBus``) and the system libraries under them. A missing
system library hides its own dependencies from ``ldd``, but those come with its package, so
naming the package of each library the Qt tree asks for directly is enough: ``DEBIAN_PACKAGES``
lists exactly those (a test reads them with ``readelf`` from the installed PySide6), and
``XCB_PACKAGES`` is the one install line the README gives.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

__all__ = ["DEBIAN_PACKAGES", "XCB_PACKAGES", "xcb_plugin", "missing_libraries",
           "gui_start_problem"]

#: Debian/Ubuntu package of each system library that Qt's xcb plugin and the Qt libraries
#: under it name (``readelf -d``), besides the C and C++ runtime.
DEBIAN_PACKAGES = {
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libdbus-1.so.3": "libdbus-1-3",
    "libz.so.1": "zlib1g",
    "libzstd.so.1": "libzstd1",
}
#: Every package above, once: what the README's ``apt-get install`` line installs.
XCB_PACKAGES = tuple(sorted(set(DEBIAN_PACKAGES.values())))


def xcb_plugin() -> Path | None:
    """PySide6's X11 platform plugin, found without importing PySide6 (None if absent)."""
    spec = importlib.util.find_spec("PySide6")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        plugin = Path(folder) / "Qt" / "plugins" / "platforms" / "libqxcb.so"
        if plugin.is_file():
            return plugin
    return None


def missing_libraries(library: Path) -> list[str]:
    """Sonames ``library`` needs, directly or not, that the dynamic loader cannot find (by
    ``ldd``'s "not found" lines; empty when ``ldd`` is absent or fails)."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return []
    try:
        report = subprocess.run([ldd, str(library)], capture_output=True, text=True,
                                timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return sorted({line.split("=>")[0].strip() for line in report.splitlines()
                   if line.rstrip().endswith("=> not found")})


def _uses_xcb(environ: Mapping[str, str]) -> bool:
    """Whether Qt will pick its X11 plugin: asked for, or the default on an X11-only session
    (with WAYLAND_DISPLAY set, Qt tries Wayland first)."""
    asked = environ.get("QT_QPA_PLATFORM", "").split(";")[0].strip()
    if asked:
        return asked == "xcb"
    return not environ.get("WAYLAND_DISPLAY")


def gui_start_problem(environ: Mapping[str, str] = os.environ,
                      plugin: Path | None = None) -> str:
    """One line saying why Qt would abort on this display, or "" when nothing says it will.

    Only Linux X11 is checked: QT_QPA_PLATFORM unset (or ``xcb``) with no Wayland display.
    ``plugin`` defaults to PySide6's ``libqxcb.so``.
    """
    if not sys.platform.startswith("linux") or not _uses_xcb(environ):
        return ""
    if not environ.get("DISPLAY"):
        return ("no display to open the app on (DISPLAY is not set); use --batch, or "
                "QT_QPA_PLATFORM=offscreen for --screenshot")
    plugin = plugin or xcb_plugin()
    missing = missing_libraries(plugin) if plugin else []
    if not missing:
        return ""
    packages = sorted({DEBIAN_PACKAGES[name] for name in missing if name in DEBIAN_PACKAGES})
    unknown = [name for name in missing if name not in DEBIAN_PACKAGES]
    install = f"on Debian/Ubuntu: sudo apt-get install {' '.join(packages)}" if packages else ""
    search = f"find the package of {', '.join(unknown)} with apt-file search" if unknown else ""
    return (f"the desktop app needs system libraries that are missing ({', '.join(missing)}); "
            f"{'; '.join(part for part in (install, search) if part)} (--batch works without them)")
