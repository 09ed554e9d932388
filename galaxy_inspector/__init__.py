"""Galaxy Inspector: calibrated morphology posteriors and physical properties of galaxies.

Importing this package (and every subpackage except ``galaxy_inspector.gui``) never imports Qt.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
