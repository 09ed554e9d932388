"""Physical properties of galaxies from their images: gas-phase metallicity, stellar mass and
mass-to-light ratio (Wu & Boada 2019; Dobbels et al. 2019).

One home for the whole path a property bundle takes, from pixels to a catalogue column:

* ``bands``    — the band images a model reads (planes of a FITS cube by band name, or the
  R, G, B channels of a colour JPEG/PNG);
* ``stamps``   — each model's stamp of a galaxy cut from those bands (``PropertySpec``,
  ``property_inputs``; display stamps for JPEG/PNG channels);
* ``scaling``  — pixel scalings, rebinning, luminosity statistics and the cosmology they use;
* ``networks`` — the residual CNN of both methods;
* ``predict``  — how a bundle predicts: test-time augmentation over the 8 dihedral views, the
  views' Gaussian, the LightGBM features and quantile draws; the one path that the app and
  training's evaluation both run;
* ``model``    — ``PropertyModel``: a loaded bundle that checks its inputs and predicts through
  ``predict``;
* ``measure``  — ``measure_properties``: one model's ``PropertyMeasurement`` per galaxy, or the
  reason it has none (what the engine and the batch run call).

Named so that it is not confused with Python's ``@property``.
"""
