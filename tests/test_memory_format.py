"""Convolution layouts: channels_last only on CUDA (issue 12).

The oneDNN channels_last convolution backward of the pinned torch corrupts the heap where
oneDNN runs its AVX2 kernels: AMD EPYC machines (AVX2 is their best instruction set) abort in
the 50-step training loop of the issue ("double free or corruption", SIGABRT). Capping oneDNN at
AVX2 (``ONEDNN_MAX_CPU_ISA=AVX2``) on one thread runs the same kernels on an AVX-512 Intel CPU,
and the loop dies there too (3 of 3 runs on the Xeon this was written on); ``=AVX``, contiguous
tensors or ``torch.backends.mkldnn.enabled = False`` avoid it. The loops run in child processes
(``run_isolated``), so a crash fails one test instead of ending the run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from galaxy_inspector.models.memory_format import memory_format_for
from galaxy_inspector.models.morphology import MorphologyModel
from galaxy_inspector.physical_properties.networks import PropertyResNet
from training.loop import optimisation_step
from training.properties.cnn import CNNConfig, train_cnn

#: The crash's conditions on any x86 CPU with AVX2: oneDNN's AVX2 kernels, one thread.
AVX2_KERNELS = {"ONEDNN_MAX_CPU_ISA": "AVX2", "OMP_NUM_THREADS": "1"}
#: The loop of the issue: the property ResNet with these widths, 50 AdamW steps on one batch.
WIDTHS, BATCH_SHAPE, STEPS = (4, 4, 8, 8), (14, 3, 16, 16), 50


def _issue_batches(n_batches: int = 1):
    """Stamps ``(n_batches * 14, 3, 16, 16)`` and two targets for each."""
    rng = np.random.default_rng(0)
    n = n_batches * BATCH_SHAPE[0]
    return (rng.normal(size=(n, *BATCH_SHAPE[1:])).astype(np.float32),
            rng.normal(size=(n, 2)).astype(np.float32))


def _layout(tensor: torch.Tensor) -> str:
    return "contiguous" if tensor.is_contiguous() else "channels_last"


def _train_recording_layouts(folder: Path) -> set:
    """In a child: the issue's loop through the project's training code (``train_cnn``, one
    epoch of 50 batches); the layouts its convolutions saw, as (input, weight) pairs."""
    x, y = _issue_batches(STEPS)
    seen = set()

    def record(module, inputs):
        if isinstance(module, torch.nn.Conv2d):
            seen.add((_layout(inputs[0]), _layout(module.weight)))

    hook = torch.nn.modules.module.register_module_forward_pre_hook(record)
    try:
        config = CNNConfig(epochs=1, batch_size=BATCH_SHAPE[0], widths=list(WIDTHS), hidden=8,
                           threads=1)
        model, _ = train_cnn(x, y, x[:BATCH_SHAPE[0]], y[:BATCH_SHAPE[0]], folder, config)
    finally:
        hook.remove()
    assert model is not None
    return seen


def _unfixed_loop() -> None:
    """In a child: the issue's loop as it was, weights and batch in channels_last."""
    x, y = (torch.from_numpy(a) for a in _issue_batches())
    torch.manual_seed(0)
    model = PropertyResNet(3, 2, widths=WIDTHS, hidden=8).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=STEPS)
    x = x.contiguous(memory_format=torch.channels_last)
    for _ in range(STEPS):
        optimisation_step(((model(x)[:, :2] - y) ** 2).mean(), model, optimizer, scheduler)


def _cpu_vendor() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f
                         if line.startswith("vendor_id")), "unknown")
    except OSError:
        return "unknown"


def test_channels_last_only_on_cuda_and_loaded_models_are_contiguous_on_the_cpu(tiny_bundle):
    assert memory_format_for("cpu") == torch.contiguous_format
    assert memory_format_for(torch.device("cuda", 1)) == torch.channels_last
    model = MorphologyModel(tiny_bundle, device="cpu")
    assert all(p.is_contiguous() for p in model.network.parameters())


@pytest.mark.slow
def test_the_issue_training_loop_runs_contiguous_and_survives_avx2_kernels(
        tmp_path, run_isolated):
    layouts = run_isolated(_train_recording_layouts, tmp_path, env=AVX2_KERNELS)
    assert layouts == {("contiguous", "contiguous")}


@pytest.mark.slow
def test_the_unfixed_channels_last_loop_dies_where_the_cpu_is_affected(run_isolated):
    capability = torch.backends.cpu.get_cpu_capability()
    if capability not in ("AVX2", "AVX512"):
        pytest.skip(f"this CPU ({capability}) cannot run oneDNN's AVX2 kernels: not affected")
    try:
        run_isolated(_unfixed_loop, env=AVX2_KERNELS)
    except pytest.fail.Exception as died:
        assert "SIGABRT" in str(died) or "SIGSEGV" in str(died)
        return
    vendor = _cpu_vendor()
    assert vendor != "AuthenticAMD", "the issue's crash did not happen on an AMD AVX2 CPU"
    pytest.skip(f"the channels_last loop survived on this {vendor} CPU with oneDNN at AVX2: "
                "this CPU is not affected")
