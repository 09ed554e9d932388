"""Conventions used everywhere in Galaxy Inspector (read this before touching pixels or units).

Array order
    Images are numpy arrays indexed ``image[y, x]`` (rows, columns), shape ``(ny, nx)``, as astropy
    and ``Cutout2D`` use them; stacks of stamps are ``(N, ny, nx)``. Functions that take a position
    take it as ``x, y`` (column, row), in that order, like ``astropy.wcs.WCS.pixel_to_world``.

Pixel coordinates
    0-based, with integer values at pixel *centres*: pixel ``image[0, 0]`` covers
    ``-0.5 <= x < 0.5`` and ``-0.5 <= y < 0.5``. FITS, DS9 and ``WCS.all_pix2world(..., 1)`` count
    from 1, so FITS/DS9 pixel ``(X, Y)`` is our ``(X - 1, Y - 1)``. All world-coordinate calls use
    astropy's high-level API (``pixel_to_world`` / ``world_to_pixel``), which is 0-based, so a
    readout agrees with astropy. The centre of an ``n``-pixel stamp is at ``(n - 1) / 2``.

Orientation
    Resampled stamps are north up, east left (a TAN projection with ``CDELT1 < 0``) when the
    image has a celestial WCS; images without one keep their orientation.

Units
    Every image a model sees is in **nJy per pixel** (AB: m = 31.4 - 2.5 log10(F / nJy)); variance
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
