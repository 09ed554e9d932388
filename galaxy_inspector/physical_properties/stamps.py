"""The stamp each property model reads, cut from the image its galaxy was found on.

* ``PropertySpec`` — what a property bundle's card says it reads: bands and their kind, side and
  pixel scale (small and picklable, sent to batch workers);
* ``property_bands`` — those band images from the image's file (planes of a FITS cube by band
  name, or the R, G, B channels of a JPEG/PNG);
* ``property_stamp`` — one galaxy's stamp on the model's grid: flux bands cut and resampled like
  morphology stamps (``preprocessing.make_stamp``) but never normalised; colour JPEG/PNG channels
  by ``make_display_stamp``: their 0-255 values are a stretched surface brightness, not fluxes,
  so they are interpolated (never rescaled by pixel area) and no sky or noise normalisation is
  applied;
* ``property_inputs`` — per galaxy position, one ``PropertyInput`` per model (its stamp, or the
  reason there is none), what the batch workers and a click in the viewer both call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from galaxy_inspector.errors import InputError, user_message
from galaxy_inspector.flags import Flag
from galaxy_inspector.io.image import SkyImage
from galaxy_inspector.physical_properties.bands import read_bands
from galaxy_inspector.preprocessing import SAME_SCALE_TOLERANCE, check_position, make_stamp

__all__ = ["PropertySpec", "PropertyInput", "property_bands", "property_stamp",
           "make_display_stamp", "property_inputs"]


@dataclass(frozen=True)
class PropertySpec:
    """The stamp a property model reads (from its card): bands and their kind (``flux`` in nJy
    or ``display`` 0-255 colour channels), side and pixel scale, and ``raw_values`` when it was
    trained on uncalibrated file values. Small and picklable (sent to batch workers)."""

    name: str
    bands: tuple
    kind: str
    stamp_size: int
    pixel_scale: float
    raw_values: bool = False

    @classmethod
    def of(cls, model) -> PropertySpec:
        card = model.bundle.card
        data = (card.get("training") or {}).get("data") or {}
        return cls(model.bundle.name, tuple(model.bands), str(card["input"].get("kind", "flux")),
                   model.stamp_size, model.pixel_scale,
                   raw_values=data.get("flux_calibrated", True) is False)


@dataclass
class PropertyInput:
    """What a property model needs for one galaxy: its stamp (C, n, n) on the model's grid (or
    ``error`` saying why there is none), the redshift (or ``redshift_note`` saying why none),
    catalogue photometry (column -> value) and the stamp's flags."""

    stamp: np.ndarray | None
    error: str = ""
    redshift: float | None = None
    redshift_note: str = ""
    photometry: dict = field(default_factory=dict)
    flags: int = 0


def property_bands(image: SkyImage, spec: PropertySpec, pixel_scale: float | None = None,
                   zero_point: float | None = None) -> list[SkyImage]:
    """The band images ``spec`` reads, from the file ``image`` was read from (the planes of a
    cube by band name, or a JPEG's colour channels); an array image serves a one-band model.
    ``pixel_scale``/``zero_point`` are the user's values for files without them."""
    if not image.source:
        if spec.kind == "flux" and len(spec.bands) == 1:
            return [image]
        raise InputError(f"model {spec.name} reads bands {', '.join(spec.bands)} "
                         f"({spec.kind}); an image without a file cannot provide them")
    hdu = image.hdu if image.hdu >= 0 else None
    return read_bands(image.source, spec.bands, spec.kind, hdu=hdu, pixel_scale=pixel_scale,
                      zero_point=zero_point)


def property_stamp(bands: list[SkyImage], x: float, y: float, spec: PropertySpec,
                   seed: int = 0) -> tuple[np.ndarray, int]:
    """``(stamp (C, n, n) float32, flags)`` for a property model at 0-based pixel (x, y).

    Flux bands are cut and resampled like morphology stamps but never normalised: a model
    trained on calibrated fluxes refuses an uncalibrated band (``InputError``, give
    --zero-point); display channels keep their 0-255 values (``make_display_stamp``).
    """
    if spec.kind == "display":
        return make_display_stamp(bands, x, y, spec.stamp_size, spec.pixel_scale)
    if not spec.raw_values:
        for band, image in zip(spec.bands, bands, strict=True):
            if not image.calibrated:
                raise InputError(f"model {spec.name} reads calibrated fluxes (nJy) but band "
                                 f"{band} of {image.source or 'the image'} has no flux "
                                 f"calibration ({image.calibration}); give --zero-point")
    # Neighbours are left in: each band would find its own, and the bands' masks would
    # differ, giving the model colours no galaxy has (and the models were trained without).
    stamps = [make_stamp(image, x, y, spec.stamp_size, spec.pixel_scale, seed=seed,
                         normalise_uncalibrated=False, mask_neighbours=False)
              for image in bands]
    flags = 0
    for stamp in stamps:
        flags |= stamp.flags
    return np.stack([s.data for s in stamps]), int(flags)


