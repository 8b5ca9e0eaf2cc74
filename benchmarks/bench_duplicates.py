"""Duplicate matching: the banded matcher against the former all-pairs one.

    python benchmarks/bench_duplicates.py --synthetic 20000,100000,1000000 [--dense_max 100000]
    python benchmarks/bench_duplicates.py --images DIR [--threshold 20] [--workers 1]

``--synthetic`` makes n fingerprints of uniformly random hashes and thumbnails, with
near-duplicates planted (1 % of the images get a copy 0..30 bits away, plain or mirrored,
half of them with a correlated thumbnail), and times each matcher in a fresh process:
seconds, peak memory above the fingerprints, pairs found, and whether both found the same
pairs. The growth order between two sizes is log(t2 / t1) / log(n2 / n1). ``--images``
does the same on a real folder (UTKFace by default) and also prints its groups.
"""

import argparse
import math
import multiprocessing
import os
import resource
import time

import numpy as np

from data_prep import duplicates

DEFAULT_IMAGES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              os.pardir, "shared", "datasets", "utkface", "images")
PLANTED_SHARE = 0.01


def synthetic_prints(n: int, seed: int = 0) -> duplicates.Fingerprints:
    """n random fingerprints; PLANTED_SHARE of them replaced by near-copies of others."""
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 256, (n, duplicates.HASH_BYTES), dtype=np.uint8)
    mirror = rng.integers(0, 256, (n, duplicates.HASH_BYTES), dtype=np.uint8)
    thumbs = rng.integers(0, 256, (n, duplicates.THUMB, duplicates.THUMB), dtype=np.uint8)
    copies = rng.choice(n, int(n * PLANTED_SHARE), replace=False)
    originals = rng.integers(0, n, len(copies))
    for copy, original in zip(copies, originals):
        flips = rng.choice(duplicates.HASH_BITS, rng.integers(0, 31), replace=False)
        noise = np.zeros(duplicates.HASH_BITS, np.uint8)
        noise[flips] = 1
        noise = np.packbits(noise)
        plain, flipped = bits[original], mirror[original]
        if rng.random() < 0.3:  # a mirrored copy
            plain, flipped = flipped, plain
        bits[copy], mirror[copy] = plain ^ noise, flipped ^ noise
        if rng.random() < 0.5:
            jitter = rng.integers(-6, 7, (duplicates.THUMB, duplicates.THUMB))
            thumbs[copy] = np.clip(thumbs[original].astype(int) + jitter, 0, 255)
    return duplicates.Fingerprints([""] * n, np.ones(n, bool), bits, mirror, thumbs)


def _measure(args) -> dict:
    """In a fresh process: make or load the prints, run one matcher, report time and memory."""
    source, method, threshold = args
    prints = (synthetic_prints(source) if isinstance(source, int)
              else duplicates.fingerprint(source, 1))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start, cpu = time.monotonic(), time.process_time()
    if method == "banded":
        pairs = duplicates.near_pairs(prints, threshold)
    else:
        pairs = duplicates.near_pairs_dense(prints, threshold)
    return {"seconds": time.monotonic() - start, "cpu": time.process_time() - cpu,
            "peak_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024,
            "pairs": pairs, "n": len(prints),
            "plan": duplicates.plan_bands(duplicates.wide_threshold(threshold),
                                          int(prints.readable.sum())).describe()}


def _run(source, method, threshold) -> dict:
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(_measure, ((source, method, threshold),))


def main() -> None:
    """Parse the flags, time both matchers at each size, print one line per run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", default="", help="comma-separated sizes")
    parser.add_argument("--images", default="", help="a folder of images (UTKFace names)")
    parser.add_argument("--threshold", type=int, default=duplicates.DEFAULT_NEAR_THRESHOLD)
    parser.add_argument("--dense_max", type=int, default=100_000,
                        help="largest n the all-pairs matcher is run at")
    args = parser.parse_args()
    sources = [int(size) for size in args.synthetic.split(",") if size]
    if args.images or not sources:
        from data_prep.adapters import make_adapter
        from data_prep.adapters.base import Record

        folder = args.images or os.path.normpath(DEFAULT_IMAGES)
        sources.append([item.path for item in make_adapter("utkface", root=folder).records()
                        if isinstance(item, Record)])
    timings = {"banded": [], "dense": []}
    for source in sources:
        n = source if isinstance(source, int) else len(source)
        what = f"synthetic n={n}" if isinstance(source, int) else f"{n} real images"
        results = {}
        for method in ("dense", "banded"):
            if method == "dense" and n > args.dense_max:
                print(f"{what}: dense skipped (n > --dense_max)", flush=True)
                continue
            result = results[method] = _run(source, method, args.threshold)
            if isinstance(source, int):  # growth over the synthetic sizes, CPU time
                timings[method].append((n, result["cpu"]))
            print(f"{what}: {method:6s} {result['seconds']:8.1f} s wall, {result['cpu']:8.1f} s "
                  f"CPU, peak +{result['peak_mb']:7.0f} MB, {len(result['pairs'])} pairs"
                  + (f" [{result['plan']}]" if method == "banded" else ""), flush=True)
        if len(results) == 2:
            print(f"{what}: same pairs: {results['dense']['pairs'] == results['banded']['pairs']}")
    for method, points in timings.items():
        for (n1, t1), (n2, t2) in zip(points, points[1:]):
            if n2 != n1:
                print(f"{method}: time grows as n^{math.log(t2 / t1) / math.log(n2 / n1):.2f} "
                      f"from n={n1} to n={n2}")


if __name__ == "__main__":
    main()
