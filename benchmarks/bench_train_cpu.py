"""Training throughput of a model on this CPU: images/s, achieved GFLOP/s and share of peak.

    python benchmarks/bench_train_cpu.py [--arch tiny] [--sizes 64,80,96] [--batch 64]
        [--steps 20] [--paths tf,tf-onednn,xla,xla-onednn] [--rounds 2] [--clock_ghz 2.45]
        [--torch]

Times whole training steps (forward, DLDL-v2 loss, backward, Adam update) of
tfdldl.models.build_model on batches already in memory (what ``data.in_memory`` feeds),
at each input size, along the training paths of ``--paths`` (PATHS): TensorFlow with
its Eigen kernels or with oneDNN's (``TF_ENABLE_ONEDNN_OPTS``, which tfdldl.train sets:
tfdldl.cli.use_onednn), and
XLA (``train.jit_compile``) with its own kernels or oneDNN's (``XLA_FLAGS``). With
``--torch`` (and PyTorch installed) the same layer layout written in PyTorch,
channels_last, is timed as the peer the training path must at least match.

Each path runs in a process of its own (TensorFlow reads these settings once, when it
loads), and the paths take turns ``--rounds`` times, so that a load that comes and goes
on a busy machine falls on all of them alike; the median round is printed, as images/s of
wall time and images per CPU-second of the process (on a machine shared with other
jobs the second says more about the path: it does not count the time others ran).

FLOPs are counted from the layer shapes: 2 x multiply-accumulates of every convolution
and dense layer for the forward pass, x3 for forward + backward (the usual estimate).
Peak = cores x 2 FMA units x 8 fp32 lanes (AVX2) x 2 FLOP x clock; the clock defaults to
the "cpu MHz" that /proc/cpuinfo reports (say which one you used when you quote a share).
A benchmark, not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tfdldl.cli import ONEDNN_ENV  # noqa: E402  (the repository is on sys.path now)


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


# Training paths: (XLA on, environment TensorFlow loads with). TensorFlow turns oneDNN on
# by itself only on CPUs with AVX512-VNNI/BF16 or AMX, so "tf" is the default elsewhere.
XLA_ONEDNN_FLAGS = "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_custom_call=true"
PATHS = {
    "tf": (False, {ONEDNN_ENV: "0"}),
    "tf-onednn": (False, {ONEDNN_ENV: "1"}),
    "xla": (True, {ONEDNN_ENV: "0"}),
    "xla-onednn": (True, {ONEDNN_ENV: "0", "XLA_FLAGS": XLA_ONEDNN_FLAGS}),
}
TORCH = "torch"


def keras_rate(arch: str, size: int, batch: int, steps: int, jit: bool) -> dict:
    """Keras training steps on in-memory tensors: {"rate": images/s, "cpu_rate": images per
    CPU-second of this process, "flops": FLOPs per image}."""
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
    rates = timed(lambda: model.train_on_batch(images, targets), steps, batch)
    return {**rates, "flops": training_flops_per_image(model)}


def timed(step, steps: int, batch: int) -> dict:
    """{"rate": images/s, "cpu_rate": images per CPU-second} of ``steps`` calls of ``step``."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    return {"rate": steps * batch / (time.perf_counter() - wall),
            "cpu_rate": steps * batch / (time.process_time() - cpu)}


def torch_rate(size: int, batch: int, steps: int) -> dict:
    """:func:`timed` rates of the TinyAgeNet layout in PyTorch (channels_last, Adam, KL + L1)."""
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
    return timed(step, steps, batch)


def run_path(path: str, args: argparse.Namespace, size: int) -> dict:
    """One path's rates at ``size``, measured in a new process with the path's environment."""
    command = [sys.executable, os.path.abspath(__file__), "--one", path, "--sizes", str(size),
               "--arch", args.arch, "--batch", str(args.batch), "--steps", str(args.steps)]
    environment = {**os.environ, **(PATHS[path][1] if path in PATHS else {})}
    done = subprocess.run(command, env=environment, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        raise RuntimeError(f"path {path} at {size} px failed:\n{done.stderr[-2000:]}")
    return json.loads(lines[-1])


def measure_one(args: argparse.Namespace) -> dict:
    """The rates of ``args.one`` in this process (the child side of :func:`run_path`)."""
    size = int(args.sizes)
    if args.one == TORCH:
        return torch_rate(size, args.batch, args.steps)
    return keras_rate(args.arch, size, args.batch, args.steps, jit=PATHS[args.one][0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="tiny", choices=["tiny", "thin"])
    parser.add_argument("--sizes", default="64,80,96")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--paths", default="tf,tf-onednn,xla",
                        help=f"comma-separated, of {', '.join(PATHS)}")
    parser.add_argument("--rounds", type=int, default=1, help="turns each path takes")
    parser.add_argument("--clock_ghz", type=float, default=None)
    parser.add_argument("--torch", action="store_true", help="also time the PyTorch peer")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(args)))
        return 0
    paths = [path.strip() for path in args.paths.split(",") if path.strip()]
    unknown = sorted(set(paths) - set(PATHS))
    if unknown or not paths:
        parser.error(f"unknown or no path(s) {', '.join(unknown)}; choose from {', '.join(PATHS)}")
    if args.torch and args.arch == "tiny":
        paths.append(TORCH)
    clock = args.clock_ghz or cpu_clock_ghz()
    cores = os.cpu_count() or 1
    peak = peak_gflops(cores, clock)
    print(f"{args.arch}, batch {args.batch}, {args.steps} timed steps, {args.rounds} round(s), "
          f"load average {os.getloadavg()[0]:.1f}; peak {peak:.0f} GFLOP/s "
          f"({cores} cores x 2 FMA x 8 lanes x 2 FLOP x {clock:.2f} GHz)")
    print(f"{'size':>5} {'path':<12} {'images/s':>9} {'GFLOP/s':>8} {'of peak':>8} "
          f"{'img/CPU-s':>10}")
    for size in (int(s) for s in args.sizes.split(",")):
        rounds = {path: [] for path in paths}
        for _ in range(args.rounds):
            for path in paths:
                rounds[path].append(run_path(path, args, size))
        flops = next(r[0]["flops"] for r in rounds.values() if "flops" in r[0])
        for path, results in rounds.items():
            rate = statistics.median(r["rate"] for r in results)
            cpu_rate = statistics.median(r["cpu_rate"] for r in results)
            gflops = rate * flops / 1e9
            print(f"{size:>5} {path:<12} {rate:>9.1f} {gflops:>8.1f} "
                  f"{100 * gflops / peak:>7.1f}% {cpu_rate:>10.1f}", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
