"""Per-galaxy posterior cost of the shipped morphology model vs a GaMPEN-sized network.

GaMPEN (Ghosh et al. 2022) runs a VGG-16 with a spatial transformer on 239x239 stamps once per
posterior sample, 1000 times per galaxy. Galaxy Inspector runs its trunk once and samples only
the dropout head. Both are timed here, in the same process, on this machine's CPU threads.

    python benchmarks/posterior_cost.py [--model NAME|PATH] [--samples 500] [--galaxies 64]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

from galaxy_inspector.models.morphology import MorphologyModel


def vgg16_stn(n_out: int = 9) -> nn.Module:
    """VGG-16 (configuration D) with a small STN localisation net, 239x239 one-band input."""
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    layers, c = [], 1
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Dropout(0.001), nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=True)]
            c = v
    features = nn.Sequential(*layers)
    loc = nn.Sequential(nn.Conv2d(1, 8, 7), nn.MaxPool2d(2), nn.ReLU(), nn.Conv2d(8, 10, 5),
                        nn.MaxPool2d(2), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                        nn.Linear(160, 32), nn.ReLU(), nn.Linear(32, 6))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.loc, self.features = loc, features
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(512 * 7 * 7, 4096), nn.ReLU(),
                                      nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, n_out))

        def forward(self, x):
            theta = self.loc(x).view(-1, 2, 3)
            grid = nn.functional.affine_grid(theta, x.shape, align_corners=False)
            return self.head(self.features(nn.functional.grid_sample(x, grid,
                                                                     align_corners=False)))

    return Net()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="morphology-hsc-g")
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--galaxies", type=int, default=64)
    parser.add_argument("--gampen-passes", type=int, default=5,
                        help="VGG passes actually timed (the 1000-pass cost is extrapolated)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    model = MorphologyModel(args.model, device="cpu")
    rng = np.random.default_rng(0)
    stamps = rng.normal(0, 3, (args.galaxies, model.stamp_size, model.stamp_size))
    stamps = stamps.astype(np.float32)
    model.predict(stamps[:2], n_samples=args.samples)  # warm-up
    t0 = time.perf_counter()
    for x in stamps:
        model.predict(x, n_samples=args.samples)
    single = (time.perf_counter() - t0) / args.galaxies
    t0 = time.perf_counter()
    model.predict(stamps, n_samples=args.samples)
    batched = (time.perf_counter() - t0) / args.galaxies
    print(f"ours: {args.samples}-sample posterior, one galaxy per call: {1e3 * single:.1f} ms; "
          f"batched ({args.galaxies} per call): {1e3 * batched:.1f} ms per galaxy")
    vgg = vgg16_stn().eval()
    x = torch.zeros(1, 1, 239, 239)
    with torch.inference_mode():
        vgg(x)
        t0 = time.perf_counter()
        for _ in range(args.gampen_passes):
            vgg(x)
    per_pass = (time.perf_counter() - t0) / args.gampen_passes
    gampen = 1000 * per_pass
    print(f"GaMPEN-sized (VGG-16 + STN, 239x239): {per_pass:.3f} s per pass "
          f"(timed {args.gampen_passes}), 1000-pass posterior {gampen:.1f} s per galaxy")
    print(f"speed-up: {gampen / single:.0f}x one galaxy per call, "
          f"{gampen / batched:.0f}x batched")


if __name__ == "__main__":
    main()
