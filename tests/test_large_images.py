"""Large images: stamps read only their window, gzip'd files and searches that cannot fit are
refused from the header, and lazily read pixels equal those of a whole read.

Files here are small; ``fits.LAZY_ABOVE_BYTES`` and ``memory.whole_read_limit`` are lowered so
that they take the paths a 20000x20000 image takes (``benchmarks/large_image_memory.py``
measures the real thing).
"""

from __future__ import annotations

import gzip
import tracemalloc

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from galaxy_inspector.errors import ImageReadError, InputError
from galaxy_inspector.io import fits as fits_io
from galaxy_inspector.io import image as image_module
from galaxy_inspector.io import read_image
from galaxy_inspector.io.image import ArrayPixels, SkyImage
from galaxy_inspector.preprocessing import detect_galaxies, make_stamp

N = 1000
STAMP, MODEL_SCALE = 64, 0.168


def _field(seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = rng.normal(0.0, 2.0, (N, N)).astype(np.float32)
    yy, xx = np.mgrid[-40:40, -40:40]
    data[460:540, 560:640] += (400 * np.exp(-np.hypot(xx, yy) / 4.0)).astype(np.float32)
    return data


def _wcs_header(scale=0.2) -> fits.Header:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [N / 2 + 0.3, N / 2 - 0.7]
    w.wcs.cdelt = [-scale / 3600.0, scale / 3600.0]
    header = w.to_header()
    header["BUNIT"] = "nJy"
    return header


@pytest.fixture
def lazy_reads(monkeypatch):
    """Every plane counts as large; returns the list of (rows, cols) windows read."""
    monkeypatch.setattr(fits_io, "LAZY_ABOVE_BYTES", 0)
    windows = []
    read = fits_io.FitsSectionPixels.read

    def counting(self, rows, cols):
        windows.append((rows, cols))
        return read(self, rows, cols)

    monkeypatch.setattr(fits_io.FitsSectionPixels, "read", counting)
    return windows


def _read_whole(path, monkeypatch, **kwargs):
    with monkeypatch.context() as m:
        m.setattr(fits_io, "LAZY_ABOVE_BYTES", float("inf"))
        return read_image(path, **kwargs)


def _pixels_read(windows, shape) -> int:
    return sum(len(range(*r.indices(shape[0]))) * len(range(*c.indices(shape[1])))
               for r, c in windows)


def test_stamp_of_a_large_file_reads_only_its_window_and_equals_a_whole_read(
        tmp_path, lazy_reads, monkeypatch):
    path = tmp_path / "field.fits"
    fits.PrimaryHDU(_field(), header=_wcs_header()).writeto(path)
    image = read_image(path)
    assert isinstance(image.pixels, fits_io.FitsSectionPixels)
    make_stamp(image, 300.0, 300.0, STAMP, MODEL_SCALE)  # imports reproject and photutils
    lazy_reads.clear()
    tracemalloc.start()
    stamp = make_stamp(image, 600.0, 500.0, STAMP, MODEL_SCALE, seed=3)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert "_whole" not in image.__dict__
    assert 0 < _pixels_read(lazy_reads, image.shape) < 0.02 * N * N
    assert peak < 0.5 * N * N * 4  # far less than the float32 plane
    whole = _read_whole(path, monkeypatch)
    assert isinstance(whole.pixels, ArrayPixels)
    expected = make_stamp(whole, 600.0, 500.0, STAMP, MODEL_SCALE, seed=3)
    np.testing.assert_array_equal(stamp.data, expected.data)
    assert (stamp.flags, stamp.sky_sigma, stamp.ra) == (expected.flags, expected.sky_sigma,
                                                        expected.ra)
    # A stamp running off the image is padded exactly as a whole read pads it.
    edge = make_stamp(image, 5.0, 990.0, STAMP, MODEL_SCALE)
    np.testing.assert_array_equal(edge.data, make_stamp(whole, 5.0, 990.0, STAMP,
                                                        MODEL_SCALE).data)


def test_scaled_integer_windows_with_mask_and_variance_equal_a_whole_read(
        tmp_path, lazy_reads, monkeypatch):
    """BSCALE/BZERO apply to each window alone; MASK bits and IVAR are converted the same."""
    rng = np.random.default_rng(1)
    raw = rng.integers(-3000, 3000, (300, 200)).astype(np.int16)
    image_hdu = fits.ImageHDU(raw, name="IMAGE")
    image_hdu.header.update(BSCALE=0.25, BZERO=100.0, PIXSCALE=0.168, FLUXMAG0=10 ** 12)
    mask = np.zeros(raw.shape, np.int32)
    mask[10:20, 30:40] = 1 << 1  # SAT among the default HSC bad planes
    mask[50, 50] = 1 << 5  # DETECTED: not bad
    ivar = rng.uniform(0.5, 2.0, raw.shape).astype(np.float32)
    path = tmp_path / "scaled.fits"
    fits.HDUList([fits.PrimaryHDU(), image_hdu, fits.ImageHDU(mask, name="MASK"),
                  fits.ImageHDU(ivar, name="IVAR")]).writeto(path)
    lazy, whole = read_image(path), _read_whole(path, monkeypatch)
    assert lazy.calibrated and lazy.calibration == whole.calibration
    rows, cols = slice(5, 60), slice(25, 180, 3)
    window = lazy.window(rows, cols)
    np.testing.assert_array_equal(window.data, whole.data[rows, cols])
    np.testing.assert_array_equal(window.mask, whole.mask[rows, cols])
    np.testing.assert_array_equal(window.variance, whole.variance[rows, cols])
    factor = 10 ** (-0.4 * (2.5 * 12 - 31.4))  # FLUXMAG0 = 1e12 counts per 0 mag, to nJy
    np.testing.assert_allclose(window.data, (raw[rows, cols] * 0.25 + 100.0) * factor,
                               rtol=1e-6)
    assert window.mask[5:15, 2:5].all() and not window.mask[45, 8]
    monkeypatch.setattr(image_module, "PREVIEW_BLOCK_PIXELS", 2000)  # blocks of 10 rows
    np.testing.assert_array_equal(lazy.preview(70), whole.data[::5, ::5])
    np.testing.assert_array_equal(lazy.preview(70, "mask"), whole.mask[::5, ::5])
    assert "_whole" not in lazy.__dict__


def test_gzip_file_declaring_an_image_too_large_is_refused_from_its_header(tmp_path):
    """The file declares 30000x30000 pixels but holds one block: a read of its data would
    fail, so the one-line refusal shows the header alone was used."""
    header = fits.PrimaryHDU(np.zeros((2, 2), np.uint8)).header
    header.update(NAXIS1=30000, NAXIS2=30000)
    path = tmp_path / "bomb.fits.gz"
    with gzip.open(path, "wb") as out:
        out.write(header.tostring().encode() + bytes(2880))
    with pytest.raises(ImageReadError) as refused:
        read_image(path)
    message = str(refused.value)
    assert "\n" not in message and "30000x30000" in message
    assert "plain .fits" in message and ".fz" in message


def test_gzip_file_is_refused_by_the_memory_bound_and_read_below_it(tmp_path, monkeypatch):
    path = tmp_path / "field.fits.gz"
    data = _field()[:100, :100]
    fits.PrimaryHDU(data, header=_wcs_header()).writeto(path)
    np.testing.assert_array_equal(read_image(path).data, data)
    monkeypatch.setattr(fits_io, "whole_read_limit", lambda: 100 * 100 * 4)
    with pytest.raises(ImageReadError, match="100x100 image .* to decompress"):
        read_image(path)


def test_detection_too_large_for_memory_is_refused_before_reading(monkeypatch):
    import galaxy_inspector.preprocessing as preprocessing

    class Unreadable(ArrayPixels):
        def read(self, rows, cols):
            raise AssertionError("pixels read before the size check")

    image = SkyImage(pixels=Unreadable(np.zeros((400, 300))), pixel_scale=0.2)
    monkeypatch.setattr(preprocessing, "whole_read_limit", lambda: 1000)
    with pytest.raises(InputError, match="300x400 pixels .* table of positions"):
        detect_galaxies(image)


def test_sky_image_is_read_only_and_previews_by_subsampling():
    image = SkyImage.from_array(np.arange(100.0).reshape(10, 10), 0.2)
    with pytest.raises(AttributeError):
        image.pixel_scale = 1.0
    assert not image.data.flags.writeable
    np.testing.assert_array_equal(image.preview(4), image.data[::3, ::3])
    with pytest.raises(ValueError, match="either"):
        SkyImage(pixel_scale=0.2)
