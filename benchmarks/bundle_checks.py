"""What checking a bundle at load costs: the card schema, and for a LightGBM (cnn+gbm) property
bundle the structure check of its model texts plus the spawned child that parses them.

    python benchmarks/bundle_checks.py [BUNDLE ...]   (default: the shipped bundles)

Prints, per bundle, the median of 3 loads of the whole model (``MorphologyModel`` or
``PropertyModel``), of ``validate_card`` alone, and of ``verify_models`` alone.
"""

from __future__ import annotations

import statistics
import sys
import time


def _median_seconds(action, *args, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _report(name: str) -> str:
    from galaxy_inspector.engine import load_models
    from galaxy_inspector.models.bundle import load_bundle, validate_card
    from galaxy_inspector.physical_properties.gbm_text import verify_models
    from galaxy_inspector.physical_properties.model import gbm_feature_count

    bundle = load_bundle(name)
    load_models([name])  # warm: imports, first use of torch
    line = (f"{bundle.name}: model load {_median_seconds(load_models, [name]):.3f} s, card "
            f"schema {_median_seconds(validate_card, bundle.card) * 1e3:.1f} ms")
    texts = {k: v.tobytes().decode() for k, v in bundle.tensors.items() if k.startswith("gbm.")}
    if texts:
        seconds = _median_seconds(verify_models, texts, gbm_feature_count(bundle.card["gbm"]))
        line += f", LightGBM checks {seconds:.3f} s ({len(texts)} models)"
    return line


def main(names) -> None:
    from galaxy_inspector.models.bundle import shipped_bundles

    for name in names or list(shipped_bundles()):
        print(_report(name))


if __name__ == "__main__":
    main(sys.argv[1:])
