"""Quality flags of a measured galaxy: a bitmask stored in the catalogue's ``flags`` column.

A set bit means "look before you trust this row"; a flagged row still holds its measurement.
The catalogue records every bit's name and meaning in the HDF5 file's root attributes
(``flag_<NAME>`` = "<value>: <description>") so the file explains itself.
"""

from __future__ import annotations

import enum

__all__ = ["Flag", "FLAG_DESCRIPTIONS", "describe_flags"]


class Flag(enum.IntFlag):
    """Bits of the ``flags`` column."""

    EDGE = 1
    MASKED = 2
    FLUX_UNCALIBRATED = 4
    OUTSIDE_TRAINING = 8
    COARSE_PIXELS = 16
    LOW_SNR = 32
    CALIBRATION_GUESSED = 64
    PIXEL_SCALE_GUESSED = 128
    NONLINEAR_IMAGE = 256
    BLENDED = 512
    RESCALED = 1024
    PSF_MATCHED = 2048
    NEIGHBOURS_MASKED = 4096
    PSF_GUESSED = 8192


FLAG_DESCRIPTIONS = {
    Flag.EDGE: "some stamp pixels came less than half from the image (the stamp runs off its "
               "edge, or a rotated frame leaves its corners empty) and were filled with "
               "background and noise; a same-scale stamp overhanging by under a pixel is "
               "moved onto the image instead",
    Flag.MASKED: "more than 1 % of the stamp's pixels were masked or not finite and were filled "
                 "with background and noise (see column masked_fraction)",
    Flag.FLUX_UNCALIBRATED: "no flux calibration: the image was scaled to a nominal sky noise, "
                            "flux_njy columns are not physical",
    Flag.OUTSIDE_TRAINING: "a predicted median, or the stamp's sky noise, lies outside the "
                           "model's training range",
    Flag.COARSE_PIXELS: "the image's pixels are coarser than the model's: it was upsampled, "
                        "small radii are less certain",
    Flag.LOW_SNR: "signal-to-noise ratio within 2 R_e below 10 (see column snr)",
    Flag.CALIBRATION_GUESSED: "the flux calibration rests on an assumption (see column "
                              "calibration)",
    Flag.PIXEL_SCALE_GUESSED: "no WCS or pixel-scale keyword: the model's pixel scale was "
                              "assumed; give --pixel-scale",
    Flag.NONLINEAR_IMAGE: "a display image (JPEG/PNG) with a non-linear stretch: all outputs "
                          "are rough",
    Flag.BLENDED: "the galaxy was split from a blend by deblending: a neighbour touches it",
    Flag.RESCALED: "the galaxy is larger than the model's training range: its stamp was binned "
                   "by the factor in column binning (wider pixels, the same flux), and R_e "
                   "scaled back by it",
    Flag.PSF_MATCHED: "the image's PSF, in the stamp's frame, was sharper than the model's "
                      "training range: the image was convolved to a PSF inside it (column "
                      "psf_fwhm_arcsec is the image's)",
    Flag.NEIGHBOURS_MASKED: "other sources in the stamp were replaced by sky and noise before "
                            "the galaxy was measured",
    Flag.PSF_GUESSED: "no PSF known for an image with pixels finer than the model's: its FWHM "
                      "was assumed to be 3 pixels (give --psf-fwhm or --psf)",
}


def describe_flags(flags: int) -> list[str]:
    """Names of the bits set in ``flags``, e.g. ``['EDGE', 'LOW_SNR']``."""
    return [f.name for f in Flag if int(flags) & f]
