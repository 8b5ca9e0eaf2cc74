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
work stays n²). A band's entries are sorted by value (then image) with a table of where
each value's bucket starts, and each entry carries its image's full hash, so that a
bucket is verified reading memory in order; a chunk of probes is sorted by value before
it looks up its buckets. In bands of even t_b (s_b = u_b) a plain query's probes are its
own entries, so plain pairs meet as two entries of one bucket; mirrored queries (and
plain ones in bands of odd t_b) probe. Every meeting is verified exactly (XOR and
popcount of the four 64-bit words), met pairs that the matching rule does not pair (the
mirrored query must be the higher image, a plain probe's query the lower) are dropped,
and a pair met several times is kept once.

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
from typing import Iterator, Optional

import numpy as np

HASH_BITS = 256
_MAX_WIDTH = 32  # keys are value·n + image < 2**63 (n < 2**31)
_MAX_PREFIX = 26  # a band's bucket table spans at most 2**26 values of its leading bits
# Relative costs for plan_bands(): one probe (table look-up), one index entry (flip, sort,
# count) and one meeting (filter and verify), fitted to CPU times of 10 to 16 band plans
# on the 20,148 UTKFace hashes on this machine (a probe ~2x a meeting: ~200 vs ~100 ns).
_PROBE_COST, _INDEX_COST, _PAIR_COST = 2.0, 1.5, 1.0
_CORRELATION_WEIGHT = 3.0  # how strongly correlated bits are kept apart
_ROWS = 1 << 20  # probes (query x flip) handled at once
_PAIRS = 1 << 22  # candidate pairs verified at once


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


@dataclasses.dataclass
class _Index:
    """One band's index entries, sorted by value then image.

    Attributes:
      values: int64 [E], each entry's band value (an image's value with a mask flipped).
      images: int64 [E], the entry's image.
      words: uint64 [E, 4], the image's full hash, stored in entry order so that
        verifying the entries of a bucket reads memory in order.
      starts: [2**p + 1], where each bucket of the values' p leading bits starts.
      shift: width - p; 0 when every bucket holds one value.
      count: n, the number of images.
    """

    values: np.ndarray
    images: np.ndarray
    words: np.ndarray
    starts: np.ndarray
    shift: int
    count: int

    @classmethod
    def build(cls, values: np.ndarray, masks: np.ndarray, width: int, words: np.ndarray
              ) -> "_Index":
        """The entries of images' band values int64 [n] with every mask flipped."""
        n = len(values)
        keys = ((values[:, None] ^ masks[None, :]) * n
                + np.arange(n, dtype=np.int64)[:, None]).ravel()
        keys.sort()
        entry_values, images = np.divmod(keys, n)
        del keys
        prefix = min(width, _MAX_PREFIX, max(8, len(images).bit_length() + 2))
        shift = width - prefix
        starts = np.zeros((1 << prefix) + 1, np.int32 if len(images) < 1 << 31 else np.int64)
        np.cumsum(np.bincount(entry_values >> shift, minlength=1 << prefix), out=starts[1:])
        return cls(entry_values, images, words[images], starts, shift, n)

    def meet(self, lo: np.ndarray, hi: np.ndarray, owner: np.ndarray, table: np.ndarray,
             want: np.ndarray, radius: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(owner rows, entry positions) of the meetings within ``radius`` bits: for each
        range [lo, hi) of entries, the entries whose value is ``want`` (int64, per range),
        compared with the hash ``table[owner]`` (uint64 [., 4]; owner int64, per range)."""
        for positions, which in _expand(lo, hi):
            if self.shift:  # the bucket holds several values
                keep = np.flatnonzero(self.values[positions] == want[which])
                positions, which = positions[keep], which[keep]
            rows = owner[which]
            close = np.flatnonzero(within(self.words[positions], table[rows], radius))
            yield rows[close], positions[close]

    def self_pairs(self, radius: int) -> Iterator[np.ndarray]:
        """Codes low·n + high of the image pairs within ``radius`` bits that meet in a
        bucket, when the probes' masks are the entries' own (each pair once per meeting)."""
        n = self.count
        ends = self.starts[(self.values >> self.shift) + 1]
        for start in range(0, len(self.values), _ROWS):
            owner = np.arange(start, min(start + _ROWS, len(self.values)), dtype=np.int64)
            lo, hi = owner + 1, ends[owner].astype(np.int64)
            held = np.flatnonzero(hi > lo)
            for rows, positions in self.meet(lo[held], hi[held], owner[held], self.words,
                                             self.values[owner[held]], radius):
                first, second = self.images[rows], self.images[positions]
                yield np.minimum(first, second) * n + np.maximum(first, second)

    def probe_pairs(self, values: np.ndarray, masks: np.ndarray, table: np.ndarray,
                    higher: bool, radius: int) -> Iterator[np.ndarray]:
        """Codes low·n + high of the pairs within ``radius`` bits met by probing the
        query images' band values int64 [n] with every mask flipped, their hashes
        ``table`` (uint64 [n, 4]) against the entries: the entry's image higher than
        the query's (``higher``, low = query) or lower (high = query)."""
        n, count = len(values), len(masks)
        rows = max(1, _ROWS // count)
        for start in range(0, n, rows):
            chunk = values[start:start + rows]
            order = ((chunk[:, None] ^ masks[None, :]).astype(np.uint64) << np.uint64(32)
                     | np.arange(len(chunk) * count, dtype=np.uint64).reshape(-1, count))
            order = order.ravel()
            order.sort()  # probes in value order: the bucket table is read in order
            probes = (order >> np.uint64(32)).astype(np.int64)
            owner = start + (order & np.uint64(0xFFFFFFFF)).astype(np.int64) // count
            bucket = probes >> self.shift
            lo, hi = self.starts[bucket].astype(np.int64), self.starts[bucket + 1]
            held = np.flatnonzero(hi > lo)
            for queries, positions in self.meet(lo[held], hi[held].astype(np.int64),
                                                owner[held], table, probes[held], radius):
                others = self.images[positions]
                keep = others > queries if higher else others < queries
                low, high = (queries, others) if higher else (others, queries)
                yield low[keep] * n + high[keep]


def _expand(lo: np.ndarray, hi: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(positions, their range) for every position in the ranges, _PAIRS at a time."""
    length = np.maximum(hi - lo, 0)
    ends = np.cumsum(length)
    start = 0
    while start < len(lo):
        stop = max(start + 1, int(np.searchsorted(ends, ends[start] - length[start] + _PAIRS,
                                                  side="right")))
        part = length[start:stop]
        total = int(part.sum())
        if total:
            offsets = np.cumsum(part) - part
            which = np.repeat(np.arange(start, stop), part)
            yield np.repeat(lo[start:stop] - offsets, part) + np.arange(total), which
        start = stop


def within(words_a: np.ndarray, words_b: np.ndarray, radius: int) -> np.ndarray:
    """bool [k]: Hamming distance of hashes as uint64 words [k, 4] at most ``radius``."""
    counts = np.bitwise_count(words_a ^ words_b)
    return (counts[:, 0].astype(np.int16) + counts[:, 1] + counts[:, 2] + counts[:, 3]
            <= radius)


def close_pairs(bits: np.ndarray, mirror_bits: np.ndarray, plan: BandPlan) -> np.ndarray:
    """Image pairs i < j with min(H(plain i, plain j), H(plain i, mirrored j)) within
    ``plan.radius`` bits, from packed hashes uint8 [n, 32] (plain and mirrored; n < 2**31).

    Returns:
      int64 [pairs] codes i·n + j, sorted, each pair once.
    """
    n = len(bits)
    if n >= 1 << 31:
        raise ValueError(f"close_pairs takes fewer than 2**31 images, got {n}; split them")
    plain_words = np.ascontiguousarray(bits).view(np.uint64)
    mirror_words = np.ascontiguousarray(mirror_bits).view(np.uint64)
    found = [np.zeros(0, np.int64)]
    plain_values, mirror_values = plan.values(bits), plan.values(mirror_bits)
    for band in range(len(plan.bands)):
        index = _Index.build(plain_values[:, band], plan.index_masks(band),
                             len(plan.bands[band]), plain_words)
        masks = plan.probe_masks(band)
        if plan.band_flips(band) % 2 == 0:  # plain probes would be the entries themselves
            found.extend(index.self_pairs(plan.radius))
        else:
            found.extend(index.probe_pairs(plain_values[:, band], masks, plain_words, True,
                                           plan.radius))
        found.extend(index.probe_pairs(mirror_values[:, band], masks, mirror_words, False,
                                       plan.radius))
        del index
    return np.unique(np.concatenate(found))
