"""DS9 regions: a catalogue's galaxies written (sky where rows have ra/dec, else image pixels
1-based as DS9 counts) and read back 0-based; DS9's own files read; the CLI's exit codes; the
GUI's "Load regions…" measuring every region through the batch."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from interop_catalogue import PIXEL_SCALE, ROWS, write_catalogue

from galaxy_inspector.catalogue import export_catalogue, read_catalogue
from galaxy_inspector.catalogue.regions import (
    RegionPosition,
    pixel_positions,
    read_positions,
    write_regions,
)
from galaxy_inspector.cli import main
from galaxy_inspector.errors import InputError
from galaxy_inspector.io import SkyImage

SHAPE = re.compile(r"^(\w+); (\w+)\(([^)]*)\) # text=\{([^}]*)\} tag=\{([^}]*)\}$")


@pytest.fixture
def catalogue(tmp_path):
    return write_catalogue(tmp_path / "cat.h5")


def _lines(path) -> list[tuple[str, str, list[float], str, str]]:
    """(frame, shape, numbers, text, tag) of each region line, parsed here, not by regions."""
    out = []
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        frame, shape, numbers, text, tag = SHAPE.match(line).groups()
        out.append((frame, shape, [float(v) for v in numbers.split(",")], text, tag))
    return out


def test_circles_of_re_on_the_sky_and_in_1_based_image_pixels(catalogue, tmp_path):
    out = tmp_path / "cat.reg"
    assert export_catalogue(catalogue, out) == 3  # the error row has no galaxy to draw
    (g1, g2, p1) = _lines(out)
    assert g1[:2] == ("icrs", "circle") and g1[2][:2] == [150.1, 2.2]
    assert g1[2][2] * 3600 == pytest.approx(1.5, abs=1e-4)  # R_e mode in arcsec
    assert g1[3] == "g1; highly bulge-dominated; B/T=0.81" and g1[4] == "field.fits"
    assert g2[3] == "g2; B/T=0.12"  # no label: nothing between
    # No WCS: DS9 image coordinates count from 1, so our 0-based (10.5, 20.25) is (11.5, 21.25),
    # and the radius is R_e in pixels.
    assert p1[:2] == ("image", "circle")
    assert p1[2][:2] == [11.5, 21.25] and p1[2][2] == pytest.approx(1.68 / PIXEL_SCALE)
    assert p1[3] == "p1; disk (odd); B/T=0.40"  # DS9 ends a text at "}"
    back = read_positions(out)
    assert [p.name for p in back] == ["g1", "g2", "p1"]
    assert (back[0].ra, back[0].dec, back[0].x) == (pytest.approx(150.1), pytest.approx(2.2),
                                                   None)
    assert (back[2].x, back[2].y, back[2].ra) == (10.5, 20.25, None)


def test_region_text_is_ascii_for_older_ds9(tmp_path):
    """The app's size label says "R_e < 1″"; DS9 before 8.1 reads region files as Latin-1."""
    small = ("s1", "/data/field.fits", "ok", "R_e < 0.98″", 1.0, 2.0, 150.1, 2.2, 0.4, 0.3, 9.0)
    out = tmp_path / "small.reg"
    export_catalogue(write_catalogue(tmp_path / "small.h5", [small]), out)
    assert out.read_bytes().isascii()
    assert "text={s1; R_e < 0.98 arcsec; B/T=0.30}" in out.read_text()


def test_boxes_are_the_stn_crop_north_up(catalogue, tmp_path):
    out = tmp_path / "crops.reg"
    assert write_regions(catalogue, out, shape="box") == 3
    (g1, _, p1) = _lines(out)
    assert g1[:2] == ("icrs", "box")
    ra, dec, width, height, angle = g1[2]
    assert (ra, dec, angle) == (150.1, 2.2, 0.0)
    assert width * 3600 == pytest.approx(30 * PIXEL_SCALE, rel=1e-4) and width == height
    assert p1[:2] == ("image", "box") and p1[2] == [11.5, 21.25, 16.0, 16.0, 0.0]


def test_rows_without_re_are_points_and_unknown_shapes_or_empty_catalogues_refused(tmp_path):
    no_re = [r[:8] + (np.nan,) + r[9:] for r in ROWS]
    path = write_catalogue(tmp_path / "props.h5", no_re)
    out = tmp_path / "props.reg"
    write_regions(path, out)
    assert {shape for _, shape, *_ in _lines(out)} == {"point"}
    with pytest.raises(InputError, match="use one of circle, box"):
        write_regions(path, out, shape="ellipse")
    failed = write_catalogue(tmp_path / "failed.h5", [ROWS[-1]])
    with pytest.raises(InputError, match="no measured galaxy"):
        write_regions(failed, tmp_path / "none.reg")


def test_a_file_ds9_wrote_gives_included_centres_in_0_based_pixels_or_icrs(tmp_path):
    path = tmp_path / "ds9.reg"
    path.write_text(
        "# Region file format: DS9 version 4.1\n"
        'global color=green dashlist=8 3 width=1 font="helvetica 10 normal roman" select=1 '
        "highlite=1 dash=0 fixed=0 edit=1 move=1 delete=1 include=1 source=1\n"
        "fk5\n"
        'circle(150.1000000,2.2000000,1.5") # text={NGC 1}\n'
        "galactic\n"
        "point(236.8,42.1) # point=x\n"
        "image\n"
        "-circle(5,5,2)\n"
        "polygon(1,1,5,1,5,5,1,5) # text={patch; a note}\n")
    fk5, gal, patch = read_positions(path)
    assert fk5.name == "NGC 1" and fk5.ra == pytest.approx(150.1, abs=1e-5)
    assert gal.name == "region 2" and gal.x is None and math.isfinite(gal.ra)
    assert (patch.name, patch.x, patch.y) == ("patch", 2.0, 2.0)  # DS9 (3, 3) -> 0-based (2, 2)


