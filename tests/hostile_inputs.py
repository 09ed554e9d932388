"""A folder of hostile inputs for the batch engine, beside good cutouts (issue #15, "Done when").

``write_hostile_batch(root, good_cutouts)`` writes about 140 inputs that no measurement can be
made of (truncated, empty or mislabelled files, table-only FITS, non-finite or overflowing
pixels, huge declared sizes, named pipes, symbolic link loops, tables with bad rows...) and
copies the good cutouts under hostile names (not UTF-8, a newline). It returns the batch's
INPUT arguments and ``{row id: "ok" or "error"}``: every input's expected row.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
from pathlib import Path

import numpy as np
from astropy.io import fits
from PIL import Image

from galaxy_inspector.errors import printable

__all__ = ["write_hostile_batch"]


def _fits_bytes(hdus) -> bytes:
    buffer = io.BytesIO()
    fits.HDUList(hdus).writeto(buffer)
    return buffer.getvalue()


def _header_only(cards: dict, data_bytes: int = 0) -> bytes:
    """A FITS header of ``cards`` (raw, unchecked) followed by ``data_bytes`` zero bytes."""
    text = "".join(f"{k:<8}= {v!s:>20}".ljust(80) for k, v in cards.items()) + "END".ljust(80)
    text += " " * (-len(text) % 2880)
    return text.encode("ascii") + bytes(data_bytes)


def _image(data, header=None) -> bytes:
    return _fits_bytes([fits.PrimaryHDU(np.asarray(data), fits.Header(header or {}))])


def _png(array, mode=None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format="PNG")
    return buffer.getvalue()


def _hostile_files(good: bytes) -> dict:
    """File name -> contents of files that must each give one error row."""
    rng = np.random.default_rng(15)
    noise = rng.normal(0, 1.0, (100, 100)).astype(np.float32)
    files = {}
    for n in (1, 10, 79, 80, 2879, 2880, 2881, 4000, 5759, 5760, 5761, 8000):
        files[f"truncated_{n}.fits"] = good[:n]
    for fraction in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.99):
        files[f"truncated_data_{int(fraction * 100)}.fits"] = good[:int(len(good) * fraction)]
    for k, (old, new) in enumerate([(b"NAXIS1  =                  100", b"NAXIS1  =              'abc' "),
                                    (b"BITPIX  =                  -32", b"BITPIX  =                   13"),
                                    (b"END" + b" " * 77, b"XXX" + b" " * 77),
                                    (b"NAXIS2  =                  100", b"NAXIS2  =             99999999"),
                                    (b"XTENSION= 'IMAGE   '", b"XTENSION= 'BOGUS   '"),
                                    (b"NAXIS   =                    2", b"NAXIS   =                  999")]):
        assert old in good, old
        files[f"corrupt_header_{k}.fits"] = good.replace(old, new)
    table = fits.BinTableHDU.from_columns([fits.Column("flux", "E", array=np.ones(3))])
    files["table_only.fits"] = _fits_bytes([fits.PrimaryHDU(), table])
    files["table_only_two.fits"] = _fits_bytes([fits.PrimaryHDU(), table, table.copy()])
    files["empty_primary.fits"] = _fits_bytes([fits.PrimaryHDU()])
    for name, value in [("nan", np.nan), ("inf", np.inf), ("minus_inf", -np.inf),
                        ("zero", 0.0), ("constant", 5.0), ("huge_constant", 1e30)]:
        files[f"flat_{name}.fits"] = _image(np.full((100, 100), value, np.float32),
                                            {"BUNIT": "nJy"})
    mostly_nan = np.full((100, 100), np.nan, np.float32)
    mostly_nan[:3, :3] = 1.0
    files["mostly_nan.fits"] = _image(mostly_nan, {"BUNIT": "nJy"})
    for k, (core, sky) in enumerate([(1e30, 1e-30), (3e38, 1.0), (-1e30, 1e-30),
                                     (1e25, 1e-25), (1e20, 1e-20), (3e38, 1e-3), (1e35, 1e-5),
                                     (-3e38, 1.0)]):
        data = rng.normal(0, sky, (100, 100)).astype(np.float32)
        data[45:55, 45:55] = core
        files[f"overflowing_{k}.fits"] = _image(data)
    files["tiny_3x3.fits"] = _image(noise[:3, :3], {"BUNIT": "nJy"})
    files["thin_1x100.fits"] = _image(noise[:1], {"BUNIT": "nJy"})
    files["spectrum_1d.fits"] = _image(noise[0], {"BUNIT": "nJy"})
    files["int8_garbage.fits"] = _image(rng.integers(0, 255, (100, 100), dtype=np.uint8))
    for k, (nx, ny, bitpix) in enumerate([(100000, 100000, -32), (10 ** 9, 1, -32),
                                          (2 ** 31 - 1, 2, 8), (65536, 65536, -64)]):
        files[f"huge_naxis_{k}.fits"] = _header_only(
            {"SIMPLE": "T", "BITPIX": bitpix, "NAXIS": 2, "NAXIS1": nx, "NAXIS2": ny}, 2880)
    files["huge_cube.fits"] = _header_only({"SIMPLE": "T", "BITPIX": -32, "NAXIS": 3,
                                            "NAXIS1": 50000, "NAXIS2": 50000, "NAXIS3": 50000})
    files["negative_naxis.fits"] = _header_only({"SIMPLE": "T", "BITPIX": -32, "NAXIS": 2,
                                                 "NAXIS1": -5, "NAXIS2": 100}, 2880)
    files["bad_bitpix.fits"] = _header_only({"SIMPLE": "T", "BITPIX": 7, "NAXIS": 2,
                                             "NAXIS1": 10, "NAXIS2": 10}, 2880)
    files["no_end_card.fits"] = _header_only({"SIMPLE": "T", "BITPIX": 8, "NAXIS": 0})[:800]
    for k, text in enumerate([b"hello", b"<html><body>404 Not Found</body></html>",
                              b"SIMPLE  =                    T", b"path,x,y\na.fits,1,2\n",
                              b'{"not": "fits"}', b"\x00" * 2880, b"\xff" * 5000,
                              rng.bytes(3000), rng.bytes(2880 * 3), b"\n" * 100,
                              b"\x1f\x8b gzip magic only", b"\x89PNG\r\n\x1a\n",
                              b"\xff\xd8\xff JPEG magic", b"%PDF-1.4", b"PK\x03\x04 zip"]):
        files[f"text_{k}.fits"] = text
    for suffix in (".fits", ".fit", ".fits.gz", ".fz", ".jpg", ".jpeg", ".png"):
        files[f"zero_size{suffix}"] = b""
    files["not_gzip.fits.gz"] = b"plain text, not gzip"
    files["truncated_gzip.fits.gz"] = gzip.compress(good)[:200]
    files["gzip_of_text.fits.gz"] = gzip.compress(b"hello " * 1000)
    files["text.fz"] = b"not a tile-compressed FITS"
    jpeg = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(jpeg, "JPEG")
    for k, data in enumerate([b"not a jpeg", good, jpeg.getvalue()[:100], rng.bytes(4000),
                              b"\xff\xd8\xff\xe0" + b"\x00" * 50]):
        files[f"not_a_jpeg_{k}.jpg"] = data
    files["png_header_only.png"] = b"\x89PNG\r\n\x1a\n"
    files["fits_named.png"] = good
    # Display images decode, but a morphology model made for fluxes refuses them.
    files["deep_16bit.png"] = _png(rng.integers(0, 65535, (64, 64), dtype=np.uint16))
    files["deep_16bit_bright.png"] = _png(np.full((64, 64), 60000, np.uint16))
    files["colour.jpg"] = jpeg.getvalue()
    return files


def _bad_table_rows(image: str) -> list[tuple[str, str, str, str]]:
    """(id, path, x, y) rows of a position table that must each give one error row."""
    rows = [("row_nan", image, "nan", "nan"), ("row_text", image, "abc", "10"),
            ("row_inf", image, "inf", "inf"), ("row_only_x", image, "10", ""),
            ("row_empty_path", "", "10", "10"), ("row_missing_file", "missing.fits", "1", "1"),
            ("row_folder", ".", "1", "1"), ("row_pipe", "../hostile/pipe_in_table.fits", "1", "1"),
            ("row_outside", image, "5000", "5000"), ("row_negative", image, "-1e9", "-1e9"),
            ("row_huge", image, "1e300", "1e300"), ("row_text_file", "../hostile/text_0.fits", "1", "1"),
            ("row_loop", "../hostile/loop_a.fits", "1", "1")]
    rows += [(f"row_outside_{k}", image, str(-50 - 10 * k), "50") for k in range(12)]
    return rows


def write_hostile_batch(root: Path, good_cutouts: list[Path]) -> tuple[list, dict]:
    """Write the hostile inputs into ``root`` (see the module docstring)."""
    folder = root / "hostile"
    folder.mkdir(parents=True)
    expected = {}
    for name, data in _hostile_files(good_cutouts[0].read_bytes()).items():
        (folder / name).write_bytes(data)
        expected[name] = "error"
    for name in ("pipe.fits", "pipe.png", "pipe.fits.gz", "pipe_in_table.fits"):
        os.mkfifo(folder / name)
        expected[name] = "error"
    for link, target in [("loop_a.fits", "loop_b.fits"), ("loop_b.fits", "loop_a.fits"),
                         ("self_loop.fits", "self_loop.fits"), ("dangling.fits", "gone.fits"),
                         ("dangling_dir.fits", "gone/")]:
        os.symlink(target, folder / link)
        expected[link] = "error"
    for raw in (b"text_\xff\xfe.fits", b"latin1_\xe9.fits", b"half_utf8_\xe2\x82.fits",
                b"control_\x1b[31m.fits"):
        Path(os.fsdecode(os.fsencode(folder) + b"/" + raw)).write_bytes(b"not FITS")
        expected[printable(os.fsdecode(raw))] = "error"
    (folder / "folder_named.fits").mkdir()  # a folder: searched, holds no images itself

    good = root / "good"
    good.mkdir()
    for path in good_cutouts:
        shutil.copy(path, good / path.name)
        expected[path.name] = "ok"
    for name in (os.fsdecode(b"good_\xe9\xff.fits"), "good\nnewline.fits", "good\ttab.fits"):
        shutil.copy(good_cutouts[0], good / name)
        expected[printable(name)] = "ok"

    table_rows = _bad_table_rows(good_cutouts[0].name)
    lines = ["path,id,x,y"] + [f"{p},{i},{x},{y}" for i, p, x, y in table_rows]
    lines += [f"{good_cutouts[1].name},row_good,,"]
    table = good / "positions.csv"
    table.write_text("\ufeff" + "\n".join(lines) + "\n", encoding="utf-8")  # as Excel does
    expected.update({i: "error" for i, *_ in table_rows})
    expected["row_good"] = "ok"

    broken_tables = {"junk.csv": np.random.default_rng(16).bytes(5000), "empty.csv": b"", "no_path.csv": b"a,b\n1,2\n",
                     "bad.ecsv": b"# %ECSV 1.0\n# ---\n# garbage: [\nx\n1\n",
                     "header_only.csv": b"path,x,y\n", "latin1.csv": b"path\n\xe9t\xe9.fits\n"}
    inputs = [folder, good, table]
    for name, data in broken_tables.items():
        (root / name).write_bytes(data)
        inputs.append(root / name)
        expected[name] = "error"
    os.mkfifo(root / "pipe_table.csv")
    inputs.append(root / "pipe_table.csv")
    expected["pipe_table.csv"] = "error"
    for name in ("empty_folder.fits", "empty_folder"):
        (root / name).mkdir()
        inputs.append(root / name)
        expected[name] = "error"
    direct = root / os.fsdecode(b"direct_\xff.fits")  # a non-UTF-8 name on the command line
    direct.write_bytes(b"truncated")
    inputs.append(direct)
    expected[printable(direct.name)] = "error"
    return [str(p) for p in inputs], expected
