"""Duplicate matching: the banded matcher against the former all-pairs one.

    python benchmarks/bench_duplicates.py --real [--images DIR] [--prints_cache FILE.npz]
    python benchmarks/bench_duplicates.py --derived 20000,100000,1000000 [--dense_max 100000]
    python benchmarks/bench_duplicates.py --synthetic 20000,100000,1000000 [--buckets]

``--real`` matches the fingerprints of a real folder (``--images``, UTKFace by default;
``--prints_cache`` keeps them for the next run). ``--derived`` makes n face-like
fingerprints from the real ones: each hash row (one row of the 16x16 gradient grid, plain
and mirrored alike) comes from a random real image, with 1 % of the images near-copies
of others (0..30 bits, plain or mirrored, half with a correlated thumbnail); the bits keep
the real biases and within-row correlations. ``--synthetic`` does the same with uniformly
random hashes.
Each matcher runs in a fresh process: seconds, CPU seconds, peak memory above the
fingerprints, pairs found, and whether both found the same pairs. Above ``--dense_max``
the all-pairs matcher is not run; its CPU time is projected as t(n0)·(n/n0)² from the
largest n0 it ran at on the same kind of fingerprints. The growth order between two sizes
is log(t2 / t1) / log(n2 / n1), over three sizes or more also the least-squares slope of
log t against log n (CPU seconds). ``--buckets`` adds the band plan's bucket sizes.
"""

import argparse
import math
import multiprocessing
import os
import resource
import time
from typing import Optional

import numpy as np

from data_prep import duplicates

DEFAULT_IMAGES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              os.pardir, "shared", "datasets", "utkface", "images")
PLANTED_SHARE = 0.01


def synthetic_prints(n: int, seed: int = 0, real: Optional[duplicates.Fingerprints] = None
                     ) -> duplicates.Fingerprints:
    """n fingerprints, uniformly random or (``real``) rows of real hashes; PLANTED_SHARE
    of them replaced by near-copies of others."""
    rng = np.random.default_rng(seed)
    if real is None:
        bits = rng.integers(0, 256, (n, duplicates.HASH_BYTES), dtype=np.uint8)
        mirror = rng.integers(0, 256, (n, duplicates.HASH_BYTES), dtype=np.uint8)
    else:  # 16 rows of 2 bytes: row r of image k from real image donors[k, r]
        donors = rng.choice(np.flatnonzero(real.readable), (n, 16))
        rows = np.arange(16)[None, :]
        bits = real.bits.reshape(-1, 16, 2)[donors, rows].reshape(n, duplicates.HASH_BYTES)
        mirror = real.mirror_bits.reshape(-1, 16, 2)[donors, rows].reshape(
            n, duplicates.HASH_BYTES)
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


def real_prints(folder: str, cache: str) -> duplicates.Fingerprints:
    """The fingerprints of the UTKFace images in ``folder`` (from ``cache`` when given and
    present; written there otherwise)."""
    if cache and os.path.isfile(cache):
        saved = np.load(cache)
        return duplicates.Fingerprints(list(saved["sha256"]), saved["readable"],
                                       saved["bits"], saved["mirror_bits"], saved["thumbs"])
    from data_prep.adapters import make_adapter
    from data_prep.adapters.base import Record

    paths = [item.path for item in make_adapter("utkface", root=folder).records()
             if isinstance(item, Record)]
    prints = duplicates.fingerprint(paths, 1)
    if cache:
        np.savez(cache, sha256=np.array(prints.sha256), readable=prints.readable,
                 bits=prints.bits, mirror_bits=prints.mirror_bits, thumbs=prints.thumbs)
    return prints


def bucket_sizes(prints: duplicates.Fingerprints, plan) -> str:
    """Per band of ``plan``: distinct values, the largest bucket, and the share of image
    pairs that share the band's exact value (Σ size² / n²) against 2**-width for uniform
    hashes; the mean over bands, one line."""
    values = plan.values(prints.bits[prints.readable])
    n = len(values)
    shares, uniform, largest, distinct = [], [], 0, 0
    for band, positions in enumerate(plan.bands):
        sizes = np.unique(values[:, band], return_counts=True)[1].astype(float)
        shares.append((sizes ** 2).sum() / n ** 2)
        uniform.append(2.0 ** -len(positions))
        largest, distinct = max(largest, int(sizes.max())), distinct + len(sizes)
    return (f"buckets: {distinct / len(plan.bands):.0f} distinct values per band, largest "
            f"{largest} images, pairs sharing a band value {np.mean(shares):.2e} per band "
            f"(uniform hashes: {np.mean(uniform):.2e})")


