"""Headless application state (glue-style): what is shown, how, and with which model.

Nothing here imports Qt, so the GUI's logic is testable without a window. Widgets observe a
``ViewerState`` through ``add_callback`` and write to it; they never talk to each other directly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import contextmanager

__all__ = ["CallbackProperty", "HasCallbacks", "ViewerState", "STRETCHES", "INTERVALS",
           "COMPOSITE_BAND"]

#: Display stretches offered in the image view (astropy.visualization names, lower case).
STRETCHES = ("linear", "sqrt", "log", "asinh")
#: Display limits: zscale (DS9's default) or a percentile of the finite pixels.
INTERVALS = ("zscale", "99.5%", "99%", "98%", "min-max")
#: ``band`` value meaning "colour composite of all planes".
COMPOSITE_BAND = -1


class CallbackProperty:
    """A documented attribute whose changes call the listeners registered on its owner.

    Setting a property to the value it already holds (same object, or equal for plain values)
    does nothing, so observers cannot loop.
    """

    def __init__(self, default=None, doc: str = ""):
        self.default = default
        self.__doc__ = doc

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        return obj.__dict__.get(self.name, self.default)

    def __set__(self, obj, value):
        old = self.__get__(obj)
        if _same(value, old):
            return
        obj.__dict__[self.name] = value
        obj._changed(self.name, old, value)


def _plain(value) -> bool:
    """Whether ``==`` is a safe, meaningful comparison (no arrays hiding inside)."""
    if isinstance(value, tuple):
        return all(_plain(v) for v in value)
    return isinstance(value, (str, int, float, bool, type(None)))


def _same(value, old) -> bool:
    return value is old or (_plain(value) and _plain(old) and value == old)


class HasCallbacks:
    """Mixin: ``add_callback(name, func)`` calls ``func(value)`` whenever property ``name`` changes."""

    def __init__(self):
        self._callbacks: dict[str, list[Callable]] = {}
        self._held: dict[str, object] | None = None  # name -> value before delay_callbacks

    @contextmanager
    def delay_callbacks(self):
        """Hold notifications inside the block (glue's ``delay_callback``), so listeners see
        the state only once all of it has changed: on leaving the outermost block, each
        property that ends up different from its value before the block notifies once, with
        its final value, in the order the properties first changed."""
        if self._held is not None:  # nested: the outermost block notifies
            yield self
            return
        self._held = {}
        try:
            yield self
        finally:
            held, self._held = self._held, None
            for name, old in held.items():
                value = getattr(self, name)
                if not _same(value, old):
                    self._notify(name, value)

    def add_callback(self, name: str, func: Callable) -> None:
        if not isinstance(getattr(type(self), name, None), CallbackProperty):
            raise AttributeError(f"{type(self).__name__} has no callback property {name!r}")
        self._callbacks.setdefault(name, []).append(func)

    def remove_callback(self, name: str, func: Callable) -> None:
        self._callbacks.get(name, []).remove(func)

    def _changed(self, name: str, old, value) -> None:
        if self._held is None:
            self._notify(name, value)
        else:
            self._held.setdefault(name, old)

    def _notify(self, name: str, value) -> None:
        for func in list(self._callbacks.get(name, [])):
            func(value)


class ViewerState(HasCallbacks):
    """Everything the main window shows, as plain data.

    ``images`` is the list of planes (``SkyImage``) read from ``path``; ``band`` picks the plane
    shown (``COMPOSITE_BAND`` for a colour composite of several planes). ``analysis`` is the
    engine's result for the galaxy at ``position`` (0-based pixel x, y) or None.
    """

    path = CallbackProperty("", "file currently shown ('' when none)")
    images = CallbackProperty((), "planes of the current file (tuple of SkyImage)")
    band = CallbackProperty(0, "index of the plane shown, or COMPOSITE_BAND")
    stretch = CallbackProperty("asinh", f"display stretch, one of {STRETCHES}")
    interval = CallbackProperty("99.5%", f"display limits, one of {INTERVALS}")
    contrast = CallbackProperty(1.0, "DS9-style contrast (1 = limits as computed)")
    bias = CallbackProperty(0.5, "DS9-style bias (0.5 = centred)")
    pixel_origin = CallbackProperty(0, "0: numpy/astropy pixels; 1: FITS/DS9 pixels (readout only)")
    model = CallbackProperty("", "active morphology model bundle: a shipped name or a folder")
    property_models = CallbackProperty((), "active physical-property bundles (tuple of shipped "
                                           "names or folders), run beside the morphology model")
    redshift = CallbackProperty(None, "redshift of the galaxy for property models that need "
                                      "one (float), or None when the user gave none")
    n_samples = CallbackProperty(500, "posterior samples per galaxy")
    position = CallbackProperty(None, "(x, y) of the galaxy being analysed, 0-based, or None")
    analysis = CallbackProperty(None, "engine result for the galaxy at ``position``, or None")
    busy = CallbackProperty("", "what is running in the background ('' when idle)")
    message = CallbackProperty("", "last message for the user (errors included)")

    def __setattr__(self, name, value):
        checks = {"stretch": STRETCHES, "interval": INTERVALS, "pixel_origin": (0, 1)}
        if name in checks and value not in checks[name]:
            raise ValueError(f"{name} must be one of {checks[name]}, got {value!r}")
        super().__setattr__(name, value)

    @property
    def image(self):
        """The plane shown (the first one under a colour composite), or None."""
        if not self.images:
            return None
        return self.images[max(self.band, 0)] if self.band < len(self.images) else self.images[0]

    def can_composite(self) -> bool:
        """Whether a colour composite makes sense: at least three planes of one shape."""
        return len(self.images) >= 3 and len({im.shape for im in self.images}) == 1

    def set_images(self, path: str, images) -> None:
        """Show a newly read file: forget the previous galaxy, choose the default band."""
        self.analysis = None
        self.position = None
        self.redshift = None  # a redshift belongs to one galaxy, not to the next file
        self.images = tuple(images)
        self.band = COMPOSITE_BAND if self.can_composite() else 0
        self.path = str(path)

    def set_property_model(self, name: str, active: bool) -> None:
        """Switch the property bundle ``name`` (shipped name or folder) on or off."""
        chosen = [m for m in self.property_models if m != name]
        if active:
            chosen.append(name)
        self.property_models = tuple(chosen)

    def readout(self, x: float, y: float) -> str:
        """Status-bar text for view position (x, y) (0-based pixel coordinates, centres at integers).

        Pixel numbers are shown in ``pixel_origin`` convention and say so; RA/Dec come from the
        image's WCS through astropy (0-based call), so they agree with astropy exactly.
        """
        image = self.image
        if image is None:
            return ""
        ix, iy = int(math.floor(x + 0.5)), int(math.floor(y + 0.5))
        ny, nx = image.shape
        if not (0 <= ix < nx and 0 <= iy < ny):
            return ""
        o = self.pixel_origin
        parts = [f"x={ix + o} y={iy + o} ({o}-based)"]
        ra, dec = image.pixel_to_sky(float(ix), float(iy))
        if math.isfinite(ra):
            parts.append(f"RA={ra:.6f}° Dec={dec:+.6f}°")
        pixel = image.window(slice(iy, iy + 1), slice(ix, ix + 1))
        value = float(pixel.data[0, 0])
        unit = "nJy" if image.calibrated else "(uncalibrated)"
        parts.append(f"value={value:.4g} {unit}")
        if pixel.mask is not None and pixel.mask[0, 0]:
            parts.append("masked")
        return "   ".join(parts)
