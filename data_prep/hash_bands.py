"""Candidate pairs of 256-bit hashes within a Hamming radius, without comparing all pairs.

Multi-index hashing with the general pigeonhole principle: the 256 bit positions are cut
into m bands and each band gets a number of flips t. Two hashes at most ``radius`` bits
apart differ in at most t bits of at least one band whenever m·(t + 1) > radius (if every
band differed in t + 1 bits or more, they would differ in m·(t + 1) bits). So each image's
plain hash is indexed under its exact value in every band, every query hash (plain or
mirrored) probes each band's value with every set of up to t bits flipped, and every pair
within the radius meets at least once: none can be missed. Each (band, probe) meets an
image pair at most once (the probe names the exact bits where they differ), and the range
of a probe is cut to the images that the matching rule pairs with the query (higher for
plain queries, lower for mirrored ones), so no pair is emitted twice per band. Candidates
are verified exactly (XOR and popcount of the four 64-bit words).

Which bits form a band is chosen from the hashes' statistics (:class:`HashStats`): real
dHashes of aligned faces are far from uniform (some bits are set on ~95 % of faces and
neighbouring gradients move together), and a band of biased or correlated bits puts most
pairs into the same bucket. :func:`plan_bands` spreads the bits so that every band holds
about the same information (bits sorted by how often two random images differ there, each
given to the band with the least so far) and keeps positively correlated bits apart. The
choice only moves work: any partition keeps the guarantee above. The statistics are sums
over images, so a Beam pipeline combines them exactly (``beam.CombineGlobally``).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Iterator, Optional

import numpy as np

HASH_BITS = 256
_MAX_WIDTH = 24  # band values are shifted by the image count: value·n + image < 2**63
# Relative cost of one probe (table look-up, sometimes a binary search) and of one
# candidate pair (filter and verify), for plan_bands(): about 70 and 90 ns on this
# machine, from 20,148 UTKFace hashes with 1 and 2 flips (benchmarks/bench_duplicates.py).
_PROBE_COST, _PAIR_COST = 0.75, 1.0
_CORRELATION_WEIGHT = 3.0  # how strongly correlated bits are kept apart
_ROWS = 1 << 20  # probes (query x flip) handled at once
_PAIRS = 1 << 22  # candidate pairs verified at once
_CUT = 16  # longer probe ranges are cut by a binary search, shorter ones filtered


@dataclasses.dataclass
class HashStats:
    """Sums over n images of their unpacked plain and mirrored hash bits (int64).

    Attributes:
      count: n.
      ones: [2, 256], images with each bit set (row 0 plain, row 1 mirrored).
      both: [2, 256, 256], images with both bits k and l set.
    """

    count: int
    ones: np.ndarray
    both: np.ndarray

    @classmethod
    def empty(cls) -> "HashStats":
        return cls(0, np.zeros((2, HASH_BITS), np.int64),
                   np.zeros((2, HASH_BITS, HASH_BITS), np.int64))

    @classmethod
    def of(cls, bits: np.ndarray, mirror_bits: np.ndarray) -> "HashStats":
        """Statistics of packed hashes uint8 [n, 32] (plain) and [n, 32] (mirrored)."""
        stats = cls.empty()
        for start in range(0, len(bits), 4096):  # float32 counts are exact below 2**24
            for row, packed in enumerate((bits[start:start + 4096],
                                          mirror_bits[start:start + 4096])):
                unpacked = np.unpackbits(packed, axis=1).astype(np.float32)
                stats.ones[row] += unpacked.sum(axis=0).astype(np.int64)
                stats.both[row] += np.rint(unpacked.T @ unpacked).astype(np.int64)
        stats.count = len(bits)
        return stats

    def merge(self, other: "HashStats") -> "HashStats":
        """The statistics of both sets of images."""
        return HashStats(self.count + other.count, self.ones + other.ones,
                         self.both + other.both)

    def differences(self) -> tuple[np.ndarray, np.ndarray]:
        """For two random images (plain-plain and plain-mirrored pairs, averaged):
        P(bit k differs) [256] and the correlation of "k differs" with "l differs"
        [256, 256] (zero diagonal). Uniform independent bits without images."""
        if self.count == 0:
            return np.full(HASH_BITS, 0.5), np.zeros((HASH_BITS, HASH_BITS))
        a = self.ones / self.count  # [2, 256]
        joint = self.both / self.count  # [2, 256, 256]
        probability = np.zeros(HASH_BITS)
        together = np.zeros((HASH_BITS, HASH_BITS))
        for other in (0, 1):  # x plain, y plain or mirrored: P(x_k != y_k, x_l != y_l)
            x = _cells(a[0], joint[0])
            y = _cells(a[other], joint[other])
            probability += (a[0] * (1 - a[other]) + (1 - a[0]) * a[other]) / 2
            together += sum(x[u][v] * y[1 - u][1 - v] for u in (0, 1) for v in (0, 1)) / 2
        spread = probability * (1 - probability)
        correlation = (together - np.outer(probability, probability)) / np.sqrt(
            np.maximum(np.outer(spread, spread), 1e-12))
        np.fill_diagonal(correlation, 0.0)
        return probability, correlation


def _cells(ones: np.ndarray, both: np.ndarray) -> list[list[np.ndarray]]:
    """P(bit k = u, bit l = v) as [u][v] -> [256, 256], from P(k) and P(k and l)."""
    k, l = ones[:, None], ones[None, :]
    return [[1 - k - l + both, l - both], [k - both, both]]


@dataclasses.dataclass(frozen=True)
class BandPlan:
    """How hashes are indexed so that no pair within ``radius`` bits is missed.

    Attributes:
      radius: the largest Hamming distance of a pair that must meet, bits.
      bands: the bit positions (0..255) of each band; together every position once.
      flips: t, bits a probe may flip within one band; len(bands)·(t + 1) > radius.
      expected: the plan's estimate of the share of image pairs that meet (with
        repeats over bands), for reports; not used for matching.
    """

    radius: int
    bands: tuple[tuple[int, ...], ...]
    flips: int
    expected: float = 0.0

    def __post_init__(self):
        if len(self.bands) * (self.flips + 1) <= self.radius:
            raise ValueError(f"{len(self.bands)} bands with {self.flips} flips can miss "
                             f"pairs {self.radius} bits apart; use more bands or flips")
        if sorted(p for band in self.bands for p in band) != list(range(HASH_BITS)):
            raise ValueError("the bands must hold every bit position 0..255 exactly once")
        if max(len(band) for band in self.bands) > _MAX_WIDTH:
            raise ValueError(f"bands are at most {_MAX_WIDTH} bits wide")

    @property
    def probes_per_hash(self) -> int:
        """Values each query hash probes, over all bands."""
        return sum(_ball(len(band), self.flips) for band in self.bands)

    def describe(self) -> str:
        """One line for reports."""
        widths = sorted({len(band) for band in self.bands})
        return (f"{len(self.bands)} bands of {'/'.join(map(str, widths))} bits chosen from "
                f"the hash statistics, probes with up to {self.flips} flipped bit(s) "
                f"({self.probes_per_hash} per hash): no pair within {self.radius} bits is "
                f"missed")

    def values(self, bits: np.ndarray) -> np.ndarray:
        """Every band of packed hashes uint8 [n, 32] as an integer, int64 [n, bands]."""
        weights = np.zeros((HASH_BITS, len(self.bands)), np.float32)
        for band, positions in enumerate(self.bands):
            weights[list(positions), band] = 2.0 ** np.arange(len(positions))
        out = np.empty((len(bits), len(self.bands)), np.int64)
        for start in range(0, len(bits), 1 << 16):  # float32 is exact below 2**24
            unpacked = np.unpackbits(bits[start:start + (1 << 16)], axis=1)
            out[start:start + (1 << 16)] = unpacked.astype(np.float32) @ weights
        return out

    def flip_masks(self, band: int) -> np.ndarray:
        """Every mask of up to ``flips`` set bits of the band's width, int64 [P]."""
        width = len(self.bands[band])
        return np.array([sum(1 << p for p in chosen) for count in range(self.flips + 1)
                         for chosen in itertools.combinations(range(width), count)], np.int64)


