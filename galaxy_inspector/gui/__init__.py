"""The Qt desktop application: a thin shell over the engine that ``--batch`` also drives.

This is the only subpackage that imports Qt. Its state lives in ``state.py`` (no Qt, testable
without a window); widgets observe it, one widget per file; long work (loading, inference,
batches) runs through ``workers.py``, the only adapter to Qt threads. No science lives here.
"""
