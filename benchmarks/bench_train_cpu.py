"""Training throughput of a model on this CPU: images/s, achieved GFLOP/s and share of peak.

    python benchmarks/bench_train_cpu.py [--arch tiny] [--sizes 64,80,96] [--batch 64]
        [--steps 20] [--clock_ghz 2.45] [--torch]

Times whole training steps (forward, DLDL-v2 loss, backward, Adam update) of
tfdldl.models.build_model on batches already in memory (what ``data.in_memory`` feeds),
with and without XLA (``train.jit_compile``), at each input size. With ``--torch`` (and
PyTorch installed) the same layer layout written in PyTorch, channels_last, is timed as
the peer the training path must at least match.

FLOPs are counted from the layer shapes: 2 x multiply-accumulates of every convolution
and dense layer for the forward pass, x3 for forward + backward (the usual estimate).
Peak = cores x 2 FMA units x 8 fp32 lanes (AVX2) x 2 FLOP x clock; the clock defaults to
the "cpu MHz" that /proc/cpuinfo reports (say which one you used when you quote a share).
A benchmark, not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cpu_clock_ghz() -> float:
    """The clock /proc/cpuinfo reports for the first core, GHz (2.0 when unknown)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("cpu MHz"):
                    return float(line.split(":")[1]) / 1000.0
    except OSError:
        pass
    return 2.0


def peak_gflops(cores: int, clock_ghz: float) -> float:
    """fp32 peak of ``cores`` AVX2/FMA cores: cores x 2 FMA x 8 lanes x 2 FLOP x clock."""
    return cores * 2 * 8 * 2 * clock_ghz


def training_flops_per_image(model) -> float:
    """3 x forward FLOPs (2 x MACs of Conv2D and Dense layers) of one image."""
    import keras

    macs = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, height, width, channels_out = layer.output.shape
            kernel_h, kernel_w = layer.kernel_size
            macs += height * width * kernel_h * kernel_w * layer.input.shape[-1] * channels_out
        elif isinstance(layer, keras.layers.Dense):
            macs += layer.input.shape[-1] * layer.units
    return 3.0 * 2.0 * macs


def keras_rate(arch: str, size: int, batch: int, steps: int, jit: bool) -> tuple[float, float]:
    """(images/s, FLOPs per image) of Keras training steps on in-memory tensors."""
    import keras
    import numpy as np

    from tfdldl.label_space import AGE
    from tfdldl.heads import build_loss
    from tfdldl.models import build_model

    keras.utils.set_random_seed(0)
    model = build_model(arch, AGE, input_size=size)
    losses, weights = build_loss("dldl_v2", AGE)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=losses, loss_weights=weights,
                  jit_compile=jit)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (batch, size, size, 3)).astype("float32")
    ages = rng.uniform(0, 90, batch).astype("float32")
    targets = {"distribution": AGE.gaussian(ages, 2.0).astype("float32"), "value": ages}
    targets = {name: targets[name] for name in model.output_names}
    for _ in range(3):  # compile and warm up
        model.train_on_batch(images, targets)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(images, targets)
    return steps * batch / (time.perf_counter() - start), training_flops_per_image(model)


def torch_rate(size: int, batch: int, steps: int) -> float:
    """Images/s of the TinyAgeNet layout in PyTorch (channels_last, Adam, KL + L1)."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    layers, channels = [], 3
    for width, repeats in ((16, 2), (32, 2), (64, 3), (128, 3), (128, 3)):
        for _ in range(repeats):
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False),
                       nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            channels = width
        layers.append(nn.MaxPool2d(2))
    network = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                            nn.Linear(channels, 101)).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(network.parameters(), 1e-3)
    grid = torch.arange(101, dtype=torch.float32)
    images = (torch.rand(batch, 3, size, size) * 255).to(memory_format=torch.channels_last)
    ages = torch.rand(batch) * 90
    target = torch.softmax(-(grid[None] - ages[:, None]) ** 2 / 8.0, dim=1)

    def step():
        optimizer.zero_grad(set_to_none=True)
        log_p = torch.log_softmax(network(images / 255.0), dim=1)
        expectation = (log_p.exp() * grid).sum(1)
        loss = nn.functional.kl_div(log_p, target, reduction="batchmean") + \
            (expectation - ages).abs().mean()
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="tiny", choices=["tiny", "thin"])
    parser.add_argument("--sizes", default="64,80,96")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--clock_ghz", type=float, default=None)
    parser.add_argument("--torch", action="store_true", help="also time the PyTorch peer")
    args = parser.parse_args()
    clock = args.clock_ghz or cpu_clock_ghz()
    cores = os.cpu_count() or 1
    peak = peak_gflops(cores, clock)
    print(f"{args.arch}, batch {args.batch}, {args.steps} timed steps; peak {peak:.0f} GFLOP/s "
          f"({cores} cores x 2 FMA x 8 lanes x 2 FLOP x {clock:.2f} GHz)")
    print(f"{'size':>5} {'path':<14} {'images/s':>9} {'GFLOP/s':>8} {'of peak':>8}")
    for size in (int(s) for s in args.sizes.split(",")):
        flops = None
        for jit in (False, True):
            rate, flops = keras_rate(args.arch, size, args.batch, args.steps, jit)
            path = "TF + XLA" if jit else "TF"
            gflops = rate * flops / 1e9
            print(f"{size:>5} {path:<14} {rate:>9.1f} {gflops:>8.1f} {100 * gflops / peak:>7.1f}%",
                  flush=True)
        if args.torch and args.arch == "tiny":
            rate = torch_rate(size, args.batch, args.steps)
            gflops = rate * flops / 1e9
            print(f"{size:>5} {'PyTorch (CL)':<14} {rate:>9.1f} {gflops:>8.1f} "
                  f"{100 * gflops / peak:>7.1f}%", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