def _measure(args) -> dict:
    """In a fresh process: make or load the prints, run one matcher, report time and memory."""
    kind, n, method, threshold, images, cache, buckets = args
    real = real_prints(images, cache) if kind != "synthetic" else None
    prints = real if kind == "real" else synthetic_prints(n, real=real)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start, cpu = time.monotonic(), time.process_time()
    plan = ""
    if method == "banded":
        index = np.flatnonzero(prints.readable)
        chosen = duplicates.plan_for(prints.bits[index], prints.mirror_bits[index], threshold)
        pairs = duplicates.near_pairs(prints, threshold, chosen)
        plan = f"{chosen.describe()}; estimated meetings per pair {chosen.expected:.2e}"
        if buckets:
            plan += "; " + bucket_sizes(prints, chosen)
    else:
        pairs = duplicates.near_pairs_dense(prints, threshold)
    return {"seconds": time.monotonic() - start, "cpu": time.process_time() - cpu,
            "peak_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024,
            "pairs": pairs, "n": len(prints), "plan": plan}


def _run(*args) -> dict:
    """_measure in a child forked from this process before any matcher ran here (so
    its memory is its own; a forked child keeps this command line, by which process
    monitors tell the benchmark apart; spawned children would show Python's)."""
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:
        return pool.apply(_measure, (args,))


def main() -> None:
    """Parse the flags, time both matchers at each size, print one line per run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=os.path.normpath(DEFAULT_IMAGES),
                        help="a folder of UTKFace images: the real fingerprints")
    parser.add_argument("--real", action="store_true", help="match the real fingerprints")
    parser.add_argument("--derived", default="", help="comma-separated sizes, real-derived")
    parser.add_argument("--synthetic", default="", help="comma-separated sizes, uniform")
    parser.add_argument("--prints_cache", default="", help="an .npz for the real fingerprints")
    parser.add_argument("--threshold", type=int, default=duplicates.DEFAULT_NEAR_THRESHOLD)
    parser.add_argument("--dense_max", type=int, default=100_000,
                        help="largest n the all-pairs matcher is run at")
    parser.add_argument("--buckets", action="store_true",
                        help="also measure the band plan's bucket sizes (after the timing)")
    args = parser.parse_args()
    runs = [("real", 0)] if args.real else []
    runs += [(kind, int(size)) for kind in ("derived", "synthetic")
             for size in getattr(args, kind).split(",") if size]
    timings = {}
    for kind, n in runs:
        what = f"{kind} n={n}" if n else "real images"
        results = {}
        for method in ("dense", "banded"):
            points = timings.setdefault((kind, method), [])
            if method == "dense" and n > args.dense_max:
                if points:
                    n0, t0 = points[-1]
                    print(f"{what}: dense   projected {t0 * (n / n0) ** 2:9.0f} s CPU "
                          f"(from n={n0}, n^2)", flush=True)
                continue
            result = results[method] = _run(kind, n, method, args.threshold, args.images,
                                            args.prints_cache, args.buckets)
            points.append((result["n"], result["cpu"]))
            print(f"{what}: {method:6s} {result['seconds']:8.1f} s wall, {result['cpu']:8.1f} s "
                  f"CPU, peak +{result['peak_mb']:7.0f} MB, {len(result['pairs'])} pairs "
                  f"(n={result['n']}) {result['plan']}", flush=True)
        if len(results) == 2:
            print(f"{what}: same pairs: {results['dense']['pairs'] == results['banded']['pairs']}")
    for (kind, method), points in timings.items():
        for (n1, t1), (n2, t2) in zip(points, points[1:]):
            if n2 != n1:
                order = math.log(t2 / t1) / math.log(n2 / n1)
                print(f"{kind} {method}: time grows as n^{order:.2f} from n={n1} to n={n2}")
        if len({n for n, _ in points}) > 2:
            slope = np.polyfit(*np.log(np.array(points, float)).T, 1)[0]
            print(f"{kind} {method}: least-squares log-log slope over n="
                  f"{','.join(str(n) for n, _ in points)}: n^{slope:.2f}")


if __name__ == "__main__":
    main()
