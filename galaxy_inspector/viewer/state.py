"""Headless application state (glue-style): what is shown, how, and with which model.

Nothing here imports Qt, so the GUI's logic is testable without a window. Widgets observe a
``ViewerState`` through ``add_callback`` and write to it; they never talk to each other directly.

Several images can be open at once, as DS9's frames: ``frames`` lists them and ``frame`` says
which is shown; the shown frame's file, planes, band, galaxy and measurement are the plain
properties (``path``, ``images``, ``band``, ``position``, ``analysis``, ``redshift``), so a
widget that shows one image needs to know nothing about frames. Derived things never outlive
what they were derived from: another band or position forgets the measurement, another frame
brings back its own, and a late measurement is kept only for what it measured
(``accept_analysis``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

from galaxy_inspector.io.raster import RGB_BANDS

__all__ = ["CallbackProperty", "HasCallbacks", "ViewerState", "Frame", "ImageSettings",
           "STRETCHES", "INTERVALS", "COMPOSITE_BAND"]

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


_FRAME_SERIALS = itertools.count(1)


@dataclass(frozen=True)
class ImageSettings:
    """What a user gave for one open image where its file says nothing, or says it wrong:
    ``io.read_image``'s options, as ``--batch`` takes them (None: the file's own)."""

    pixel_scale: float | None = None  # arcsec/px, replaces the file's
    zero_point: float | None = None  # AB, used only where the file has no calibration
    psf_fwhm: float | None = None  # arcsec
    psf: str | None = None  # a PSF image's path, or io.PSF_FROM_STARS
    sky_subtracted: bool = False  # its sky is 0: measure none (FITS only)

    @property
    def gives_psf(self) -> bool:
        return self.psf_fwhm is not None or self.psf is not None

    def read_options(self) -> dict:
        """Keyword arguments of ``io.read_image`` that read the image so."""
        return asdict(self)


@dataclass(eq=False)
class Frame:
    """One open image (a DS9 frame) and what was being looked at in it, kept while another
    frame is shown. ``serial`` tells frames apart even when one file is closed and reopened;
    ``view`` is the GUI's zoom and pan, opaque here; ``settings`` what ``images`` were read
    with."""

    path: str
    images: tuple
    band: int | None = None  # None until first shown: then the file's default band
    position: tuple | None = None
    analysis: object = None
    analysis_key: tuple | None = None
    redshift: float | None = None
    view: object = None
    settings: ImageSettings = field(default_factory=ImageSettings)
    serial: int = field(default_factory=lambda: next(_FRAME_SERIALS))


class ViewerState(HasCallbacks):
    """Everything the main window shows, as plain data.

    ``images`` is the list of planes (``SkyImage``) read from ``path``; ``band`` picks the plane
    shown (``COMPOSITE_BAND`` for a colour composite of several planes). ``analysis`` is the
    engine's result for the galaxy at ``position`` (0-based pixel x, y) or None; changing
    ``band`` or ``position`` forgets it (it measured another plane or place).
    """

    frames = CallbackProperty((), "open images, in the order opened (tuple of Frame)")
    frame = CallbackProperty(-1, "index in ``frames`` of the image shown (-1: none open)")
    path = CallbackProperty("", "file currently shown ('' when none)")
    images = CallbackProperty((), "planes of the current file (tuple of SkyImage)")
    band = CallbackProperty(0, "index of the plane shown, or COMPOSITE_BAND")
    stretch = CallbackProperty("asinh", f"display stretch, one of {STRETCHES}")
    interval = CallbackProperty("99.5%", f"display limits, one of {INTERVALS}")
    contrast = CallbackProperty(1.0, "DS9-style contrast (1 = limits as computed)")
    bias = CallbackProperty(0.5, "DS9-style bias (0.5 = centred)")
    pixel_origin = CallbackProperty(0, "pixel numbers shown to people (axes, readout, posterior "
                                       "header): 0 numpy/astropy, 1 FITS/DS9; data stay 0-based")
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

    def __init__(self):
        super().__init__()
        self._analysis_key = None  # measurement_key() of the request ``analysis`` answered

    def __setattr__(self, name, value):
        checks = {"stretch": STRETCHES, "interval": INTERVALS, "pixel_origin": (0, 1)}
        if name in checks and value not in checks[name]:
            raise ValueError(f"{name} must be one of {checks[name]}, got {value!r}")
        if name in ("band", "position") and not _same(value, getattr(self, name, None)):
            self.analysis = None  # it measured another plane or another place
            self._analysis_key = None
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
        """Show a newly read file in the frame shown (a new frame when none is open): forget
        the previous galaxy, choose the default band."""
        if self.frame < 0:
            self.open_frame(path, images)
            return
        frames = list(self.frames)
        frames[self.frame] = Frame(str(path), tuple(images))
        self.frames = tuple(frames)
        self._show(frames[self.frame])

    # -- frames ----------------------------------------------------------------------------
    def open_frame(self, path: str, images, show: bool = True) -> int:
        """Add a frame for a newly read file and return its index; ``show`` switches to it."""
        self.frames = (*self.frames, Frame(str(path), tuple(images)))
        index = len(self.frames) - 1
        if show or self.frame < 0:
            self.select_frame(index)
        return index

    def frame_index(self, path: str) -> int:
        """Index of the frame showing file ``path`` (-1 when it is not open)."""
        return next((i for i, f in enumerate(self.frames) if f.path == str(path)), -1)

    def select_frame(self, index: int) -> None:
        """Show frame ``index`` as it was left: its band, galaxy and measurement."""
        if not 0 <= index < len(self.frames):
            raise IndexError(f"no frame {index} (there are {len(self.frames)})")
        if index != self.frame:
            self._keep_shown()
            self._show(self.frames[index], index)

    def step_frame(self, step: int) -> None:
        """Show the next (``step`` = 1) or previous (-1) frame, wrapping round as DS9 does."""
        if self.frames:
            self.select_frame((self.frame + step) % len(self.frames))

    def close_frame(self, index: int | None = None) -> None:
        """Close frame ``index`` (the one shown by default); the next one is shown, or the
        previous when it was the last, or nothing when none is left."""
        index = self.frame if index is None else index
        if not 0 <= index < len(self.frames):
            return
        self._keep_shown()
        frames = list(self.frames)
        del frames[index]
        with self.delay_callbacks():
            self.frames = tuple(frames)
            if not frames:
                self._show(Frame("", ()), -1)
            elif index == self.frame:
                new = min(index, len(frames) - 1)
                self._show(frames[new], new)
            elif index < self.frame:
                self.frame -= 1

    def reread_frame(self, frame: Frame, images, settings: ImageSettings) -> bool:
        """Give ``frame`` its planes read anew with ``settings`` (the image settings dialog),
        keeping its band, galaxy, redshift and zoom; its measurement is forgotten (it measured
        the planes as read before). False when the frame was closed meanwhile."""
        if frame not in self.frames:
            return False
        shown = frame is self.shown_frame()
        if shown:
            self._keep_shown()
        frame.images, frame.settings = tuple(images), settings
        frame.analysis = frame.analysis_key = None
        if shown:
            self._show(frame)
        return True

    def shown_frame(self) -> Frame | None:
        return self.frames[self.frame] if 0 <= self.frame < len(self.frames) else None

    def _keep_shown(self) -> None:
        """Write what the shown frame looks at back into it (before showing another)."""
        frame = self.shown_frame()
        if frame is not None:
            frame.band, frame.position, frame.redshift = self.band, self.position, self.redshift
            frame.analysis, frame.analysis_key = self.analysis, self._analysis_key

    def _show(self, frame: Frame, index: int | None = None) -> None:
        with self.delay_callbacks():  # listeners see the whole frame at once
            self.images = frame.images
            default = COMPOSITE_BAND if self.can_composite() else 0
            self.band = default if frame.band is None else frame.band
            self.position = frame.position
            self.analysis = frame.analysis
            self._analysis_key = frame.analysis_key
            self.redshift = frame.redshift  # a redshift belongs to one galaxy
            self.path = frame.path
            if index is not None:
                self.frame = index

    # -- measurements ----------------------------------------------------------------------
    def measurement_key(self) -> tuple:
        """What a measurement of the galaxy shown depends on: frame and the settings its
        image was read with, band, position, models, samples and redshift. A worker's result
        is shown only while this key is the one it measured."""
        return self._key(self.shown_frame(), self.band, self.position, self.redshift)

    def _key(self, frame, band, position, redshift) -> tuple:
        """The measurement key of ``frame`` looking at ``band`` and ``position``."""
        return (frame.serial if frame else None, frame.settings if frame else None, band,
                position, self.model, self.property_models, self.n_samples, redshift)

    def accept_analysis(self, key: tuple, analysis) -> bool:
        """Take a worker's measurement made for ``key``: shown when the key is still the
        shown one (True); kept in its frame when that frame, not shown now, still looks at
        the same band and position with the same models; dropped otherwise."""
        if key == self.measurement_key():
            self.analysis = analysis
            self._analysis_key = key
            return True
        for frame in self.frames:
            if (self._key(frame, frame.band, frame.position, frame.redshift) == key
                    and frame is not self.shown_frame()):
                frame.analysis, frame.analysis_key = analysis, key
        return False

    def needs_measurement(self) -> bool:
        """Whether a galaxy is marked but what is shown is not its measurement with the
        current models and redshift (after a click, a band switch or a change of models)."""
        return (self.position is not None and self.image is not None
                and (self.analysis is None or self._analysis_key != self.measurement_key()))

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
        if image.is_display_image:
            parts.append(self._display_levels_at(ix, iy))
        else:
            unit = "nJy" if image.calibrated else "(uncalibrated)"
            parts.append(f"value={float(pixel.data[0, 0]):.4g} {unit}")
        if pixel.mask is not None and pixel.mask[0, 0]:
            parts.append("masked")
        return "   ".join(parts)

    def _display_levels_at(self, ix: int, iy: int) -> str:
        """A display image's channel levels at a pixel: each channel under "colour", else the
        one shown; 0-255 (a 16-bit PNG's levels are read scaled to that range)."""
        shown = self.images if self.band == COMPOSITE_BAND and self.can_composite() else \
            (self.image,)
        levels = (im.window(slice(iy, iy + 1), slice(ix, ix + 1)).data[0, 0] for im in shown)
        named = (f"{RGB_BANDS[im.plane]}={v:.4g}" for im, v in zip(shown, levels, strict=True))
        return " ".join(named) + " (display level 0-255)"
