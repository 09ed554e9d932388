"""The viewer's model, without Qt: what the GUI shows and the engine calls it runs.

napari's ``components/`` and glue's ``state.py`` play this role there. Nothing here imports Qt,
so every module can be tested without a window, and the widgets in ``galaxy_inspector.gui``
only observe this state and draw it:

* ``state``       — ``ViewerState``: image, band, stretch, selection, with callbacks;
* ``display``     — stretches, intervals and colour composites of image planes;
* ``corner_plot`` — the posterior corner plot and marginals drawn on a Matplotlib figure;
* ``tasks``       — the engine calls the GUI runs in background workers;
* ``model_cards`` — bundle names, the demo label and cards as HTML, read from model cards;
* ``wording``     — how numbers, parameter names and reasons are written for the user.
"""
