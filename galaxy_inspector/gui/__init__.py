"""The Qt desktop application: a thin shell over the engine that ``--batch`` also drives.

This is the only subpackage that imports Qt, and it holds only Qt code. What it shows lives in
``galaxy_inspector.viewer`` (no Qt, testable without a window); widgets observe that state,
one widget per file; long work (loading, inference, batches) runs through ``workers.py``, the
only adapter to Qt threads; ``file_filters.py`` holds every file dialog's filters. No science
lives here.
"""