def _ball(width: int, flips: int) -> int:
    return sum(math.comb(width, count) for count in range(flips + 1))


def _assign(count: int, probability: np.ndarray, correlation: np.ndarray
            ) -> tuple[tuple[int, ...], ...]:
    """Bits into ``count`` bands of near-equal width: the most informative bit first, to
    the band with the least information so far plus a penalty for positive correlation
    with its bits; ties in a fixed shuffled order."""
    weight = -np.log1p(-np.clip(probability, 1e-3, 1 - 1e-3))  # information of a bit
    capacity = [len(part) for part in np.array_split(np.arange(HASH_BITS), count)]
    shuffle = np.random.default_rng(0).permutation(HASH_BITS)
    order = np.lexsort((np.argsort(shuffle), -np.round(weight, 9)))
    bands: list[list[int]] = [[] for _ in range(count)]
    load = np.zeros(count)
    positive = np.clip(correlation, 0.0, None)
    for bit in order:
        score = np.array([load[q] + _CORRELATION_WEIGHT * weight[bit]
                          * positive[bit, bands[q]].sum() if len(bands[q]) < capacity[q]
                          else np.inf for q in range(count)])
        chosen = int(np.argmin(score))
        bands[chosen].append(int(bit))
        load[chosen] += weight[bit]
    return tuple(tuple(sorted(band)) for band in bands)


def _at_most(probabilities: np.ndarray, flips: int) -> float:
    """P(at most ``flips`` of independent events with these probabilities)."""
    counts = np.zeros(flips + 1)
    counts[0] = 1.0
    for p in probabilities:
        counts[1:] = counts[1:] * (1 - p) + counts[:-1] * p
        counts[0] *= 1 - p
    return float(counts.sum())