def make_display_stamp(channels: list[SkyImage], x: float, y: float, stamp_size: int,
                       pixel_scale: float) -> tuple[np.ndarray, int]:
    """Display-value stamp ``(C, n, n)`` (0-255, float32) of colour channels around (x, y).

    Values are interpolated bilinearly at the model's pixel centres (smoothed first when the
    model's pixels are coarser, against aliasing); pixels off the image take the channel's
    median and set ``Flag.EDGE``. A guessed pixel scale (``Flag.PIXEL_SCALE_GUESSED``, e.g. a
    JPEG without ``--pixel-scale``) is taken to be the model's: such cutouts are most likely
    what the model was trained on. Returns the stamp and its flags.
    """
    from scipy.ndimage import gaussian_filter, map_coordinates

    first = channels[0]
    check_position(first.shape, x, y)
    ny, nx = first.shape
    flags = int(first.flags)
    source_scale = first.pixel_scale
    if source_scale is None or flags & Flag.PIXEL_SCALE_GUESSED:
        source_scale, flags = pixel_scale, flags | Flag.PIXEL_SCALE_GUESSED
    ratio = pixel_scale / source_scale  # source pixels per model pixel
    offsets = (np.arange(stamp_size) - (stamp_size - 1) / 2.0) * ratio
    ys, xs = np.meshgrid(y + offsets, x + offsets, indexing="ij")
    off_image = (xs < -0.5) | (xs > nx - 0.5) | (ys < -0.5) | (ys > ny - 0.5)
    if off_image.any():
        flags |= Flag.EDGE
    if source_scale > pixel_scale * 1.05:
        flags |= Flag.COARSE_PIXELS
    out = np.empty((len(channels), stamp_size, stamp_size), dtype=np.float32)
    for k, channel in enumerate(channels):
        data = np.asarray(channel.data, dtype=np.float64)
        fill = float(np.median(data))
        if ratio > 1.0 + SAME_SCALE_TOLERANCE:
            data = gaussian_filter(data, 0.5 * ratio, mode="nearest")
        values = map_coordinates(data, [ys.ravel(), xs.ravel()], order=1, mode="nearest")
        out[k] = np.where(off_image, fill, values.reshape(xs.shape))
    return out, int(flags)


def property_inputs(image: SkyImage, positions, specs, seeds, *, pixel_scale=None,
                    zero_point=None, redshift=None, redshift_note: str = "", photometry=None,
                    bands_cache: dict | None = None) -> list[list[PropertyInput]]:
    """Per 0-based position ``(x, y)`` of ``image``, one ``PropertyInput`` per spec of ``specs``.

    A model whose bands cannot be read, or whose stamp cannot be cut at a position, gets the
    reason in ``error`` instead (one such model must not stop the others). ``seeds``: one per
    position (the noise that fills bad pixels); ``redshift``, ``redshift_note`` and
    ``photometry`` (column -> magnitude, lower-case names) are the galaxy's, shared by its
    positions. ``bands_cache`` (spec name -> bands or the reason they cannot be read) lets the
    targets of one file read its bands once.
    """
    bands_cache = {} if bands_cache is None else bands_cache
    context = dict(redshift=redshift, redshift_note=redshift_note,
                   photometry=dict(photometry or {}))
    out = []
    for (x, y), seed in zip(positions, seeds, strict=True):
        row = []
        for spec in specs:
            if spec.name not in bands_cache:
                try:
                    bands_cache[spec.name] = property_bands(image, spec, pixel_scale, zero_point)
                except Exception as exc:  # any reading problem is this model's message
                    bands_cache[spec.name] = user_message(exc)
            bands = bands_cache[spec.name]
            if isinstance(bands, str):
                row.append(PropertyInput(None, error=bands, **context))
                continue
            try:
                stamp, flags = property_stamp(bands, x, y, spec, seed=seed)
                row.append(PropertyInput(stamp, flags=flags, **context))
            except Exception as exc:  # as above
                row.append(PropertyInput(None, error=user_message(exc), **context))
        out.append(row)
    return out
