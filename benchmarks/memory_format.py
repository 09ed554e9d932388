"""Milliseconds per batch of the two convolution layouts, contiguous (NCHW) and channels_last (NHWC).

Times one training step (forward, backward, clipped AdamW step: ``training.loop``'s
``optimisation_step``) of the morphology network and of the property ResNet at their default
sizes and batches, and a forward pass of each at inference. The figure is the fastest of
``--repeats`` batches (as ``timeit`` advises: slower ones measure other load on the machine),
over ``--rounds`` rounds that alternate the layouts. Each measurement runs in its own child
process, so a layout that crashes (the oneDNN channels_last backward on AVX2-only CPUs) is
reported as a crash instead of ending the benchmark. ``--onednn-isa AVX2`` caps oneDNN at AVX2,
making the kernels of an AVX2-only CPU (AMD EPYC) run on this one.

    python benchmarks/memory_format.py [--device cpu|cuda] [--repeats 5] [--rounds 2]
                                       [--threads N] [--onednn-isa AVX2]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import signal
import time

LAYOUTS = ("contiguous", "channels_last")
CASES = {  # name: (network, batch, inference only)
    "morphology training step": ("morphology", 128, False),
    "property ResNet training step": ("property", 64, False),
    "morphology inference": ("morphology", 64, True),
    "property ResNet inference": ("property", 64, True),
}


def _network_and_batch(network: str, batch: int):
    """A network at its training defaults and a batch of its input, with a loss for it."""
    import torch

    from galaxy_inspector.models.morphology_network import MorphologyNet, gaussian_nll_ldl
    from galaxy_inspector.physical_properties.networks import PropertyResNet
    from training.properties.cnn import CNNConfig
    from training.train import default_hyperparameters

    generator = torch.Generator().manual_seed(0)
    if network == "morphology":
        hyper = default_hyperparameters()
        size = hyper["stamp_size"]
        x = 5.0 * torch.randn(batch, 1, size, size, generator=generator)
        y = torch.randn(batch, hyper["n_params"], generator=generator)
        return MorphologyNet(**hyper), x, lambda out: gaussian_nll_ldl(out, y).mean()
    config = CNNConfig()
    x = torch.rand(batch, 3, 64, 64, generator=generator)  # the simulated survey's stamps
    y = torch.randn(batch, 2, generator=generator)
    net = PropertyResNet(**config.hyperparameters(3, 2))
    return net, x, lambda out: ((out[:, :2] - y) ** 2).mean()


def _time(case: str, layout: str, device: str, repeats: int, threads: int, result) -> None:
    """Child process: put the fastest batch's milliseconds into ``result``."""
    import torch

    torch.set_num_threads(threads)
    from training.loop import optimisation_step

    network, batch, inference = CASES[case]
    memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    net, x, loss = _network_and_batch(network, batch)
    net = net.to(device, memory_format=memory_format)
    x = x.to(device).contiguous(memory_format=memory_format)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0)

    def run_once():
        if inference:
            with torch.no_grad():
                net.eval()(x)
        else:
            optimisation_step(loss(net.train()(x)), net, optimizer, scheduler)
        if device == "cuda":
            torch.cuda.synchronize()

    run_once()  # warm-up: kernel selection, allocations
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run_once()
        times.append(1e3 * (time.perf_counter() - t0))
    result.value = min(times)


def measure(case: str, layout: str, device: str, repeats: int, threads: int) -> float | str:
    """The child's milliseconds, or how it died."""
    context = mp.get_context("spawn")
    result = context.Value("d", float("nan"))
    child = context.Process(target=_time, args=(case, layout, device, repeats, threads, result))
    child.start()
    child.join()
    if child.exitcode < 0:
        return f"crashed ({signal.Signals(-child.exitcode).name})"
    if child.exitcode:
        return f"failed (exit {child.exitcode})"
    return result.value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--onednn-isa", help="ONEDNN_MAX_CPU_ISA for the children, e.g. AVX2")
    args = parser.parse_args()
    if args.onednn_isa:
        os.environ["ONEDNN_MAX_CPU_ISA"] = args.onednn_isa
    import torch

    print(f"torch {torch.__version__}, device {args.device}, {args.threads} threads, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', '(unset)')}")
    print(f"{'ms per batch (batch size)':36s}" + "".join(f"{layout:>16s}" for layout in LAYOUTS)
          + f"{'NHWC/NCHW':>11s}")
    for case, (_, batch, _) in CASES.items():
        best = {layout: float("inf") for layout in LAYOUTS}
        for _ in range(args.rounds):
            for layout in LAYOUTS:
                if isinstance(best[layout], str):
                    continue  # a crash stays the answer
                ms = measure(case, layout, args.device, args.repeats, args.threads)
                best[layout] = ms if isinstance(ms, str) else min(best[layout], ms)
        cells = [f"{v:.1f}" if isinstance(v, float) else v for v in best.values()]
        numbers = [v for v in best.values() if isinstance(v, float)]
        ratio = f"{numbers[1] / numbers[0]:.2f}" if len(numbers) == 2 else "-"
        print(f"{f'{case} ({batch})':36s}" + "".join(f"{c:>16s}" for c in cells) + f"{ratio:>11s}")


if __name__ == "__main__":
    main()