def plan_bands(radius: int, n: int, stats: Optional[HashStats] = None) -> BandPlan:
    """The band plan with the least expected work for n images' hashes.

    For t = 1 and 2 flips the fewest bands m with m·(t + 1) > radius are taken (none
    wider than 24 bits), the bits assigned by their statistics (``stats``; None: uniform
    independent bits), and the cost is the probes (2n·Σ C(w, <=t), plain and mirrored
    queries) plus the image pairs expected to meet (n²·Σ P(band differs in <= t bits),
    bits taken as independent: correlated real bits meet more often than this says).
    """
    probability, correlation = (stats or HashStats.empty()).differences()
    best = None
    for flips in (1, 2):
        count = max(radius // (flips + 1) + 1, math.ceil(HASH_BITS / _MAX_WIDTH))
        bands = _assign(count, probability, correlation)
        meet = sum(_at_most(probability[list(band)], flips) for band in bands)
        cost = (_PROBE_COST * 2.0 * n * sum(_ball(len(band), flips) for band in bands)
                + _PAIR_COST * float(n) ** 2 * meet)
        if best is None or cost < best[0]:
            best = (cost, BandPlan(radius, bands, flips, meet))
    return best[1]


def _probe_ranges(keys: np.ndarray, bucket_starts: np.ndarray, probes: np.ndarray,
                  queries: np.ndarray, n: int, higher: bool
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[lo, hi) positions in ``keys`` (sorted value·n + image) of the images holding each
    probe's value, for the probes whose value some image holds; ranges longer than _CUT
    are cut to the images higher (``higher``) or lower than the probe's query image, the
    rest is left for the caller to filter. Returns (lo, hi, their query images)."""
    lo, hi = bucket_starts[probes], bucket_starts[probes + 1]
    held = np.flatnonzero(hi > lo)
    lo, hi, probes, queries = lo[held], hi[held], probes[held], queries[held]
    long = np.flatnonzero(hi - lo > _CUT)
    cut = np.searchsorted(keys, probes[long] * n + queries[long] + (1 if higher else 0))
    (lo if higher else hi)[long] = cut
    return lo, hi, queries


def _expand(lo: np.ndarray, hi: np.ndarray, queries: np.ndarray
            ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(positions, query images) of every position in the ranges, _PAIRS at a time."""
    length = hi - lo
    ends = np.cumsum(length)
    start = 0
    while start < len(lo):
        stop = max(start + 1, int(np.searchsorted(ends, ends[start] - length[start] + _PAIRS,
                                                  side="right")))
        part = length[start:stop]
        total = int(part.sum())
        if total:
            offsets = np.cumsum(part) - part
            yield (np.repeat(lo[start:stop] - offsets, part) + np.arange(total),
                   np.repeat(queries[start:stop], part))
        start = stop


def within(words_a: np.ndarray, words_b: np.ndarray, radius: int) -> np.ndarray:
    """bool [k]: Hamming distance of hashes as uint64 words [k, 4] at most ``radius``."""
    counts = np.bitwise_count(words_a ^ words_b)
    return (counts[:, 0].astype(np.int16) + counts[:, 1] + counts[:, 2] + counts[:, 3]
            <= radius)


def close_pairs(bits: np.ndarray, mirror_bits: np.ndarray, plan: BandPlan) -> np.ndarray:
    """Image pairs i < j with min(H(plain i, plain j), H(plain i, mirrored j)) within
    ``plan.radius`` bits, from packed hashes uint8 [n, 32] (plain and mirrored).

    Returns:
      int64 [pairs] codes i·n + j, sorted, each pair once.
    """
    n = len(bits)
    plain_words = np.ascontiguousarray(bits).view(np.uint64)
    mirror_words = np.ascontiguousarray(mirror_bits).view(np.uint64)
    found = [np.zeros(0, np.int64)]
    plain_values, mirror_values = plan.values(bits), plan.values(mirror_bits)
    for band in range(len(plan.bands)):
        keys = np.sort(plain_values[:, band] * n + np.arange(n, dtype=np.int64))
        bucket_starts = np.zeros((1 << len(plan.bands[band])) + 1, np.int64)
        np.cumsum(np.bincount(plain_values[:, band], minlength=len(bucket_starts) - 1),
                  out=bucket_starts[1:])
        masks = plan.flip_masks(band)
        rows = max(1, _ROWS // len(masks))
        for higher, query_words, values in ((True, plain_words, plain_values),
                                            (False, mirror_words, mirror_values)):
            for start in range(0, n, rows):
                probes = (values[start:start + rows, band, None] ^ masks[None, :]).ravel()
                queries = np.repeat(np.arange(start, min(n, start + rows)), len(masks))
                lo, hi, queries = _probe_ranges(keys, bucket_starts, probes, queries, n,
                                                higher)
                for positions, query in _expand(lo, hi, queries):
                    other = keys[positions] % n
                    keep = np.flatnonzero(other > query if higher else other < query)
                    other, query = other[keep], query[keep]
                    close = np.flatnonzero(within(plain_words[other], query_words[query],
                                                  plan.radius))
                    low, high = ((query[close], other[close]) if higher
                                 else (other[close], query[close]))
                    found.append(low * n + high)
    return np.unique(np.concatenate(found))