def test_positions_placed_on_an_image_through_its_wcs_and_refused_without_one():
    from astropy.wcs import WCS

    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval, wcs.wcs.crpix = [150.1, 2.2], [51.0, 51.0]
    wcs.wcs.cdelt = [-PIXEL_SCALE / 3600, PIXEL_SCALE / 3600]
    with_wcs = SkyImage.from_array(np.zeros((100, 100), np.float32), PIXEL_SCALE, wcs=wcs)
    positions = [RegionPosition("sky", ra=150.1, dec=2.2), RegionPosition("pix", x=3.0, y=4.0)]
    placed, reasons = pixel_positions(positions, with_wcs)
    assert reasons == [] and placed[1] == ("pix", 3.0, 4.0)
    assert placed[0][1:] == (pytest.approx(50.0), pytest.approx(50.0))  # CRPIX 51 is 0-based 50
    bare = SkyImage.from_array(np.zeros((100, 100), np.float32), PIXEL_SCALE)
    placed, reasons = pixel_positions(positions, bare)
    assert [p[0] for p in placed] == ["pix"] and "no WCS" in reasons[0]


def test_an_unreadable_region_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.reg"
    bad.write_text("circle(1,2\n")
    with pytest.raises(InputError) as error:
        read_positions(bad)
    assert "\n" not in str(error.value)
    with pytest.raises(InputError, match="no such file"):
        read_positions(tmp_path / "missing.reg")


def _exit_and_error(capsys, argv) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def test_cli_export_to_reg_exit_codes(catalogue, tmp_path, capsys):
    out = tmp_path / "out.reg"
    code, err = _exit_and_error(capsys, ["--export", str(catalogue), str(out)])
    assert code == 0 and "3 regions ->" in err and _lines(out)[0][1] == "circle"
    code, _ = _exit_and_error(capsys, ["--export", str(catalogue), str(out),
                                       "--region-shape", "box"])
    assert code == 0 and _lines(out)[0][1] == "box"
    failed = write_catalogue(tmp_path / "failed.h5", [ROWS[-1]])
    for argv, message in [
            (["--export", str(failed), str(out)], "no measured galaxy"),
            (["--export", str(catalogue)], "--export CAT.h5 --samp"),
            (["--export", str(catalogue), str(out), "--samp"], "--export CAT.h5 OUT"),
            (["--export", str(catalogue), str(tmp_path / "nope" / "x.reg")], "cannot write")]:
        code, err = _exit_and_error(capsys, argv)
        assert code == 1 and message in err and err.count("\n") == 1, argv


@pytest.mark.gui
@pytest.mark.slow
def test_load_regions_marks_them_and_measures_each_through_the_batch(
        qtbot, make_main_window, sample_paths, tmp_path):
    window = make_main_window()
    path = str(sample_paths["field_3gal.fits"])
    window.open_file(path)
    qtbot.waitUntil(lambda: window.state.path == path, timeout=30_000)
    image = window.state.image
    ny, nx = image.shape
    ra, dec = image.pixel_to_sky((nx - 1) / 2, (ny - 1) / 2)
    regions = tmp_path / "targets.reg"
    regions.write_text(f"icrs\ncircle({ra},{dec},1\") # text={{centre}}\n"
                       f"image\npoint({nx / 2 + 1},{ny / 2 + 1}) # text={{pixel; by hand}}\n")
    dialog = window.regions.load(regions)
    assert dialog is not None, window.statusBar().currentMessage()
    xs, ys = window.regions.marks.getData()
    assert list(xs) == [pytest.approx((nx - 1) / 2, abs=1e-6), nx / 2]
    assert list(ys)[1] == ny / 2
    qtbot.waitUntil(lambda: dialog.result is not None, timeout=180_000)
    assert not (tmp_path / "targets.h5").exists()  # CAT.reg's own CAT.h5 is never the output
    table = read_catalogue(tmp_path / "targets.reg.measured.h5")
    assert list(table["id"]) == ["centre", "pixel"]
    assert table["x"][0] == pytest.approx((nx - 1) / 2, abs=1e-6)
    assert list(table["status"]) == ["ok", "ok"], list(table["error"])
    window.open_file(str(sample_paths["plain_njy.fits"]))
    qtbot.waitUntil(lambda: len(window.regions.marks.getData()[0]) == 0, timeout=30_000)


@pytest.mark.gui
@pytest.mark.slow
def test_regions_over_a_cube_band_are_measured_on_that_plane(qtbot, make_main_window,
                                                            sample_paths, tmp_path):
    """A click measures the plane shown; so do regions loaded over it."""
    window = make_main_window()
    path = str(sample_paths["cube_gri.fits"])
    window.open_file(path)
    qtbot.waitUntil(lambda: window.state.path == path, timeout=30_000)
    window.state.band = 2
    ny, nx = window.state.image.shape
    regions = tmp_path / "cube.reg"
    regions.write_text(f"image\npoint({(nx + 1) / 2},{(ny + 1) / 2}) # text={{centre}}\n")
    dialog = window.regions.load(regions)
    assert dialog is not None, window.statusBar().currentMessage()
    assert (dialog.options().plane, window.state.image.plane) == (2, 2)
    assert "plane 2" in window.statusBar().currentMessage()
    qtbot.waitUntil(lambda: dialog.result is not None, timeout=180_000)
    assert list(read_catalogue(tmp_path / "cube.reg.measured.h5")["status"]) == ["ok"]
