"""Talking to the tools astronomers already use, without Qt.

``samp``: a SAMP client (``astropy.samp``) that sends catalogues as VOTables and images as FITS
to TOPCAT, DS9, Aladin or any listening client, follows table rows both ways and receives sky
positions; every hub state (none, gone, a client refusing or silent) is a one-line
``SampUnavailable`` or a ``Delivery`` that says so, never a hang. DS9 region files live with the
catalogue (``galaxy_inspector.catalogue.regions``).
"""

from galaxy_inspector.interop.samp import (
    Delivery,
    SampClient,
    SampUnavailable,
    delivery_line,
    send_catalogue_to_hub,
)

__all__ = ["SampClient", "SampUnavailable", "Delivery", "delivery_line", "send_catalogue_to_hub"]
