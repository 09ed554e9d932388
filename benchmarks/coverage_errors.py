"""How far a model's intervals are from their stated coverage, bin by bin, from its report.

``galaxy-inspector-train evaluate`` writes the coverage of the 68.27 / 95.45 / 99.73 %
intervals of B/T, R_e and flux per bin of true seeing and of true flux (``report.json``, or the
``test`` block of a bundle's ``card.json``). Calibrations are compared here by the sum over
those bins, parameters and levels of the squared coverage errors, and by the worst one; bins of
fewer than ``MIN_BIN`` galaxies are left out (a bin of 200 scatters by 3 points at 68 % by
chance). Each score block is printed: log-uniform fluxes, GaMPEN's flux draw, PSF unknown.

    python benchmarks/coverage_errors.py resources/models/morphology-hsc-g/report/report.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

LEVELS = ("0.6827", "0.9545", "0.9973")
MIN_BIN = 200
BIN_KINDS = ("coverage_by_seeing", "coverage_by_flux")


def bin_errors(block: dict) -> tuple[float, float, str]:
    """(summed squared error, worst absolute error, where the worst is) of one score block."""
    total, worst, where = 0.0, 0.0, ""
    for kind in BIN_KINDS:
        for b in block.get(kind, []):
            if b["n"] < MIN_BIN:
                continue
            for parameter, coverage in b["coverage"].items():
                for level in LEVELS:
                    error = coverage[level] - float(level)
                    total += error * error
                    if abs(error) > worst:
                        worst = abs(error)
                        where = (f"{parameter} at {float(level):.2%} in {kind[12:]} "
                                 f"{b['range']}: {coverage[level]:.3f}")
    return total, worst, where


def score_blocks(report: dict) -> dict[str, dict]:
    """The score blocks of a report (or of a card's ``test``), by name."""
    report = report.get("test", report)
    blocks = {"log-uniform flux": report}
    blocks.update({name: block for name, block in report.items()
                   if isinstance(block, dict) and BIN_KINDS[1] in block})
    return blocks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("reports", nargs="+", type=Path, help="report.json or card.json files")
    args = parser.parse_args(argv)
    for path in args.reports:
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            sys.exit(f"{path}: {exc}")
        print(path)
        for name, block in score_blocks(report).items():
            total, worst, where = bin_errors(block)
            print(f"  {name:20s} summed squared {total:.4f}   worst {100 * worst:.1f} points"
                  f" ({where})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
