"""Candidate pairs of 256-bit hashes within a Hamming radius, without comparing all pairs.

Multi-index hashing (Norouzi, Punjani & Fleet, "Fast search in Hamming space with
multi-index hashing", CVPR 2012) with the general pigeonhole principle: the 256 bit
positions are cut into m bands and band b gets a number of flips t_b. Two hashes at most
``radius`` = r bits apart differ in at most t_b bits of at least one band b whenever

    Σ_b (t_b + 1) > r

(if every band differed in t_b + 1 bits or more, they would differ in Σ_b (t_b + 1) > r
bits). With q, a = divmod(r + 1, m), the first a bands get t = q flips and the others
q - 1 (all q - 1 when a = 0): Σ_b (t_b + 1) = r + 1, the least that keeps the guarantee
(with m > r + 1 bands no band needs a flip: Σ_b (0 + 1) = m > r).
A band's t_b flips are split between the two sides ("meet in the middle"): every image's
plain hash is indexed under its band value with every set of up to s_b = floor(t_b / 2)
bits flipped, and every query hash (plain or mirrored) probes its band value with every
set of up to u_b = t_b - s_b bits flipped. x and y differ in d <= t_b bits of the band
exactly when x ^ S = y ^ T for some flip sets |S| <= s_b, |T| <= u_b (split the differing
bits), so every pair within r bits meets in some band: none can be missed. Index entries
and probes grow as Σ C(w, <= s) and Σ C(w, <= u) instead of Σ C(w, <= t) for probes alone,
which is what lets bands widen with n (for n images a band should be about log2(n) bits
of information wide, or every band's buckets hold a fixed share of all images and the
work stays n²). data_prep.band_join carries a plan out on one machine (sorted index
entries, sorted probes, one canonical meeting per pair and band, exact verification).

Which bits form a band is chosen from the hashes' statistics (:class:`HashStats`): real
dHashes of aligned faces are far from uniform (some bits are set on ~95 % of faces and
neighbouring gradients move together), and a band of biased or correlated bits puts more
pairs into the same bucket. :func:`plan_bands` spreads the bits so that every band holds
about the same information (bits sorted by how often two random images differ there, each
given to the band with the least so far) and keeps positively correlated bits apart, and
picks the number of bands m for n images by a cost model from the same statistics. The
choice only moves work: every plan keeps the guarantee above. The statistics are sums
over images, so a Beam pipeline combines them exactly (``beam.CombineGlobally``).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from typing import Optional

import numpy as np

HASH_BITS = 256
_MAX_WIDTH = 32  # band_join keys a value and an image as value·2**31 + image < 2**63
# Relative costs for plan_bands(): one probe (table look-up), one index entry (flip, sort,
# count) and one meeting (filter and verify), fitted to CPU times of 10 to 16 band plans
# on the 20,148 UTKFace hashes on this machine (a probe ~2x a meeting: ~200 vs ~100 ns).
_PROBE_COST, _INDEX_COST, _PAIR_COST = 2.0, 1.5, 1.0
_CORRELATION_WEIGHT = 3.0  # how strongly correlated bits are kept apart


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


@functools.lru_cache(maxsize=None)
def flip_masks(width: int, flips: int) -> np.ndarray:
    """Every mask of up to ``flips`` set bits among ``width`` bits, int64 [C(w, <= t)]
    (read-only)."""
    masks = np.array([sum(1 << p for p in chosen) for count in range(flips + 1)
                      for chosen in itertools.combinations(range(width), count)], np.int64)
    masks.flags.writeable = False
    return masks


@dataclasses.dataclass(frozen=True)
class BandPlan:
    """How hashes are indexed so that no pair within ``radius`` bits is missed.

    Attributes:
      radius: r, the largest Hamming distance of a pair that must meet, bits.
      bands: the bit positions (0..255) of each band (at most 32 per band); together
        every position once.
      flips: t, the flips of the first bands; the last ``fewer`` bands get t - 1, so
        Σ_b (t_b + 1) = len(bands)·(t + 1) - fewer, which must exceed r.
      fewer: how many bands (the last ones) get one flip less.
      expected: the plan's estimate of meetings per image pair (index entry x probe,
        repeats included), for reports; not used for matching.
    """

    radius: int
    bands: tuple[tuple[int, ...], ...]
    flips: int
    fewer: int = 0
    expected: float = 0.0

    def __post_init__(self):
        if not 0 <= self.fewer < len(self.bands) or (self.flips == 0 and self.fewer):
            raise ValueError(f"fewer must be in 0..{len(self.bands) - 1} (and 0 without "
                             f"flips), got {self.fewer}")
        if len(self.bands) * (self.flips + 1) - self.fewer <= self.radius:
            raise ValueError(f"{len(self.bands)} bands with {self.flips} flips "
                             f"({self.fewer} with one less) can miss pairs {self.radius} "
                             f"bits apart; use more bands or flips")
        if sorted(p for band in self.bands for p in band) != list(range(HASH_BITS)):
            raise ValueError("the bands must hold every bit position 0..255 exactly once")
        if max(len(band) for band in self.bands) > _MAX_WIDTH:
            raise ValueError(f"bands are at most {_MAX_WIDTH} bits wide")

    def band_flips(self, band: int) -> int:
        """t_b: the band's flips (index side plus probe side)."""
        return self.flips - (band >= len(self.bands) - self.fewer)

    def index_masks(self, band: int) -> np.ndarray:
        """Flip masks of the band's index entries (up to floor(t_b / 2) bits), int64."""
        return flip_masks(len(self.bands[band]), self.band_flips(band) // 2)

    def probe_masks(self, band: int) -> np.ndarray:
        """Flip masks of the band's probes (up to t_b - floor(t_b / 2) bits), int64."""
        flips = self.band_flips(band)
        return flip_masks(len(self.bands[band]), flips - flips // 2)

    @property
    def probes_per_hash(self) -> int:
        """Values each query hash probes, over all bands."""
        return sum(len(self.probe_masks(band)) for band in range(len(self.bands)))

    @property
    def entries_per_hash(self) -> int:
        """Index entries of each image, over all bands."""
        return sum(len(self.index_masks(band)) for band in range(len(self.bands)))

    def describe(self) -> str:
        """One line for reports."""
        widths = sorted({len(band) for band in self.bands})
        flips = sorted({self.band_flips(band) for band in range(len(self.bands))})
        return (f"{len(self.bands)} bands of {'/'.join(map(str, widths))} bits chosen from "
                f"the hash statistics, {'/'.join(map(str, flips))} flipped bit(s) per band "
                f"({self.entries_per_hash} index entries and {self.probes_per_hash} probes "
                f"per hash): no pair within {self.radius} bits is missed")

    def values(self, bits: np.ndarray) -> np.ndarray:
        """Every band of packed hashes uint8 [n, 32] as an integer, int64 [n, bands]."""
        weights = np.zeros((HASH_BITS, len(self.bands)))
        for band, positions in enumerate(self.bands):
            weights[list(positions), band] = 2.0 ** np.arange(len(positions))
        out = np.empty((len(bits), len(self.bands)), np.int64)
        for start in range(0, len(bits), 1 << 16):  # float64 is exact below 2**53
            unpacked = np.unpackbits(bits[start:start + (1 << 16)], axis=1)
            out[start:start + (1 << 16)] = unpacked.astype(np.float64) @ weights
        return out


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
    load, room = np.zeros(count), np.array(capacity)
    positive = np.clip(correlation, 0.0, None)
    together = np.zeros((HASH_BITS, count))  # positive correlation of each bit with a band
    for bit in order:
        score = np.where(room > 0, load + _CORRELATION_WEIGHT * weight[bit] * together[bit],
                         np.inf)
        chosen = int(np.argmin(score))
        bands[chosen].append(int(bit))
        load[chosen] += weight[bit]
        room[chosen] -= 1
        together[:, chosen] += positive[:, bit]
    return tuple(tuple(sorted(band)) for band in bands)


def _meetings(probabilities: np.ndarray, index_flips: int, probe_flips: int) -> float:
    """Expected meetings (index entry x probe) of two random images in one band whose
    bits differ independently with these probabilities: Σ_d P(d bits differ)·(flip
    sets S, T with |S| <= s, |T| <= u and S ^ T the d differing bits)."""
    width, most = len(probabilities), index_flips + probe_flips
    counts = np.zeros(most + 1)  # P(exactly d differ), d <= s + u
    counts[0] = 1.0
    for p in probabilities:
        counts[1:] = counts[1:] * (1 - p) + counts[:-1] * p
        counts[0] *= 1 - p
    ways = [sum(math.comb(d, inside) * math.comb(width - d, outside)
                for inside in range(d + 1) for outside in range(width - d + 1)
                if inside + outside <= index_flips and d - inside + outside <= probe_flips)
            for d in range(most + 1)]
    return float(np.dot(counts, ways))


def _flips_for(radius: int, count: int) -> tuple[int, int]:
    """(t, fewer) for ``count`` bands: Σ_b (t_b + 1) = max(radius + 1, count)."""
    if radius + 1 <= count:
        return 0, 0
    q, a = divmod(radius + 1, count)
    return (q - 1, 0) if a == 0 else (q, count - a)


def plan_bands(radius: int, n: int, stats: Optional[HashStats] = None) -> BandPlan:
    """The band plan with the least expected work for n images' hashes.

    Every m from 8 (bands of 32 bits) to 16 bands is costed with the fewest flips that
    keep Σ_b (t_b + 1) > radius (module docstring), the bits assigned by their statistics
    (``stats``; None: uniform independent bits): index entries n·Σ C(w, <= s_b); probes
    n·Σ C(w, <= u_b) for the mirrored queries, twice that in bands of odd t_b, where plain
    queries probe too (in even ones plain pairs meet as entries of one bucket); and
    meetings n²·Σ_b E[meetings in b] (bits taken as independent; on real faces this is
    within a few % of sampled pairs), 1.5 times that (plain pairs once, mirrored ones
    both ways) in even bands, twice in odd ones.
    """
    probability, correlation = (stats or HashStats.empty()).differences()
    best = None
    for count in range(math.ceil(HASH_BITS / _MAX_WIDTH), 17):
        flips, fewer = _flips_for(radius, count)
        bands = _assign(count, probability, correlation)
        plan = BandPlan(radius, bands, flips, fewer)
        meet = [_meetings(probability[list(positions)], plan.band_flips(band) // 2,
                          plan.band_flips(band) - plan.band_flips(band) // 2)
                for band, positions in enumerate(bands)]
        odd = [plan.band_flips(band) % 2 for band in range(count)]  # plain queries probe
        probes = sum((1 + o) * len(plan.probe_masks(band)) for band, o in enumerate(odd))
        cost = (_PROBE_COST * n * probes + _INDEX_COST * n * plan.entries_per_hash
                + _PAIR_COST * float(n) ** 2 * sum((1.5 + 0.5 * o) * m
                                                   for o, m in zip(odd, meet)))
        if best is None or cost < best[0]:
            best = (cost, dataclasses.replace(plan, expected=sum(meet)))
    return best[1]
