"""How much one network call takes: fixed on the CPU, from free memory on a GPU (testable here)."""

from __future__ import annotations

import numpy as np
import pytest

from galaxy_inspector.models import morphology
from galaxy_inspector.models.morphology import CallSizes, MorphologyModel, call_sizes

STAMP_PIXELS, FEATURES = 128 * 128, 257


def test_the_cpu_keeps_the_batches_catalogues_were_made_with():
    assert call_sizes("cpu", None, STAMP_PIXELS, 1, FEATURES) == CallSizes(64, 4096)
    assert call_sizes("cpu", None, STAMP_PIXELS, 8, FEATURES).galaxies == 32  # 256 views
    assert call_sizes("cpu", None, STAMP_PIXELS, 1, FEATURES, batch_size=5).galaxies == 5


def test_a_gpu_takes_calls_that_fit_its_free_memory():
    big = call_sizes("cuda", 100 * 2 ** 30, STAMP_PIXELS, 1, FEATURES)
    assert big.galaxies == morphology.GPU_MAX_TRUNK_STAMPS
    assert big.head_rows > 100 * morphology.CPU_HEAD_ROWS
    small = call_sizes("cuda", 200 * 2 ** 20, STAMP_PIXELS, 1, FEATURES)
    budget = morphology.GPU_MEMORY_SHARE * 200 * 2 ** 20 / 2
    assert small.galaxies == int(budget // (morphology.TRUNK_BYTES_PER_PIXEL * STAMP_PIXELS))
    assert small.galaxies * morphology.TRUNK_BYTES_PER_PIXEL * STAMP_PIXELS <= budget
    assert call_sizes("cuda", 200 * 2 ** 20, STAMP_PIXELS, 8, FEATURES).galaxies < small.galaxies
    # Almost no memory left: one stamp at a time, never none.
    assert call_sizes("cuda", 1000, STAMP_PIXELS, 1, FEATURES) == CallSizes(1, 4096)
    assert call_sizes("cuda", 100 * 2 ** 30, STAMP_PIXELS, 1, FEATURES,
                      batch_size=7).galaxies == 7


@pytest.mark.parametrize("head_rows", [64, 100, 10 ** 6])
def test_samples_do_not_depend_on_how_the_head_passes_are_split(tiny_bundle, monkeypatch,
                                                               head_rows):
    rng = np.random.default_rng(4)
    stamps = rng.normal(0, 3, (5, 128, 128)).astype(np.float32)
    model = MorphologyModel(tiny_bundle)
    whole = model.predict(stamps, n_samples=50, seed=3)
    monkeypatch.setattr(morphology, "CPU_HEAD_ROWS", head_rows)
    split = model.predict(stamps, n_samples=50, seed=3)
    np.testing.assert_array_equal(split.samples, whole.samples)
    np.testing.assert_array_equal(split.stn_scale, whole.stn_scale)
