"""Physical properties of galaxies from their images: gas-phase metallicity, stellar mass and
mass-to-light ratio (Wu & Boada 2019; Dobbels et al. 2019).

One home for the whole path a property bundle takes, from pixels to a catalogue column:

* ``bands``    — the band images a model reads (planes of a FITS cube by band name, or the
  R, G, B channels of a colour JPEG/PNG);
* ``scaling``  — pixel scalings, rebinning, luminosity statistics and the cosmology they use;
* ``networks`` — the residual CNN of both methods;
* ``model``    — ``PropertyModel``: a loaded bundle that predicts (CNN, or CNN features +
  LightGBM quantiles).

Named so that it is not confused with Python's ``@property``.
"""
