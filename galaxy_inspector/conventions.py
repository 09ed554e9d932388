"""Conventions used everywhere in Galaxy Inspector (read this before touching pixels or units).

``docs/design.md`` gives the same conventions with the layout and the file contracts.

Array order
    Images are numpy arrays indexed ``image[y, x]`` (rows, columns), shape ``(ny, nx)``, as astropy
    and ``Cutout2D`` use them; stacks of stamps are ``(N, ny, nx)``. Functions that take a position
    take it as ``x, y`` (column, row), in that order, like ``astropy.wcs.WCS.pixel_to_world``.

Pixel coordinates
    0-based, with integer values at pixel *centres*: pixel ``image[0, 0]`` covers
    ``-0.5 <= x < 0.5`` and ``-0.5 <= y < 0.5``. FITS, DS9 and ``WCS.all_pix2world(..., 1)`` count
    from 1, so FITS/DS9 pixel ``(X, Y)`` is our ``(X - 1, Y - 1)``. World coordinates are computed
    by ``SkyImage.pixel_to_sky`` / ``sky_to_pixel`` (``galaxy_inspector.io.image``) with
    ``WCS.all_pix2world(..., 0)`` / ``all_world2pix(..., 0)``: origin 0 and every distortion
    term, the same numbers as astropy's high-level ``pixel_to_world``, so a readout agrees with
    astropy. The centre of an ``n``-pixel stamp is at ``(n - 1) / 2``.

Orientation
    Resampled stamps are north up, east left (a TAN projection with ``CDELT1 < 0``) when the
    image has a celestial WCS; images without one keep their orientation.

Units
    Every image a model sees is in **nJy per pixel** (AB: m = 31.4 - 2.5 log10(F / nJy), ``io.calibration.AB_ZERO_POINT_NJY``); variance
    planes are in nJy^2 per pixel. Angles are in arcsec unless a name says otherwise (``ra``,
    ``dec`` in degrees). Pixel scales are arcsec per pixel.

Morphology parameters
    ``bt``: bulge flux / total flux in [0, 1]. ``re_arcsec``: circular half-light radius of the
    intrinsic (pre-PSF) bulge+disk light, i.e. the radius of the circle centred on the galaxy that
    holds half of its total untruncated flux, in arcsec. ``flux_njy``: total intrinsic flux, nJy.

Resampling
    Values are fluxes per pixel, not surface brightness: a resampled stamp keeps the total flux
    (the sum over pixels), not the pixel values. See ``galaxy_inspector.preprocessing``.
"""
